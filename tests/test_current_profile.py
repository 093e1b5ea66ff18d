"""`build-motionvid-qa --profile current` end to end: SAM 3, Qwen3-VL and Qwen3 as tiny builds of
their real architectures (a model map points the profile's references at them), the API stages on
a loopback OpenAI-compatible server, every stage through the real driver and runner."""

from __future__ import annotations

import pytest
import yaml

from engine.run import main
from engine.store import DatasetStore
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.test_flaky_endpoint import scripted_answer

API_STAGES = ("refiner", "question_writer", "mcq_filters")
MODEL_MAP = {"facebook/sam3": "tiny:sam3-video", "Qwen/Qwen3-VL-8B-Instruct": "tiny:qwen3-vl",
             "Qwen/Qwen3-4B-Instruct-2507": "tiny:qwen3"}
# Random weights score every detection about 0.25 and answer noise: thresholds at zero keep every
# stage fed, and few frames keep the run short.
SETTINGS = {"ingest.num_samples": 6, "segmentor.box_threshold": 0, "segmentor.min_mask_area": 1, "segmentor.max_objects_per_clip": 2,
            "motion_captioner.num_frames": 2, "motion_captioner.max_side": 112, "motion_captioner.history": 2,
            "annotator.num_frames": 2, "annotator.max_side": 112, "reviewer.num_frames": 2,
            "reviewer.max_side": 112, "reviewer.accept_rule": "score", "reviewer.min_score": 0}


def api_answer(body: dict) -> Reply:
    """Question writing gets well-formed questions; the other API stages a minimal schema instance."""
    wanted = body.get("response_format", {}).get("json_schema", {}).get("name")
    return Reply(scripted_answer(body) if wanted in ("MotionAnswer", "ObjectAnswer") else None)


@pytest.mark.slow
def test_current_profile_runs_every_stage_with_sam3_and_qwen3(tmp_path, monkeypatch, capsys):
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(MODEL_MAP))
    monkeypatch.setenv("VDE_MODEL_MAP", str(tmp_path / "models.yaml"))
    monkeypatch.setenv("VDE_TEST_KEY", "k")
    with FakeOpenAIServer(api_answer, models=("gpt-4.1", "gpt-4.1-mini")) as server:
        flags = [f"{k}={v}" for k, v in SETTINGS.items()]
        for stage in API_STAGES:
            flags += [f"{stage}.chat.base_url={server.base_url}", f"{stage}.chat.api_key_env=VDE_TEST_KEY"]
        code = main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", "virtual:2",
                     "--profile", "current", "--executor", "local", "--shard-size", "2",
                     *[a for flag in flags for a in ("--set", flag)]])
        assert code == 0, capsys.readouterr().err
        assert server.calls, "the API stages never asked the server"
    store = DatasetStore(tmp_path / "ds", create=False)
    rows = {t: store.read_table(t).to_pylist() for t in ("objects", "captions", "reviews", "mcqs")}
    masklets = [o for o in rows["objects"] if o["source"] == "segmentor"]
    assert masklets and {o["model"] for o in masklets} == {"facebook/sam3"}
    assert all(o["prompt_version"].startswith("sam3@") for o in masklets)
    captions = {c["agent"]: c for c in rows["captions"]}
    assert captions["annotator"]["model"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert captions["refiner"]["model"] == "gpt-4.1"
    assert {r["model"] for r in rows["reviews"]} == {"Qwen/Qwen3-VL-8B-Instruct"}
    assert {q["source"] for q in rows["mcqs"]} == {"template", "llm"}
    assert {c["model"] for c in rows["captions"] if c["agent"] == "motion_captioner"} == {"Qwen/Qwen3-VL-8B-Instruct"}
    phrases = store.read_table("phrases").to_pylist()
    assert phrases and {p["model"] for p in phrases} == {"Qwen/Qwen3-4B-Instruct-2507"}
