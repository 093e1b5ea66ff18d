"""The model profiles: each file is exactly its stage's config; real profiles whose weights,
key or server are absent fail at setup with one sentence naming the model and how to fetch it."""

from pathlib import Path

import pytest
import yaml

from agents.analyzer import CaptionAnalyzer
from agents.annotator import ObjectAnnotator
from agents.backends.models import ModelNotFound
from agents.refiner import CaptionRefiner
from agents.reviewer import MaskReviewer

PROFILES = Path(__file__).resolve().parents[1] / "data" / "profiles"
STAGES = {"analyzer": CaptionAnalyzer, "annotator": ObjectAnnotator, "reviewer": MaskReviewer,
          "refiner": CaptionRefiner}


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
    assert any(hint in message for hint in ("huggingface-cli download", "OPENAI_API_KEY", "vllm serve"))
