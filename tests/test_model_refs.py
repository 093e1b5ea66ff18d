"""Every model reference of every profile loads through its backend; `--check` lists them with
`hf download` commands; `--allow-download` reaches the hub client; API models are checked once
before any work.

Weights cannot be downloaded here, so each real reference is mapped (VDE_MODEL_MAP) to a tiny build
of the same architecture, and the build's `model_type` is checked against the real checkpoint's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from agents.backends.chat import ChatModelConfig
from agents.backends.models import ModelNotFound, check_api_model, resolve_model, stage_models
from engine.config import JobConfig, build_stages
from engine.run import main
from tests.fakes.openai_server import FakeOpenAIServer

PROFILES = Path(__file__).resolve().parents[1] / "data" / "profiles"

# Each local reference a profile uses: (model_type in the real checkpoint's config.json, tiny build).
ARCHITECTURES = {
    "Qwen/Qwen2-7B-Instruct": ("qwen2", "qwen2"),
    "Qwen/Qwen2-VL-7B-Instruct": ("qwen2_vl", "qwen2-vl"),
    "Qwen/Qwen3-4B-Instruct-2507": ("qwen3", "qwen3"),
    "Qwen/Qwen3-VL-8B-Instruct": ("qwen3_vl", "qwen3-vl"),
    "IDEA-Research/grounding-dino-base": ("grounding-dino", "grounding-dino"),
    "syscv-community/sam-hq-vit-huge": ("sam_hq", "sam-hq"),
    "facebook/sam2.1-hiera-large": ("sam2_video", "sam2-video"),
    "facebook/sam3": ("sam3_video", "sam3-video"),
}
TINY_TYPES = {"qwen2": "qwen2", "qwen2.5-vl": "qwen2_5_vl", "qwen3": "qwen3", "qwen3-vl": "qwen3_vl",
              "qwen2-vl": "qwen2_vl", "grounding-dino": "grounding-dino", "sam": "sam", "sam-hq": "sam_hq",
              "sam2-video": "sam2_video", "sam3-video": "sam3_video"}


def profile_stages(profile: str):
    return build_stages(JobConfig(profile=profile))


def model_map(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({ref: f"tiny:{tiny}" for ref, (_, tiny) in ARCHITECTURES.items()}))
    return path


def _model_type(folder: Path) -> str:
    import json

    return json.loads((folder / "config.json").read_text())["model_type"]


@pytest.mark.parametrize("profile", sorted(p.name for p in PROFILES.iterdir() if p.is_dir()))
def test_every_local_reference_resolves_to_its_architecture_and_loads(profile, tmp_path, monkeypatch):
    monkeypatch.setenv("VDE_MODEL_MAP", str(model_map(tmp_path)))
    stages = {s.name: s for s in profile_stages(profile)}
    uses = [u for s in stages.values() for u in stage_models(s) if u.kind == "local"]
    assert uses, f"profile {profile} loads no local model"
    for use in uses:
        if use.ref.startswith("tiny:"):
            expected = TINY_TYPES[use.ref.removeprefix("tiny:")]
        else:
            assert use.ref in ARCHITECTURES, f"{profile}/{use.stage}: no known architecture for {use.ref}"
            expected = ARCHITECTURES[use.ref][0]
        assert _model_type(resolve_model(use.ref, use.revision, use.seed)) == expected, use
    for name in {u.stage for u in uses}:  # load through the stage's own backend
        stage = stages[name]
        stage.setup()
        stage.teardown()


def test_the_current_profile_uses_sam3_and_qwen3():
    uses = {(u.stage, u.role): u.ref for s in profile_stages("current") for u in stage_models(s)}
    assert uses[("segmentor", "video_model")] == "facebook/sam3"
    assert uses[("annotator", "chat")] == uses[("reviewer", "chat")] == "Qwen/Qwen3-VL-8B-Instruct"
    assert uses[("analyzer", "chat")].startswith("Qwen/Qwen3")
    assert "gpt-4o" not in {uses[(s, "chat")] for s in ("refiner", "question_writer", "mcq_filters")}
    assert not any(stage == "segmentor" and role != "video_model" for stage, role in uses)


def test_videorefer_reviews_the_masked_region_and_its_http_annotator_needs_no_gpu():
    stages = {s.name: s for s in build_stages(JobConfig(profile="videorefer", placement="gpu-cluster"))}
    assert stages["reviewer"].config.mode == "vlm"
    assert stages["annotator"].config.chat.backend == "openai"
    assert stages["annotator"].resources.num_gpus == 0
    assert stages["reviewer"].resources.num_gpus > 0  # a local model keeps the placement's GPU


def _empty_hub(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VDE_ALLOW_DOWNLOAD", "0")


def test_check_lists_every_model_with_hf_download_commands(tmp_path, monkeypatch, capsys):
    _empty_hub(monkeypatch, tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--profile", "current", "--check"])
    out = capsys.readouterr().out
    assert code == 1
    for ref in ("facebook/sam3", "Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-4B-Instruct-2507"):
        assert f"hf download {ref} --revision main" in out
    assert "gpt-4.1" in out and "$OPENAI_API_KEY not set" in out
    assert "huggingface-cli" not in out
    assert not (tmp_path / "ds").exists()  # a dry start writes nothing

    monkeypatch.setenv("VDE_MODEL_MAP", str(model_map(tmp_path)))
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    code = main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--profile", "current", "--check"])
    out = capsys.readouterr().out
    assert code == 0 and "facebook/sam3 -> tiny build" in out and "hf download" not in out


def _profile_with(tmp_path, stage: str, chat: dict) -> Path:
    folder = tmp_path / "profile"
    shutil.copytree(PROFILES / "tiny", folder)
    config = yaml.safe_load((folder / f"{stage}.yaml").read_text())
    config["chat"] = {**config["chat"], **chat}
    (folder / f"{stage}.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_allow_download_fetches_with_the_hub_client_at_the_profile_revision(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    _empty_hub(monkeypatch, tmp_path)
    calls = []

    def fake_snapshot_download(repo_id, revision=None, local_files_only=False, **kw):
        calls.append((repo_id, revision, local_files_only))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        return str(resolve_model("tiny:qwen3"))  # what the hub would have written

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    profile = _profile_with(tmp_path, "analyzer", {"model": "Qwen/Qwen3-4B-Instruct-2507", "revision": "abc123"})
    args = ["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", "virtual:2", "--profile",
            str(profile), "--stages", "ingest,analyzer", "--executor", "local"]

    assert main(args) == 3  # not ready: the model is missing, nothing was processed
    error = capsys.readouterr().err
    assert "hf download Qwen/Qwen3-4B-Instruct-2507 --revision abc123" in error and "--allow-download" in error
    assert all(local for _, _, local in calls)  # nothing fetched without the flag
    assert not list((tmp_path / "ds").glob("phrases/*.parquet"))

    calls.clear()
    assert main([*args, "--allow-download"]) == 0
    assert ("Qwen/Qwen3-4B-Instruct-2507", "abc123", False) in calls
    import pyarrow.parquet as pq

    phrases = pq.read_table(tmp_path / "ds" / "phrases").to_pylist()
    assert phrases and {p["model"] for p in phrases} == {"Qwen/Qwen3-4B-Instruct-2507"}


def test_api_model_check_stops_on_an_unknown_or_retired_model():
    with FakeOpenAIServer(models=("gpt-4.1", "gpt-4.1-mini")) as server:
        check_api_model(ChatModelConfig(backend="openai", model="gpt-4.1", base_url=server.base_url))
        with pytest.raises(ModelNotFound) as caught:
            check_api_model(ChatModelConfig(backend="openai", model="gpt-4o", base_url=server.base_url))
        assert not server.calls  # no completion was paid for
    message = str(caught.value)
    assert "'gpt-4o'" in message and "retired" in message and "gpt-4.1" in message and "\n" not in message
    with pytest.raises(ModelNotFound, match="no OpenAI-compatible server answers"):
        check_api_model(ChatModelConfig(backend="openai", model="gpt-4.1", base_url=server.base_url))


def test_a_run_with_a_retired_api_model_stops_before_any_work(tmp_path, capsys):
    with FakeOpenAIServer(models=("gpt-4.1",)) as server:
        profile = _profile_with(tmp_path, "refiner", {"backend": "openai", "model": "gpt-4o",
                                                      "base_url": server.base_url, "api_key_env": "VDE_TEST_KEY"})
        code = main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", "virtual:2",
                     "--profile", str(profile), "--executor", "local"])
        assert not server.calls
    assert code == 3
    error = capsys.readouterr().err
    assert "gpt-4o" in error and "retired" in error and error.count("\n") == 1
    assert not list((tmp_path / "ds").glob("*/*.parquet"))


def test_a_tiny_build_made_by_other_code_or_transformers_is_not_reused(monkeypatch):
    """A tiny build cached by an older builder (say, a chat template without video markers) would
    fail at the first request: the folder name carries the builders' code and transformers version."""
    import importlib.metadata

    from agents.backends import models

    today = models.tiny_folder("qwen2.5-vl", 0)
    models._builders_fingerprint.cache_clear()
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0.other")
    try:
        assert models.tiny_folder("qwen2.5-vl", 0) != today
    finally:
        models._builders_fingerprint.cache_clear()
    assert today.parent == models.cache_root() / "tiny" and today.name.startswith("qwen2.5-vl-seed0-")


def test_rows_record_the_commit_of_the_hf_cache_snapshot_they_came_from(tmp_path, monkeypatch):
    """A branch such as `main` moves on: a row made from a Hugging Face cache snapshot names the
    snapshot's commit, read from the cache's own layout (refs/main -> snapshots/<commit>)."""
    import huggingface_hub.constants
    import pyarrow.parquet as pq

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--Org--Tiny-Chat"
    shutil.copytree(resolve_model("tiny:qwen3"), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = _profile_with(tmp_path, "analyzer", {"model": "Org/Tiny-Chat"})
    assert main(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", "virtual:2", "--profile",
                 str(profile), "--stages", "ingest,analyzer", "--executor", "local"]) == 0
    phrases = pq.read_table(tmp_path / "ds" / "phrases").to_pylist()
    assert phrases and {(p["model"], p["model_revision"]) for p in phrases} == {("Org/Tiny-Chat", commit)}
