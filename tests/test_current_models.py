"""Current model generations as tiny random-weight builds: Qwen3 and Qwen3-VL through the local
chat backend (images with M-RoPE positions), each saved and loaded back like a real checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel

from agents.backends.chat import ChatModelConfig, ChatRequest
from agents.backends.local_chat import LocalChatBackend
from agents.backends.models import resolve_model


class Verdict(BaseModel):
    verdict: str
    score: float


@pytest.mark.parametrize(("ref", "model_type"), [("tiny:qwen3", "qwen3"), ("tiny:qwen3-vl", "qwen3_vl")])
def test_current_qwen_builds_answer_through_the_local_backend(ref, model_type):
    assert json.loads((resolve_model(ref) / "config.json").read_text())["model_type"] == model_type
    backend = LocalChatBackend(ChatModelConfig(model=ref, max_new_tokens=48))
    backend.setup()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    content = [{"type": "image", "image": image}, {"type": "text", "text": "judge"}] if "vl" in ref else "judge"
    asks = [ChatRequest(messages=[{"role": "user", "content": content}], response_model=Verdict, max_tokens=48)] * 2
    first, second = backend.chat_batch(asks)
    assert first.ok and isinstance(first.parsed, Verdict), first.detail
    assert second.text == first.text  # greedy decoding of one prompt is repeatable within a batch


def test_qwen3_vl_text_only_request_has_no_image_positions():
    backend = LocalChatBackend(ChatModelConfig(model="tiny:qwen3-vl", max_new_tokens=8))
    backend.setup()
    [result] = backend.chat_batch([ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=8)])
    assert result.ok
