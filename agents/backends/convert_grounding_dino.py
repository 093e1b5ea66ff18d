"""Grounding DINO weights from the official (`groundingdino-py`) layout to transformers'.

`official_to_transformers(torch.load("groundingdino_swint_ogc.pth")["model"])` gives a state dict
for `GroundingDinoForObjectDetection`. Renaming works as in `convert_sam2` (first whole-segment
prefix rule wins); beyond names, fused attention projections are split: Swin's `qkv` into
q/k/v_proj, and every `nn.MultiheadAttention` `in_proj_*` (text enhancer, decoder self-attention,
decoder text cross-attention) into query/key/value. Dropped: BERT's pooler (Grounding DINO reads
the token states only) and Swin's `relative_position_index` buffers (recomputed from the window
size). transformers' Swin has a final `layernorm` the backbone output never passes through; it
is set to identity.
"""

from __future__ import annotations

from agents.backends.convert_sam2 import compile_rule, rename

_SWIN = "model.backbone.conv_encoder.model"
_BLOCK = "backbone.0.layers.{i}.blocks.{j}"
_HF_BLOCK = _SWIN + ".swin.encoder.layers.{i}.blocks.{j}"
_ENC, _HF_ENC = "transformer.encoder", "model.encoder.layers.{i}"
_DEC, _HF_DEC = "transformer.decoder.layers.{i}", "model.decoder.layers.{i}"

