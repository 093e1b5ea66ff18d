"""The real build against an OpenAI-compatible endpoint that fails ~30% of calls (429 with
Retry-After, 500, timeouts, malformed JSON), at random but reproducibly: the dataset is complete
(the row ids of a run against a server that never fails), and token accounting is exact: the
rows' tokens sum to what the server billed for the answers that were used, and the tokens billed
for malformed answers that were re-asked are the stages' `wasted_*_tokens` commit counters."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter

from engine.run import main
from engine.store import DatasetStore
from tests.fakes.openai_server import Fail, FakeOpenAIServer, Reply

LLM_STAGES = ("analyzer", "annotator", "reviewer", "question_writer")
STAGES = "ingest,ground_truth,template_writer,analyzer,annotator,reviewer,question_writer"
TIMEOUT_S = 0.25


def scripted_answer(body: dict) -> str:
    """What a well-behaved model answers, by the response model the request names."""
    wanted = body["response_format"]["json_schema"]["name"]
    if wanted == "AnnotatorAnswer":
        return json.dumps({"detailed": "The object moves across the frame.", "short": "a moving object"})
    if wanted == "ReviewAnswer":
        return json.dumps({"verdict": "accept", "score": 0.9, "reason": "the caption fits the mask"})
    if wanted == "ObjectAnswer":
        return json.dumps({"questions": [{"category": "basic", "question": "What does [1] do?", "options": [
            "moves across", "stays still", "spins", "jumps"], "answer": "A", "evidence": "moves across"}]})
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")  # a re-ask appends more
    words = user.split('"""')[1].split()
    if wanted == "MotionAnswer":
        evidence = " ".join(words[:3])
        return json.dumps({"questions": [{"category": "MR", "question": "What happens first?", "options": [
            evidence, "nothing moves", "everything spins", "the camera zooms"], "answer": "A", "evidence": evidence}],
            "sft": [{"question": "What moves?", "answer": evidence, "rationale": "The caption says so."}],
            "preferences": []})
    noun = words[min(2, len(words) - 1)].strip(".,").lower()
    return json.dumps({"nouns": [noun], "phrases": [f"the {noun}"]})


