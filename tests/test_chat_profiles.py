"""The model profiles: each file is exactly its stage's config; real profiles whose weights,
key or server are absent fail at setup with one sentence naming the model and how to fetch it."""

from pathlib import Path

import pytest
import yaml

from agents.analyzer import CaptionAnalyzer
from agents.annotator import ObjectAnnotator
from agents.backends.models import ModelNotFound
from agents.mcq_filters import McqFilters
from agents.question_writer import QuestionWriter
from agents.refiner import CaptionRefiner
from agents.reviewer import MaskReviewer

PROFILES = Path(__file__).resolve().parents[1] / "data" / "profiles"
STAGES = {"analyzer": CaptionAnalyzer, "annotator": ObjectAnnotator, "reviewer": MaskReviewer,
          "refiner": CaptionRefiner, "question_writer": QuestionWriter, "mcq_filters": McqFilters}


def _stage(profile, name):
    return STAGES[name](yaml.safe_load((PROFILES / profile / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("profile", ["tiny", "videorefer", "current"])
@pytest.mark.parametrize("name", sorted(STAGES))
def test_profile_files_are_stage_configs(profile, name):
    stage = _stage(profile, name)
    assert stage.config.chat.model
    if profile == "tiny":
        assert stage.config.chat.model.startswith("tiny:") and stage.config.chat.backend == "local"


@pytest.mark.parametrize("profile", ["videorefer", "current"])
@pytest.mark.parametrize("name", sorted(STAGES))
def test_absent_models_fail_at_setup_with_one_sentence(profile, name, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stage = _stage(profile, name)
    with pytest.raises(ModelNotFound) as caught:
        stage.setup()
    message = str(caught.value)
    assert stage.config.chat.model in message and "\n" not in message
    assert any(hint in message for hint in ("hf download", "OPENAI_API_KEY", "vllm serve"))


def test_tiny_profile_chain_produces_rows_at_every_stage(tmp_path, monkeypatch):
    """The demo's guarantee: with random weights every chat stage still writes rows."""
    from agents.base import Batch
    from schemas import validate_rows
    from tests.fakes.shapes import make_clip

    monkeypatch.setenv("VDE_CACHE", str(tmp_path / "cache"))
    clip, objects = make_clip(tmp_path, colours=((220, 40, 40), (40, 40, 220)), speeds=(8, 3))
    tables = {"clips": [clip], "objects": objects}
    for name in ("analyzer", "annotator", "reviewer", "refiner"):
        stage = _stage("tiny", name)
        out = stage(Batch(root=tmp_path, tables=tables))
        [table] = stage.writes
        rows = out.rows[table]
        assert rows, f"{name} wrote no rows: {out.rejections}"
        assert validate_rows(table, rows, name)[1] == []
        tables[table] = tables.get(table, []) + rows
    kinds = {c.kind for c in tables["captions"]}
    assert kinds == {"object_detailed", "object_short", "refined_detailed", "refined_short"}
