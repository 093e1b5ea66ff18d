"""Fail fast, say why: before any clip is processed a run checks models, API keys and the cluster's
resources, and stops within seconds with what is missing, for which stage, and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.config import JobConfig, build_stages, colocated_groups, stage_configs
from engine.errors import NotReady
from engine.preflight import check_cluster, check_stages, placement_needs

REPO = Path(__file__).resolve().parent.parent


def _stages(**fields):
    cfg = JobConfig(**fields)
    return build_stages(cfg), colocated_groups(cfg)


def test_http_stages_ask_for_no_gpu_whatever_the_placement():
    configs = stage_configs(JobConfig(profile="videorefer", placement="gpu-cluster"))
    assert configs["annotator"]["chat"]["backend"] == "openai"
    assert configs["annotator"]["resources"]["num_gpus"] == 0 and configs["annotator"]["resources"]["memory_gb"] is None
    assert configs["segmentor"]["resources"]["num_gpus"] == 1  # a local model keeps its GPU
    stages, groups = _stages(profile="videorefer", placement="gpu-cluster")
    needs = placement_needs(stages, groups)
    assert "annotator" not in needs["gpus_by_stage"] and needs["GPU"] == 11  # 19 with a GPU per HTTP annotator


def test_placement_larger_than_the_cluster_is_named_in_one_sentence():
    stages, groups = _stages(profile="tiny", placement="gpu-cluster")
    with pytest.raises(NotReady) as caught:
        check_cluster(stages, groups, {"CPU": 512.0, "GPU": 2.0, "memory": 2.0**50})
    message = str(caught.value)
    assert ("placement: needs 23 GPUs (motion_captioner 4, analyzer 1, segmentor 8, annotator 8, reviewer 2), "
            "the cluster has 2") in message
    assert "--placement" in message and "--executor local" in message
    check_cluster(stages, groups, {"CPU": 512.0, "GPU": 23.0, "memory": 2.0**50})  # fits: no error


def test_missing_models_and_keys_name_stage_and_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stages, _ = _stages(profile="current")
    with pytest.raises(NotReady) as caught:
        check_stages(stages)
    lines = str(caught.value).splitlines()
    assert ("analyzer: model Qwen/Qwen3-4B-Instruct-2507 is not on this machine: "
            "`hf download Qwen/Qwen3-4B-Instruct-2507`") in [line.strip() for line in lines]
    assert "segmentor: video_model facebook/sam3 is not on this machine: `hf download facebook/sam3`" \
        in [line.strip() for line in lines]
    assert any(line.strip().startswith("refiner: $OPENAI_API_KEY is not set") for line in lines)
    assert not any("huggingface-cli" in line for line in lines)
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    check_stages(stages, look_for_models=False)  # on a remote cluster only the keys are checked here
    check_stages(_stages(profile="tiny")[0])  # tiny models are built on first use


def test_current_profile_on_this_machine_exits_within_seconds(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    env.pop("OPENAI_API_KEY", None)
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "engine.run", "build-motionvid-qa", "--profile", "current",
                          "--dataset", str(tmp_path / "ds"), "--source", "virtual:4"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    assert time.monotonic() - started < 60
    assert "hf download" in run.stderr and "analyzer" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "ds" / "clips").exists()  # nothing was processed


@pytest.mark.ray
def test_a_run_asking_for_gpus_the_cluster_lacks_stops_before_any_clip(ray_local, tmp_path, capsys):
    from engine.run import main

    started = time.monotonic()
    code = main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", "virtual:2",
                 "--stages", "ingest,ground_truth,analyzer", "--set", "analyzer.resources.num_gpus=1"])
    assert code == 3
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "needs 1 GPU (analyzer 1), the cluster has 0" in err
    assert not list((tmp_path / "ds").glob("clips/*.parquet"))
    assert ray_local.is_initialized()  # a cluster the run did not start is left alone


def test_when_ingest_keeps_no_clip_the_run_says_so_and_loads_no_model(tmp_path, capsys):
    from engine.run import main
    from engine.store import DatasetStore

    source = tmp_path / "videos"
    source.mkdir()
    (source / "empty.mp4").write_bytes(b"")
    from tests.fakes.openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:  # a model endpoint that records who knocks
        code = main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", str(source), "--executor",
                     "local", "--stages", "ingest,analyzer", "--set", "analyzer.chat.backend=openai",
                     "--set", f"analyzer.chat.base_url={server.base_url}", "--set", "analyzer.chat.timeout_s=1"])
    # Only start-up look-ups of the model (is it still served?); no stage asked it anything.
    assert all(path.startswith("/v1/models") for path in server.gets) and not server.calls
    assert code == 0
    assert "ingest kept no clip" in capsys.readouterr().out
    rejections = DatasetStore(tmp_path / "ds", create=False).read_table("rejections").to_pylist()
    assert [(r["stage"], r["reason"]) for r in rejections] == [("ingest", "empty_file")]