class Billing:
    """The server side: decides each attempt's fate reproducibly (by request content and attempt
    number, whatever the thread order) and records the tokens it billed."""

    def __init__(self, failure_rate: float):
        self.failure_rate = failure_rate
        self.attempts: Counter = Counter()
        self.used = Counter()  # prompt / completion tokens of well-formed answers
        self.wasted = Counter()  # of malformed answers
        self.failures: Counter = Counter()
        self.lock = threading.Lock()
        # The first failures take each kind in turn, so every kind occurs whatever the thread
        # order or the number of calls; later ones are drawn.
        self.forced = ["429", "500", "timeout", "malformed"] if failure_rate > 0 else []

    def __call__(self, body: dict):
        key = hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
        with self.lock:
            self.attempts[key] += 1
            draw = int(hashlib.sha256(f"{key}:{self.attempts[key]}".encode()).hexdigest(), 16)
        content = scripted_answer(body)
        tokens = {"prompt_tokens": len(json.dumps(body["messages"])) // 4, "completion_tokens": len(content) // 4}
        if draw % 1000 >= self.failure_rate * 1000:
            with self.lock:
                self.used.update(tokens)
            return Reply(content, **tokens)
        with self.lock:
            kind = self.forced.pop(0) if self.forced else ("429", "500", "timeout", "malformed")[(draw // 1000) % 4]
            self.failures[kind] += 1
        if kind == "429":
            return Fail(429, retry_after=0.02)
        if kind == "500":
            return Fail(500)
        if kind == "timeout":
            return Fail(500, delay_s=TIMEOUT_S + 0.2)  # the client gives up first; nothing billed
        malformed = content[: len(content) // 2]
        with self.lock:
            self.wasted.update({"prompt_tokens": tokens["prompt_tokens"], "completion_tokens": len(malformed) // 4})
        return Reply(malformed, prompt_tokens=tokens["prompt_tokens"], completion_tokens=len(malformed) // 4)


def build(root, server: FakeOpenAIServer, *extra: str) -> dict:
    flags = []
    for stage in LLM_STAGES:
        for key, value in {"backend": "openai", "model": "fake-gpt", "base_url": server.base_url, "concurrency": 4,
                           "timeout_s": TIMEOUT_S, "max_retries": 8, "parse_retries": 4, "backoff_initial_s": 0.01,
                           "backoff_max_s": 0.05}.items():
            flags += ["--set", f"{stage}.chat.{key}={value}"]
    code = main(["build-motionvid-qa", "--dataset", str(root), "--source", "virtual:3", "--executor", "local",
                 "--stages", STAGES, "--shard-size", "2", *flags, *extra])
    assert code == 0
    return DatasetStore(root, create=False).read_run_config()["last_run"]["tokens"]


def ids(root) -> dict[str, list[str]]:
    store = DatasetStore(root, create=False)
    keys = {"clips": "clip_id", "phrases": "phrase_id", "captions": "caption_id", "reviews": "review_id",
            "mcqs": "question_id", "sft": "sft_id", "rejections": "rejection_id"}
    return {t: sorted(store.read_table(t).column(k).to_pylist()) for t, k in keys.items()}


def row_tokens(root) -> Counter:
    store = DatasetStore(root, create=False)
    total = Counter()
    for table in ("phrases", "captions", "reviews", "mcqs", "sft", "preferences"):
        for row in store.read_table(table).select(["agent", "prompt_tokens", "completion_tokens"]).to_pylist():
            if row["agent"] in LLM_STAGES:
                total.update({"prompt_tokens": row["prompt_tokens"] or 0,
                              "completion_tokens": row["completion_tokens"] or 0})
    return total


def counters(root) -> Counter:
    store = DatasetStore(root, create=False)
    total = Counter()
    for stage in LLM_STAGES:
        for record in store.commits(stage).values():
            total.update(record["counters"])
    return total


def test_flaky_endpoint_gives_the_complete_dataset_with_exact_tokens(tmp_path):
    clean_billing, flaky_billing = Billing(0.0), Billing(0.3)
    with FakeOpenAIServer(clean_billing) as clean:
        build(tmp_path / "clean", clean)
    with FakeOpenAIServer(flaky_billing) as flaky:
        summary = build(tmp_path / "flaky", flaky)
        calls = len(flaky.calls)
        spent, tokens = counters(tmp_path / "flaky"), row_tokens(tmp_path / "flaky")
        # a rebuild of the finished dataset replays every used answer from the response cache
        replay = build(tmp_path / "flaky", flaky, "--recompute")
        assert len(flaky.calls) == calls

    expected, got = ids(tmp_path / "clean"), ids(tmp_path / "flaky")
    assert all(expected[t] for t in ("phrases", "captions", "reviews", "mcqs", "sft"))
    assert got == expected  # nothing missing, nothing extra, no failure left a rejection

    assert set(flaky_billing.failures) == {"429", "500", "timeout", "malformed"}
    share = sum(flaky_billing.failures.values()) / calls
    assert 0.1 < share < 0.6, share  # ~30% drawn per attempt over a few dozen calls

    assert tokens == flaky_billing.used  # each used answer's tokens, counted once
    assert tokens["completion_tokens"] == clean_billing.used["completion_tokens"]  # the same answers were used
    assert (spent["prompt_tokens"], spent["completion_tokens"]) == (tokens["prompt_tokens"], tokens["completion_tokens"])
    assert spent["wasted_prompt_tokens"] == flaky_billing.wasted["prompt_tokens"] > 0
    assert spent["wasted_completion_tokens"] == flaky_billing.wasted["completion_tokens"]
    assert counters(tmp_path / "clean")["wasted_prompt_tokens"] == 0

    billed = flaky_billing.used + flaky_billing.wasted  # what the server counted
    assert summary["spent"] == {"prompt": billed["prompt_tokens"], "completion": billed["completion_tokens"]}
    assert summary["replayed"] == {"prompt": 0, "completion": 0}
    assert replay["spent"] == {"prompt": 0, "completion": 0} and replay["cost_usd"] == 0
    assert replay["replayed"] == {"prompt": tokens["prompt_tokens"], "completion": tokens["completion_tokens"]}
    assert replay["replayed_calls"] == replay["calls"] > 0
    assert ids(tmp_path / "flaky") == expected


def test_malformed_answer_is_reasked_with_the_parse_error_then_retryable(tmp_path):
    """Every answer malformed: each request is re-asked with the error in the conversation, the
    rejections are retryable, and the next run asks again (and gets the dataset a clean run gets)."""
    def malformed(body):
        return Reply(scripted_answer(body)[:10])

    with FakeOpenAIServer(malformed) as bad:
        build(tmp_path / "ds", bad, "--stages", "ingest,ground_truth,analyzer")
        reasks = [c.body["messages"] for c in bad.calls if len(c.body["messages"]) > 2]
    assert reasks and all("could not be used" in m[-1]["content"] and m[-2]["role"] == "assistant" for m in reasks)
    rejections = DatasetStore(tmp_path / "ds", create=False).read_table("rejections").to_pylist()
    failed = [r for r in rejections if r["stage"] == "analyzer"]
    assert failed and all(r["reason"] == "parse_failed" and r["retryable"] for r in failed)

    with FakeOpenAIServer(Billing(0.0)) as good:
        build(tmp_path / "ds", good, "--stages", "ingest,ground_truth,analyzer")
        assert good.calls  # asked again
    with FakeOpenAIServer(Billing(0.0)) as clean:
        build(tmp_path / "clean", clean, "--stages", "ingest,ground_truth,analyzer")
    assert ids(tmp_path / "ds")["phrases"] == ids(tmp_path / "clean")["phrases"] != []
    assert not [r for r in DatasetStore(tmp_path / "ds", create=False).read_table("rejections").to_pylist()
                if r["stage"] == "analyzer"]
