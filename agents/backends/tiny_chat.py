"""Tiny random-weight chat models of the real architectures, built locally with no network.

Each builder writes a `save_pretrained` folder (weights, config, tokenizer with a Qwen-style chat
template, image processor for the VLM) that the local backend loads through the same
`from_pretrained` path as a real checkpoint. The tokenizer is a byte-level BPE trained on a small
built-in corpus, so every byte is encodable, as with Qwen's tokenizer. Deterministic from the seed.
"""

from __future__ import annotations

from pathlib import Path

from agents.backends.models import register_tiny

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2.5-VL's template, reduced to what the agents send: text, image and video parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """
a red ball rolls left across the table while the camera pans right slowly
the blue square moves up and down three times then stops near the top edge
a green triangle rotates clockwise in the center of the frame
the person on the left waves a hand, walks forward and turns around
describe the object inside the highlighted region: its colour, shape and motion
{"nouns": ["ball", "square"], "phrases": ["the red ball on the left"]}
{"detailed": "a small yellow circle moving right", "short": "yellow circle"}
{"verdict": "accept", "score": 0.85, "reason": "the caption matches the mask"}
the object is small, large, bright, dark, fast, slow; it moves towards the camera
"""


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([line for line in _CORPUS.splitlines() if line] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def _text_settings(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


# vLLM's CPU attention needs head_dim >= 32: the `-hd32` builds have 2 heads of 32 (1 key/value head).
WIDE_HEADS = {"num_attention_heads": 2, "num_key_value_heads": 1}


def _vision_tokens(tokenizer) -> dict:
    """The placeholder token ids a Qwen-VL config names."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _save_model(folder: Path, seed: int, tokenizer, model_class, config, processor=None) -> None:
    """Random weights from `seed`, generation stopping on the tokenizer's own tokens, all saved."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)


def _image_processor(patch: int):
    """At most 8x8 patches per image keeps a tiny VLM fast."""
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=(4 * patch) ** 2, max_pixels=(8 * patch) ** 2, patch_size=patch,
                                    merge_size=2, temporal_patch_size=2)


@register_tiny("qwen2")
def build_qwen2(folder: Path, seed: int, heads: dict | None = None) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = _tokenizer(folder)
    _save_model(folder, seed, tokenizer, Qwen2ForCausalLM, Qwen2Config(**_text_settings(tokenizer) | (heads or {})))


@register_tiny("qwen2-hd32")
def build_qwen2_hd32(folder: Path, seed: int) -> None:
    build_qwen2(folder, seed, WIDE_HEADS)


@register_tiny("qwen2.5-vl-hd32")
def build_qwen2_5_vl_hd32(folder: Path, seed: int) -> None:
    build_qwen2_5_vl(folder, seed, WIDE_HEADS)


@register_tiny("qwen2.5-vl")
def build_qwen2_5_vl(folder: Path, seed: int, heads: dict | None = None) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = _tokenizer(folder)
    section = [4, 6, 6] if heads else [2, 3, 3]  # halves of head_dim 32 or 16
    text = _text_settings(tokenizer) | (heads or {}) | {
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
            fullatt_block_indexes=[1],
        ),
        **_vision_tokens(tokenizer),
        tie_word_embeddings=True,
    )
    _save_model(folder, seed, tokenizer, Qwen2_5_VLForConditionalGeneration, config, _image_processor(14))


@register_tiny("qwen3")
def build_qwen3(folder: Path, seed: int) -> None:
    """Qwen3 (the current Qwen text generation): per-head q/k norms and an explicit head_dim."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _tokenizer(folder)
    _save_model(folder, seed, tokenizer, Qwen3ForCausalLM, Qwen3Config(**_text_settings(tokenizer), head_dim=16))


@register_tiny("qwen3-vl")
def build_qwen3_vl(folder: Path, seed: int) -> None:
    """Qwen3-VL: 16 px patches, DeepStack features from two vision blocks, interleaved M-RoPE."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = _tokenizer(folder)
    text = _text_settings(tokenizer) | {
        "head_dim": 16,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                            "mrope_interleaved": True},
    }
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
            spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=256,
            deepstack_visual_indexes=[0, 1],
        ),
        **_vision_tokens(tokenizer),
        tie_word_embeddings=True,
    )
    _save_model(folder, seed, tokenizer, Qwen3VLForConditionalGeneration, config, _image_processor(16))


@register_tiny("qwen2-vl")
def build_qwen2_vl(folder: Path, seed: int) -> None:
    """Qwen2-VL (the VLM of the Qwen2 generation, for the videorefer Reviewer in VLM mode)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokenizer = _tokenizer(folder)
    text = _text_settings(tokenizer) | {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                            "mrope_section": [2, 3, 3]}}
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        **_vision_tokens(tokenizer),
        tie_word_embeddings=True,
    )
    _save_model(folder, seed, tokenizer, Qwen2VLForConditionalGeneration, config, _image_processor(14))