_RULES: list[tuple[str, str]] = [
    # Swin backbone
    ("backbone.0.patch_embed.proj", _SWIN + ".swin.embeddings.patch_embeddings.projection"),
    ("backbone.0.patch_embed.norm", _SWIN + ".swin.embeddings.norm"),
    (f"{_BLOCK}.norm1", f"{_HF_BLOCK}.layernorm_before"),
    (f"{_BLOCK}.norm2", f"{_HF_BLOCK}.layernorm_after"),
    (f"{_BLOCK}.attn.relative_position_bias_table",
     f"{_HF_BLOCK}.attention.relative_position_bias.relative_position_bias_table"),
    (f"{_BLOCK}.attn.proj", f"{_HF_BLOCK}.attention.o_proj"),
    (f"{_BLOCK}.attn.qkv", f"{_HF_BLOCK}.attention.qkv"),  # split below
    (f"{_BLOCK}.mlp", f"{_HF_BLOCK}.mlp"),
    ("backbone.0.layers.{i}.downsample", _SWIN + ".swin.encoder.layers.{i}.downsample"),
    # the backbone's per-level output norms: official norm1..3 are the outputs of stages 2..4
    *[(f"backbone.0.norm{k}", f"{_SWIN}.hidden_states_norms.stage{k + 1}") for k in (1, 2, 3)],
    # text encoder and projections
    ("bert", "model.text_backbone"),
    ("feat_map", "model.text_projection"),
    ("input_proj", "model.input_proj_vision"),
    ("transformer.level_embed", "model.level_embed"),
    ("transformer.tgt_embed", "model.query_position_embeddings"),
    ("transformer.enc_output_norm", "model.enc_output_norm"),
    ("transformer.enc_output", "model.enc_output"),
    ("transformer.enc_out_bbox_embed", "model.encoder_output_bbox_embed"),
    # encoder: deformable image layer, text enhancer, fusion per layer
    (f"{_ENC}.layers.{{i}}.self_attn", f"{_HF_ENC}.deformable_layer.self_attn"),
    (f"{_ENC}.layers.{{i}}.norm1", f"{_HF_ENC}.deformable_layer.self_attn_layer_norm"),
    (f"{_ENC}.layers.{{i}}.linear1", f"{_HF_ENC}.deformable_layer.fc1"),
    (f"{_ENC}.layers.{{i}}.linear2", f"{_HF_ENC}.deformable_layer.fc2"),
    (f"{_ENC}.layers.{{i}}.norm2", f"{_HF_ENC}.deformable_layer.final_layer_norm"),
    (f"{_ENC}.text_layers.{{i}}.self_attn", f"{_HF_ENC}.text_enhancer_layer.self_attn"),
    (f"{_ENC}.text_layers.{{i}}.linear1", f"{_HF_ENC}.text_enhancer_layer.fc1"),
    (f"{_ENC}.text_layers.{{i}}.linear2", f"{_HF_ENC}.text_enhancer_layer.fc2"),
    (f"{_ENC}.text_layers.{{i}}.norm1", f"{_HF_ENC}.text_enhancer_layer.layer_norm_before"),
    (f"{_ENC}.text_layers.{{i}}.norm2", f"{_HF_ENC}.text_enhancer_layer.layer_norm_after"),
    (f"{_ENC}.fusion_layers.{{i}}.gamma_v", f"{_HF_ENC}.fusion_layer.vision_param"),
    (f"{_ENC}.fusion_layers.{{i}}.gamma_l", f"{_HF_ENC}.fusion_layer.text_param"),
    (f"{_ENC}.fusion_layers.{{i}}.layer_norm_v", f"{_HF_ENC}.fusion_layer.layer_norm_vision"),
    (f"{_ENC}.fusion_layers.{{i}}.layer_norm_l", f"{_HF_ENC}.fusion_layer.layer_norm_text"),
    *[(f"{_ENC}.fusion_layers.{{i}}.attn.{a}", f"{_HF_ENC}.fusion_layer.attn.{b}")
      for a, b in (("v_proj", "vision_proj"), ("l_proj", "text_proj"), ("values_v_proj", "values_vision_proj"),
                   ("values_l_proj", "values_text_proj"), ("out_v_proj", "out_vision_proj"),
                   ("out_l_proj", "out_text_proj"))],
    # decoder
    (f"{_DEC}.cross_attn", f"{_HF_DEC}.encoder_attn"),
    (f"{_DEC}.norm1", f"{_HF_DEC}.encoder_attn_layer_norm"),
    (f"{_DEC}.ca_text", f"{_HF_DEC}.encoder_attn_text"),
    (f"{_DEC}.catext_norm", f"{_HF_DEC}.encoder_attn_text_layer_norm"),
    (f"{_DEC}.norm2", f"{_HF_DEC}.self_attn_layer_norm"),
    (f"{_DEC}.linear1", f"{_HF_DEC}.fc1"),
    (f"{_DEC}.linear2", f"{_HF_DEC}.fc2"),
    (f"{_DEC}.norm3", f"{_HF_DEC}.final_layer_norm"),
    (f"{_DEC}.self_attn", f"{_HF_DEC}.self_attn"),
    ("transformer.decoder.ref_point_head", "model.decoder.reference_points_head"),
    ("transformer.decoder.bbox_embed", "model.decoder.bbox_embed"),
    ("transformer.decoder.norm", "model.decoder.layer_norm"),
]
_FORWARD = [(compile_rule(a), b) for a, b in _RULES]
_FINAL_NORM = _SWIN + ".swin.layernorm"


def official_to_transformers(state_dict: dict) -> dict:
    """An official Grounding DINO state dict ("model" entry, `module.` prefixes allowed) -> transformers."""
    import torch

    converted = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("bert.pooler.") or key.endswith(".relative_position_index"):
            continue
        new = rename(key, _FORWARD)
        if new.endswith((".attention.qkv.weight", ".attention.qkv.bias")):
            stem, kind = new.rsplit(".qkv.", 1)
            for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3), strict=True):
                converted[f"{stem}.{name}.{kind}"] = part
        elif new.endswith(("in_proj_weight", "in_proj_bias")):
            stem, kind = new.rsplit(".in_proj_", 1)
            for name, part in zip(("query", "key", "value"), tensor.chunk(3), strict=True):
                converted[f"{stem}.{name}.{kind}"] = part
        else:
            converted[new] = tensor
    width = converted[f"{_SWIN}.hidden_states_norms.stage4.weight"].shape[0]
    converted.setdefault(f"{_FINAL_NORM}.weight", torch.ones(width))
    converted.setdefault(f"{_FINAL_NORM}.bias", torch.zeros(width))
    return converted
