"""SAM 2 weights between the official `sam2` checkpoint layout and transformers' `Sam2VideoModel`.

Both hold the same tensors under different module paths. Each rule below pairs an official module
path with its transformers path (`{i}` stands for a layer number); a key is renamed by the first
rule whose path is a whole-segment prefix of it, so specific rules come before general ones and
the same list read right-to-left converts back. Two tensors change shape: the prompt encoder's four
point embeddings (four (1, C) tables officially, one (4, C) table in transformers), and transformers
keeps a second copy of the prompt encoder's random Fourier matrix for the image positional encoding.

    official_to_transformers(torch.load("sam2.1_hiera_tiny.pt")["model"]) -> Sam2VideoModel state dict
    transformers_to_official(model.state_dict()) -> a state dict `sam2.build_sam` loads as {"model": ...}

The image-only `Sam2Model` uses the same names for the parts it has.
"""

from __future__ import annotations

import re

# (official, transformers) module paths, most specific first.
_MLP3 = (("layers.0", "proj_in"), ("layers.1", "layers.0"), ("layers.2", "proj_out"))
_DECODER = "sam_mask_decoder", "mask_decoder"
_RULES: list[tuple[str, str]] = [
    # image encoder: Hiera trunk + FPN neck
    ("image_encoder.trunk.patch_embed.proj", "vision_encoder.backbone.patch_embed.projection"),
    ("image_encoder.trunk.blocks.{i}.norm1", "vision_encoder.backbone.blocks.{i}.layer_norm1"),
    ("image_encoder.trunk.blocks.{i}.norm2", "vision_encoder.backbone.blocks.{i}.layer_norm2"),
    ("image_encoder.trunk.blocks.{i}.mlp.layers.0", "vision_encoder.backbone.blocks.{i}.mlp.proj_in"),
    ("image_encoder.trunk.blocks.{i}.mlp.layers.1", "vision_encoder.backbone.blocks.{i}.mlp.proj_out"),
    ("image_encoder.trunk", "vision_encoder.backbone"),
    ("image_encoder.neck.convs.{i}.conv", "vision_encoder.neck.convs.{i}"),
    # prompt encoder
    ("sam_prompt_encoder.mask_downscaling.0", "prompt_encoder.mask_embed.conv1"),
    ("sam_prompt_encoder.mask_downscaling.1", "prompt_encoder.mask_embed.layer_norm1"),
    ("sam_prompt_encoder.mask_downscaling.3", "prompt_encoder.mask_embed.conv2"),
    ("sam_prompt_encoder.mask_downscaling.4", "prompt_encoder.mask_embed.layer_norm2"),
    ("sam_prompt_encoder.mask_downscaling.6", "prompt_encoder.mask_embed.conv3"),
    ("sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
     "prompt_encoder.shared_embedding.positional_embedding"),
    ("sam_prompt_encoder", "prompt_encoder"),
    # mask decoder
    *[(f"{_DECODER[0]}.{head}.{a}", f"{_DECODER[1]}.{head}.{b}")
      for head in ("iou_prediction_head", "output_hypernetworks_mlps.{i}", "pred_obj_score_head") for a, b in _MLP3],
    ("sam_mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("sam_mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("sam_mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    *[(f"sam_mask_decoder.transformer.layers.{{i}}.norm{j}", f"mask_decoder.transformer.layers.{{i}}.layer_norm{j}")
      for j in (1, 2, 3, 4)],
    ("sam_mask_decoder.transformer.layers.{i}.mlp.layers.0", "mask_decoder.transformer.layers.{i}.mlp.proj_in"),
    ("sam_mask_decoder.transformer.layers.{i}.mlp.layers.1", "mask_decoder.transformer.layers.{i}.mlp.proj_out"),
    *[(f"sam_mask_decoder.transformer.layers.{{i}}.{attn}.out_proj", f"mask_decoder.transformer.layers.{{i}}.{attn}.o_proj")
      for attn in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")],
    ("sam_mask_decoder.transformer.final_attn_token_to_image.out_proj",
     "mask_decoder.transformer.final_attn_token_to_image.o_proj"),
    ("sam_mask_decoder.transformer.norm_final_attn", "mask_decoder.transformer.layer_norm_final_attn"),
    _DECODER,
    # memory attention
    *[(f"memory_attention.layers.{{i}}.norm{j}", f"memory_attention.layers.{{i}}.layer_norm{j}") for j in (1, 2, 3)],
    *[(f"memory_attention.layers.{{i}}.{attn}.out_proj", f"memory_attention.layers.{{i}}.{attn}.o_proj")
      for attn in ("self_attn", "cross_attn_image")],
    ("memory_attention.norm", "memory_attention.layer_norm"),
    # memory encoder: the mask downsampler is one Sequential officially, (conv, norm, act) x 4 and a
    # final conv (every released config: total stride 16 at stride 2)
    *[(f"memory_encoder.mask_downsampler.encoder.{3 * k + offset}", f"memory_encoder.mask_downsampler.layers.{k}.{part}")
      for k in range(4) for offset, part in ((0, "conv"), (1, "layer_norm"))],
    ("memory_encoder.mask_downsampler.encoder.12", "memory_encoder.mask_downsampler.final_conv"),
    ("memory_encoder.fuser.layers.{i}.dwconv", "memory_encoder.memory_fuser.layers.{i}.depthwise_conv"),
    ("memory_encoder.fuser.layers.{i}.pwconv1", "memory_encoder.memory_fuser.layers.{i}.pointwise_conv1"),
    ("memory_encoder.fuser.layers.{i}.pwconv2", "memory_encoder.memory_fuser.layers.{i}.pointwise_conv2"),
    ("memory_encoder.fuser.layers.{i}.norm", "memory_encoder.memory_fuser.layers.{i}.layer_norm"),
    ("memory_encoder.fuser.layers.{i}.gamma", "memory_encoder.memory_fuser.layers.{i}.scale"),
    ("memory_encoder.out_proj", "memory_encoder.projection"),
    ("memory_encoder.pix_feat_proj", "memory_encoder.feature_projection"),
    # SAM2Base's own parameters
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("no_obj_ptr", "no_object_pointer"),
    *[(f"obj_ptr_proj.{a}", f"object_pointer_proj.{b}") for a, b in _MLP3],
    ("obj_ptr_tpos_proj", "temporal_positional_encoding_projection_layer"),
]

_POINT_EMBED = "prompt_encoder.point_embed.weight"
_FOURIER = "prompt_encoder.shared_embedding.positional_embedding"
_FOURIER_COPY = "shared_image_embedding.positional_embedding"


def compile_rule(path: str) -> re.Pattern:
    """A module path with `{i}` / `{j}` layer numbers -> a regex matching it as a whole-segment prefix."""
    pattern = re.escape(path).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile(pattern + r"(?=\.|$)")


_FORWARD = [(compile_rule(a), b) for a, b in _RULES]
_BACKWARD = [(compile_rule(b), a) for a, b in _RULES]


def rename(key: str, rules=_FORWARD) -> str:
    """The key under the first rule whose path prefixes it; keys no rule names keep their name."""
    for pattern, target in rules:
        match = pattern.match(key)
        if match:
            return target.format(**match.groupdict()) + key[match.end():]
    return key


def official_to_transformers(state_dict: dict) -> dict:
    """An official SAM 2 state dict (the checkpoint's "model" entry) -> Sam2VideoModel's keys."""
    import torch

    converted, points = {}, {}
    for key, tensor in state_dict.items():
        match = re.fullmatch(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight", key)
        if match:
            points[int(match.group(1))] = tensor
            continue
        converted[rename(key)] = tensor
    if points:
        converted[_POINT_EMBED] = torch.cat([points[i] for i in sorted(points)], dim=0)
    if _FOURIER in converted:
        converted[_FOURIER_COPY] = converted[_FOURIER]
    return converted


def transformers_to_official(state_dict: dict) -> dict:
    """A Sam2VideoModel state dict -> the official layout (what `sam2.build_sam` loads)."""
    converted = {}
    for key, tensor in state_dict.items():
        if key == _FOURIER_COPY:
            continue  # the same matrix as the prompt encoder's
        if key == _POINT_EMBED:
            for index, row in enumerate(tensor):
                converted[f"sam_prompt_encoder.point_embeddings.{index}.weight"] = row[None].clone()
            continue
        converted[rename(key, _BACKWARD)] = tensor
    return converted


# Hiera trunk per checkpoint size, from the official configs (configs/sam2.1/*.yaml).
_HIERA = {
    "tiny": dict(hidden_size=96, heads=1, blocks=[1, 2, 7, 2], global_blocks=[5, 7, 9], background=[7, 7]),
    "small": dict(hidden_size=96, heads=1, blocks=[1, 2, 11, 2], global_blocks=[7, 10, 13], background=[7, 7]),
    "base_plus": dict(hidden_size=112, heads=2, blocks=[2, 3, 16, 3], global_blocks=[12, 16, 20], background=[14, 14]),
    "large": dict(hidden_size=144, heads=2, blocks=[2, 6, 36, 4], global_blocks=[23, 33, 43], background=[7, 7],
                  windows=[8, 4, 16, 8]),
}


def sam2_video_config(checkpoint_name: str, image_size: int = 1024):
    """The Sam2VideoConfig matching an official checkpoint name (e.g. sam2.1_hiera_tiny).

    `image_size` other than 1024 gives the same weights at another input size (the official model
    takes it as `++model.image_size=`); the tests use it to run the real architecture faster.
    """
    from transformers import (
        Sam2HieraDetConfig,
        Sam2VideoConfig,
        Sam2VideoPromptEncoderConfig,
        Sam2VisionConfig,
    )

    size = next((s for s in _HIERA if f"hiera_{s}" in checkpoint_name), None)
    if size is None:
        raise ValueError(f"{checkpoint_name!r} names no SAM 2 size (hiera_tiny, _small, _base_plus, _large)")
    hiera = _HIERA[size]
    width = hiera["hidden_size"]
    backbone = Sam2HieraDetConfig(
        hidden_size=width, num_attention_heads=hiera["heads"], image_size=[image_size, image_size],
        blocks_per_stage=hiera["blocks"], embed_dim_per_stage=[width, 2 * width, 4 * width, 8 * width],
        num_attention_heads_per_stage=[hiera["heads"] * 2**k for k in range(4)],
        global_attention_blocks=hiera["global_blocks"],
        window_positional_embedding_background_size=hiera["background"],
        window_size_per_stage=hiera.get("windows", [8, 4, 14, 7]),
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[8 * width, 4 * width, 2 * width, width],
        backbone_feature_sizes=[[image_size // 4] * 2, [image_size // 8] * 2, [image_size // 16] * 2],
    )
    version_2_1 = checkpoint_name.startswith("sam2.1")
    return Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config=Sam2VideoPromptEncoderConfig(image_size=image_size),
        image_size=image_size, memory_attention_rope_feat_sizes=[image_size // 16] * 2,
        enable_temporal_pos_encoding_for_object_pointers=version_2_1, enable_occlusion_spatial_embedding=version_2_1,
    )


def convert_checkpoint(checkpoint, folder) -> None:
    """An official `.pt` checkpoint -> a transformers Sam2VideoModel folder (`save_pretrained`)."""
    from pathlib import Path

    import torch
    from transformers import Sam2VideoModel

    checkpoint = Path(checkpoint)
    model = Sam2VideoModel(sam2_video_config(checkpoint.stem))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(official_to_transformers(state), strict=True)
    model.eval().save_pretrained(folder)
