"""McqFilters: every check recorded per question; shuffle deterministic and balanced; blind and
consistency checks through a scripted chat backend; the export honours the outcomes."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from agents.backends.chat import ChatRequest, ScriptedChatBackend
from agents.base import Batch
from agents.mcq_filters import McqFilters, binomial_tail
from agents.question_writer import QuestionWriter
from engine.export import export
from engine.store import DatasetStore
from schemas import validate_rows
from tests.helpers_dataset import LLM, batch_from_store, mcq, write_dataset


@pytest.fixture()
def dataset(tmp_path):
    return write_dataset(tmp_path / "ds")


def knows_bounces(request: ChatRequest) -> str:
    """Blind: answers bounce questions right (a language prior), guesses elsewhere.
    Consistency: derivable unless the question is about direction; unreadable for the dog's jump."""
    prompt = request.messages[-1]["content"]
    if "Proposed answer" in prompt:
        if "jump over" in prompt:
            return "I am not sure."
        derivable = "direction" not in prompt
        return json.dumps({"derivable": derivable, "reason": "checked against the caption"})
    options = dict(re.findall(r"^([A-D])\. (.+)$", prompt, flags=re.M))
    if "bounce" in prompt:
        return json.dumps({"answer": next(k for k, v in options.items() if v in ("two", "twice"))})
    return json.dumps({"answer": "ABCD"[request.seed % len(options)]})  # a different guess each try


def run(batch, answer=knows_bounces, **config):
    backend = ScriptedChatBackend(answer, model="judge-test", revision="r7")
    return McqFilters(config, backend=backend)(batch), backend


def checks_of(out):
    table: dict[str, dict[str, str]] = {}
    for row in out.rows["mcq_checks"]:
        table.setdefault(row.question_id, {})[row.check] = row.outcome
    return table


def test_every_question_gets_every_rule_check_recorded(dataset):
    out, _ = run(Batch(dataset.root, tables=batch_from_store(dataset.root, ("mcqs", "captions", "clips")).tables))
    table = checks_of(out)
    assert set(table) == {q.question_id for q in dataset.mcqs.values()}
    for checks in table.values():
        assert {"options_unique", "length_giveaway", "letter_shuffle", "duplicate"} <= set(checks)
    assert validate_rows("mcq_checks", out.rows["mcq_checks"], "t")[1] == []


def test_near_duplicate_in_clip_dropped_template_kept(dataset):
    out, _ = run(batch_from_store(dataset.root, ("mcqs", "captions", "clips")))
    table = checks_of(out)
    assert table[dataset.mcqs["t_mr"].question_id]["duplicate"] == "pass"
    assert table[dataset.mcqs["l_mr"].question_id]["duplicate"] == "drop"
    assert "blind" not in table[dataset.mcqs["l_mr"].question_id]  # dropped by a rule: no model calls


def test_blind_and_consistency_outcomes_and_lineage(dataset):
    out, backend = run(batch_from_store(dataset.root, ("mcqs", "captions", "clips")))
    table = checks_of(out)
    assert table[dataset.mcqs["t_rc"].question_id]["blind"] == "drop"  # answered from priors 3/3
    assert table[dataset.mcqs["l_rc"].question_id]["blind"] == "drop"
    assert table[dataset.mcqs["f_lm"].question_id]["blind"] == "pass"
    assert table[dataset.mcqs["f_lm"].question_id]["consistency"] == "pass"
    assert table[dataset.mcqs["t_mr"].question_id]["consistency"] == "pass"  # template: no call
    assert table[dataset.mcqs["f_mo"].question_id]["consistency"] == "flag"  # unreadable verdict
    blind_rows = [r for r in out.rows["mcq_checks"] if r.check == "blind"]
    assert {(r.model, r.model_revision) for r in blind_rows} == {("judge-test", "r7")}
    assert all(r.prompt_version.startswith("mcq_filters.blind.v1@") and r.prompt_tokens > 0 for r in blind_rows)
    blind_calls = sum("Answer this multiple-choice" in r.messages[-1]["content"] for r in backend.requests)
    assert blind_calls == 3 * len(blind_rows)


def test_failed_blind_try_is_no_answer_and_asked_again_next_run(dataset):
    """3 right of 4 tries is chance (p=0.051); 3 right of 3 answered, one failed, is not (p=0.016)."""
    def last_try_fails(request):
        return "garbled" if request.seed == 3 and "Proposed answer" not in request.messages[-1]["content"] \
            else knows_bounces(request)

    out, _ = run(batch_from_store(dataset.root, ("mcqs", "captions", "clips")), answer=last_try_fails,
                 blind_tries=4, consistency=False)
    bounce = dataset.mcqs["t_rc"].question_id
    row = next(r for r in out.rows["mcq_checks"] if r.check == "blind" and r.question_id == bounce)
    assert row.outcome == "drop" and "3/3 right" in row.detail and "1 of 4 tries failed" in row.detail
    rejected = [r for r in out.rejections if r.item_id == bounce]
    assert [(r.reason, r.retryable) for r in rejected] == [("parse_failed", True)]


