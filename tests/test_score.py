"""The MotionBench scorer: robust letter parsing, several questions per video, per category."""

from __future__ import annotations

import json

import pytest

from engine.run import main as cli
from engine.score import load_gold, load_predictions, parse_letter, score

OPTIONS = {"A": "left", "B": "to the right", "C": "jumps", "D": "stays still"}


@pytest.mark.parametrize("text", ["The answer is C", "(C)", "C. jumps", "Answer: C", "c", "C", "answer: (c)",
                                  "The correct answer is C.", "**C**", "Option C", "[C]", "C)", "It jumps."])
def test_parse_letter_reads_c(text):
    assert parse_letter(text, OPTIONS) == "C"


@pytest.mark.parametrize("text", ["", "no idea", "The answer is a dog", "A dog runs", None, 3, ["C"]])
def test_parse_letter_refuses_what_names_no_option(text):
    assert parse_letter(text, OPTIONS) is None


def test_option_text_fallback_prefers_the_longest_unique_match():
    assert parse_letter("it moves to the right", {"A": "right", "B": "to the right", "C": "left"}) == "B"
    assert parse_letter("left or right", {"A": "left", "B": "right"}) is None


def gold_lines():
    q = "What happens?\nA. left\nB. to the right\nC. jumps\nD. stays still"
    return [
        {"key": "v1", "question_type": "Motion Recognition",
         "qa": [{"uid": "1", "question": q, "answer": "C"}, {"uid": "2", "question": q, "answer": "A"},
                {"uid": "3", "question": q, "answer": "B", "question_type": "Repetition Count"}]},
        {"key": "v2", "question_type": "Camera Motion",
         "qa": [{"uid": "4", "question": q, "answer": "D"}, {"uid": "5", "question": q, "answer": "NA"}]},
    ]


def test_score_several_questions_per_video_per_category():
    result = score(gold_lines(), {"1": "The answer is C", "2": "B", "3": "hmm", "4": "(D) stays still"})
    assert (result.overall.total, result.overall.correct, result.overall.unparsed) == (4, 2, 1)
    assert result.hidden == 1
    per = result.to_dict()["per_category"]
    assert per["Motion Recognition"]["accuracy"] == 0.5 and per["Repetition Count"]["unparsed"] == 1
    assert per["Camera Motion"]["accuracy"] == 1.0


def test_cli_json_and_table(tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(json.dumps(line) for line in gold_lines()) + "\n")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"1": "Answer: C", "2": "a", "4": "C"}))
    assert cli(["score", "--gold", str(gold), "--pred", str(pred), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == pytest.approx(0.5) and out["missing"] == 1
    assert cli(["score", "--gold", str(gold), "--pred", str(pred)]) == 0
    assert "Motion Recognition" in capsys.readouterr().out


def test_bad_inputs_are_user_errors(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qa": []}\nnot json\n')
    with pytest.raises(Exception, match="line 2 is not JSON"):
        load_gold(bad)
    pred = tmp_path / "pred.json"
    pred.write_text("[1, 2]")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps(gold_lines()[0]))
    assert cli(["score", "--gold", str(gold), "--pred", str(pred)]) == 2
    assert "has no uid" in capsys.readouterr().err
    pred.write_text("42")
    assert cli(["score", "--gold", str(gold), "--pred", str(pred)]) == 2
    assert "JSON object" in capsys.readouterr().err


def test_scores_an_export_roundtrip(tmp_path, capsys):
    from engine.export import export
    from tests.helpers_dataset import write_dataset

    write_dataset(tmp_path / "ds")
    export(tmp_path / "ds", "motionbench", tmp_path / "mb", media="none")
    lines = [json.loads(x) for x in (tmp_path / "mb" / "motionbench.jsonl").read_text().splitlines()]
    perfect = {qa["uid"]: f"The answer is {qa['answer']}." for line in lines for qa in line["qa"]}
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(perfect))
    assert cli(["score", "--gold", str(tmp_path / "mb" / "motionbench.jsonl"), "--pred", str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    template = tmp_path / "mb" / "predictions-template.json"
    assert cli(["score", "--gold", str(tmp_path / "mb" / "video_info.meta.jsonl"), "--pred", str(template)]) == 0
    assert f"counted wrong, {len(perfect)} of them blank" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["<answer>C</answer>", "<think>A dog runs left</think>\n<answer> (c) jumps</answer>",
                                  "<answer>C. jumps</answer>"])
def test_parse_letter_reads_answer_tags(text):
    assert parse_letter(text, OPTIONS) == "C"


def test_prediction_shapes_unparsed_and_unknown_ids(tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(json.dumps(line) for line in gold_lines()) + "\n")
    shapes = {
        "answer_file.json": json.dumps({"1": "C", "2": "A", "3": "no idea", "9": "B"}),
        "records.json": json.dumps([{"uid": "1", "prediction": "<answer>C</answer>"}, {"question_id": "2", "answer": "A"},
                                    {"id": "3", "response": "no idea"}, {"uid": "9", "answer": "B"}]),
        "records.jsonl": "\n".join(json.dumps(r) for r in [{"uid": 1, "output": "(C)"}, {"uid": 2, "text": "a"},
                                                            {"uid": 3, "text": "no idea"}, {"uid": 9, "text": "B"}]),
        "nested.json": json.dumps({"1": {"answer": "C"}, "2": {"response": "The answer is A"}, "3": {"text": "?"},
                                   "9": {"answer": "B"}}),
    }
    for name, text in shapes.items():
        (tmp_path / name).write_text(text)
        result = score(load_gold(gold), load_predictions(tmp_path / name))
        assert (result.overall.correct, result.overall.unparsed, result.overall.missing) == (2, 1, 1), name
        assert result.unknown_ids == ["9"], name
    assert cli(["score", "--gold", str(gold), "--pred", str(tmp_path / "answer_file.json")]) == 0
    out = capsys.readouterr().out
    assert "1 predictions could not be read" in out and "ids the gold file does not hold" in out and "9" in out
