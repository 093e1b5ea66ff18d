"""Qwen-VL clips as video: the local backend's prompt (hand-built `pixel_values_videos`, Qwen3-VL
time stamps) and its 3D M-RoPE position ids against what the model itself computes from the same
inputs (`mm_token_type_ids` -> `get_rope_index` inside its forward), and its continuously batched
greedy answer against the model's own `generate`."""

import numpy as np
import pytest
import torch
from PIL import Image

from agents.backends.chat import ChatModelConfig, ChatRequest
from agents.backends.make import make_chat_backend

MODELS = ["tiny:qwen2.5-vl", "tiny:qwen3-vl"]


def _clip(frames=6, size=(96, 64)):
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(frames)]


def _messages(frames, times):
    return [{"role": "user", "content": [{"type": "video", "video": frames, "timestamps": times},
                                         {"type": "text", "text": "what moves?"}]}]


@pytest.fixture(scope="module", params=MODELS)
def backend(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VDE_CACHE", str(tmp_path_factory.mktemp("vde-cache")))
        chat = make_chat_backend(ChatModelConfig(model=request.param, constrained=False, max_new_tokens=8, concurrency=4))
        chat.setup()
        yield chat


def _model_inputs(backend, messages):
    ids, extra, positions = backend._vision.prompt(messages)
    input_ids = torch.tensor([ids])
    types = torch.zeros_like(input_ids, dtype=torch.int32)
    types[input_ids == backend._tokenizer.convert_tokens_to_ids("<|image_pad|>")] = 1
    types[input_ids == backend._tokenizer.convert_tokens_to_ids("<|video_pad|>")] = 2
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "mm_token_type_ids": types, **extra}
    if backend._model.config.model_type == "qwen2_5_vl":
        step = backend._vision.images.temporal_patch_size
        inputs["second_per_grid_ts"] = torch.tensor([step * 0.5])  # frames 0.5 s apart
    return inputs, positions


def test_position_ids_and_logits_match_the_models_own(backend):
    times = [0.5 * i for i in range(6)]
    inputs, positions = _model_inputs(backend, _messages(_clip(), times))
    model = backend._model
    model.model.rope_deltas = None
    timing = {"second_per_grid_ts": inputs["second_per_grid_ts"]} if "second_per_grid_ts" in inputs else {}
    with torch.inference_mode():
        own = model.model.compute_3d_position_ids(
            input_ids=inputs["input_ids"], image_grid_thw=None, video_grid_thw=inputs["video_grid_thw"],
            inputs_embeds=model.get_input_embeddings()(inputs["input_ids"]), attention_mask=inputs["attention_mask"],
            past_key_values=None, mm_token_type_ids=inputs["mm_token_type_ids"], **timing)
        model.model.rope_deltas = None
        reference = model(**inputs).logits
        ours = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                     position_ids=positions.unsqueeze(1), pixel_values_videos=inputs["pixel_values_videos"],
                     video_grid_thw=inputs["video_grid_thw"]).logits
        line = torch.arange(positions.shape[1]).expand(3, 1, -1)
        flat = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], position_ids=line,
                     pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"]).logits
    assert torch.equal(positions, own[:, 0, :])
    video = inputs["mm_token_type_ids"][0] == 2
    if backend._model.config.model_type == "qwen2_5_vl":  # one temporal position per frame group
        assert len(set(positions[0, video].tolist())) == int(inputs["video_grid_thw"][0, 0]) == 3
    assert torch.allclose(ours, reference, atol=1e-5)
    assert not torch.allclose(flat, reference, atol=1e-3)  # 1-D positions would change the answer


def test_time_stamps_reach_the_prompt(backend):
    slow, fast = ([t * k for t in range(6)] for k in (1.0, 0.25))
    ids_slow, _, pos_slow = backend._vision.prompt(_messages(_clip(), slow))
    ids_fast, _, pos_fast = backend._vision.prompt(_messages(_clip(), fast))
    if backend._model.config.model_type.startswith("qwen3_vl"):  # text stamps before each frame group
        text = backend._tokenizer.decode(ids_slow)
        assert "<0.5 seconds>" in text and "<2.5 seconds>" in text and "<4.5 seconds>" in text
        assert ids_slow != ids_fast
    else:  # temporal position ids spaced by the seconds between frame groups
        assert ids_slow == ids_fast
        video = torch.tensor(ids_slow) == backend._tokenizer.convert_tokens_to_ids("<|video_pad|>")
        assert pos_slow[0, video].max() > pos_fast[0, video].max()


def test_video_answer_matches_generate(backend):
    messages = _messages(_clip(), [0.5 * i for i in range(6)])
    [result] = backend.chat_batch([ChatRequest(messages=messages, max_tokens=8)])
    assert result.ok, result.detail
    inputs, _ = _model_inputs(backend, messages)
    backend._model.model.rope_deltas = None
    with torch.inference_mode():
        out = backend._model.generate(**inputs, max_new_tokens=8, do_sample=False)
    expected = backend._tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert result.text == expected
    assert result.completion_tokens == min(8, out.shape[1] - inputs["input_ids"].shape[1])