def test_consistency_not_derivable_drops_or_flags(dataset):
    batch = batch_from_store(dataset.root, ("mcqs", "captions", "clips"))
    batch.tables["mcqs"] = [dataset.mcqs["f_lm"].model_copy(update={"question": "Which direction does the dog run?"})]
    out, _ = run(batch, blind=False)
    assert checks_of(out)[dataset.mcqs["f_lm"].question_id]["consistency"] == "drop"
    out, _ = run(batch, blind=False, consistency_action="flag")
    assert checks_of(out)[dataset.mcqs["f_lm"].question_id]["consistency"] == "flag"


def test_options_unique_and_length_giveaway(dataset):
    clip = dataset.clips["folder"]
    same = mcq(clip, "LM", "Where to?", ["left", "The left.", "right", "up"], "C", "llm", LLM)
    long = mcq(clip, "MR", "What happens?", ["runs", "sits", "jumps high over the fallen log", "barks"], "C", "llm", LLM)
    out, _ = run(Batch(dataset.root, tables={"mcqs": [same, long]}), blind=False, consistency=False)
    table = checks_of(out)
    assert table[same.question_id]["options_unique"] == "drop"
    assert table[long.question_id]["length_giveaway"] == "flag"
    assert table[same.question_id]["length_giveaway"] == "pass"


def all_answers_a(request: ChatRequest) -> str:
    """A writer model that always puts the right answer first, as models tend to: one question for
    each category the request asks for."""
    caption = request.messages[-1]["content"].split('"""')[1]
    evidence = " ".join(caption.split()[:3])
    asked = re.findall(r"^\s+(MR|LM|AO|RC|MO|CM) ", request.messages[-1]["content"], flags=re.M)
    return json.dumps({"questions": [
        {"category": c, "question": f"Question {c} about motion?", "options": [evidence, f"x{c}", f"y{c}", f"z{c}"],
         "answer": "A", "evidence": evidence} for c in asked]})


def test_letters_moved_as_written_and_reported_before_and_after(dataset):
    batch = batch_from_store(dataset.root, ("clips", "objects", "captions", "reviews"))
    write = lambda seed: QuestionWriter({"object_questions": False, "seed": seed},  # noqa: E731
                                        backend=ScriptedChatBackend(all_answers_a))(batch).rows["mcqs"]
    written = write(0)
    assert len(written) >= 4 and all(q.generated_answer == "A" for q in written)
    assert all(q.options[LETTERS_INDEX[q.answer]] == q.evidence for q in written)  # the right option moved along
    assert [(q.question_id, q.options, q.answer) for q in written] == [
        (q.question_id, q.options, q.answer) for q in write(0)]  # stable run after run
    out, _ = run(Batch(dataset.root, tables={"mcqs": written}), blind=False, consistency=False)
    assert out.counters["letter_before_A"] == len(written)
    after = Counter({k[-1]: v for k, v in out.counters.items() if k.startswith("letter_after_")})
    assert sum(after.values()) == len(written) and after == Counter(q.answer for q in written)
    details = {r.detail for r in out.rows["mcq_checks"] if r.check == "letter_shuffle"}
    assert details == {f"A -> {letter}" for letter in after}


LETTERS_INDEX = {"A": 0, "B": 1, "C": 2, "D": 3}


def test_binomial_tail():
    assert binomial_tail(0, 3, 0.25) == pytest.approx(1.0)
    assert binomial_tail(3, 3, 0.25) == pytest.approx(1 / 64)
    assert binomial_tail(2, 3, 0.25) == pytest.approx(10 / 64)


def test_export_applies_recorded_outcomes(dataset, tmp_path):
    """The checks written to the store decide what the MotionBench export shows."""
    out, _ = run(batch_from_store(dataset.root, ("mcqs", "captions", "clips")))
    store = DatasetStore(dataset.root)
    store.remove_shard("mcq_filters", "shard0", ["mcq_checks"])
    store.commit(store.stage_shard("mcq_filters", "shard0", {"mcq_checks": out.rows["mcq_checks"]}), {})
    export(dataset.root, "motionbench", tmp_path, media="none")  # the fixture has no video files
    qas = {qa["uid"]: qa for line in (tmp_path / "motionbench.jsonl").read_text().splitlines()
           for qa in json.loads(line)["qa"]}
    dropped = {r.question_id for r in out.rows["mcq_checks"] if r.outcome == "drop"}
    assert qas and not dropped & set(qas)
    for uid, qa in qas.items():
        original = next(q for q in dataset.mcqs.values() if q.question_id == uid)
        options = dict(re.findall(r"^([A-D])\. (.+)$", qa["question"], flags=re.M))
        assert options[qa["answer"]] == original.options["ABCD".index(original.answer)]
