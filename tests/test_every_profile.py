"""Every stage of every model profile through the real driver and runner, on a virtual source and on
a manifest of spans: each model reference is mapped (VDE_MODEL_MAP) to a tiny random-weight build of
the same architecture, and every API stage is pointed at a loopback OpenAI-compatible server."""

from __future__ import annotations

import json

import pytest
import yaml

from engine.config import JobConfig, stage_configs
from engine.run import main
from engine.store import DatasetStore
from tests.fakes.openai_server import FakeOpenAIServer
from tests.helpers_coded import write_coded_video
from tests.test_current_profile import MODEL_MAP, SETTINGS, api_answer

TINY_BUILDS = {**MODEL_MAP, "Qwen/Qwen2-7B-Instruct": "tiny:qwen2", "Qwen/Qwen2-VL-7B-Instruct": "tiny:qwen2-vl",
               "Qwen/Qwen2.5-VL-7B-Instruct": "tiny:qwen2.5-vl", "IDEA-Research/grounding-dino-base": "tiny:grounding-dino",
               "syscv-community/sam-hq-vit-huge": "tiny:sam-hq", "facebook/sam2.1-hiera-large": "tiny:sam2-video"}
# small test footage passes curation (the videorefer profile curates manifest videos)
FOOTAGE = {"ingest.curation.filters.min_short_side": 64, "ingest.curation.filters.min_duration": 1,
           "ingest.curation.filters.min_motion": "null"}
ROW_TABLES = ("phrases", "objects", "captions", "reviews", "mcqs", "mcq_checks")


def _source(tmp_path, kind: str) -> str:
    if kind == "virtual":
        return "virtual:2"
    write_coded_video(tmp_path / "coded.mp4", 60, 10)
    rows = [{"video_path": str(tmp_path / "coded.mp4"), "start": start, "end": start + 2.5,
             "caption": f"A red box slides to the right, part {n}."} for n, start in enumerate((0.5, 3.0))]
    (tmp_path / "spans.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(tmp_path / "spans.jsonl")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["virtual", "spans"])
@pytest.mark.parametrize("profile", ["tiny", "videorefer", "current"])
def test_every_stage_of_the_profile_writes_rows(profile, source, tmp_path, monkeypatch, capsys):
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(TINY_BUILDS))
    monkeypatch.setenv("VDE_MODEL_MAP", str(tmp_path / "models.yaml"))
    monkeypatch.setenv("VDE_TEST_KEY", "k")
    configs = stage_configs(JobConfig(profile=profile))
    remote = [name for name, conf in configs.items() if (conf.get("chat") or {}).get("backend") == "openai"]
    served = tuple({configs[name]["chat"]["model"] for name in remote})
    with FakeOpenAIServer(api_answer, models=served) as server:
        settings = {**SETTINGS, **FOOTAGE}
        for name in remote:
            settings.update({f"{name}.chat.base_url": server.base_url, f"{name}.chat.api_key_env": "VDE_TEST_KEY"})
        flags = [a for key, value in settings.items() for a in ("--set", f"{key}={value}")]
        code = main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", _source(tmp_path, source),
                     "--profile", profile, "--executor", "local", "--shard-size", "2", *flags])
        assert code == 0, capsys.readouterr().err
        assert not remote or server.calls
    store = DatasetStore(tmp_path / "ds", create=False)
    for name in configs:
        assert store.commits(name), f"stage {name} committed nothing"
    counts = {t: store.read_table(t).num_rows for t in ROW_TABLES}
    assert all(counts.values()), counts
