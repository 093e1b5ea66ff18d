"""Tiny random-weight builds of the real vision architectures, for tests and the demo.

Each builder makes a small config of the real transformers class (Grounding DINO, SAM, SAM-HQ,
SAM 2 video), initialises it deterministically from the seed, and writes a `save_pretrained`
folder with its processor files, so `agents.backends.vision` loads it exactly like a real
checkpoint. Image sizes are 128 px so a whole clip runs in about a second on a CPU.
"""

from __future__ import annotations

from pathlib import Path

from agents.backends.models import register_tiny

TINY_IMAGE_SIZE = 128

# Grounding DINO hard-codes [CLS]=101, [SEP]=102, "."=1012 and "?"=1029, so the vocabulary keeps
# BERT's ids for those and fills the rest with words the virtual scenes and tests use.
_WORDS = (
    "a an the of and with on in to left right up down moving moves small large big tiny "
    "red green blue yellow orange purple white black gray grey pink brown cyan magenta "
    "circle square triangle star ball box disk ring cube shape object person dog cat car "
    "background bouncing rotating spinning sliding frame video"
).split()


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def write_bert_vocab(folder: Path) -> Path:
    """A BERT word-piece vocab with the special ids Grounding DINO relies on."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = list(_WORDS) + list("abcdefghijklmnopqrstuvwxyz0123456789") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    filler = iter(pieces)
    while len(tokens) < 1030:
        position = len(tokens)
        if position == 1012:
            tokens.append(".")
        elif position == 1029:
            tokens.append("?")
        else:
            tokens.append(next(filler, f"[unused{position}]"))
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n")
    return path


@register_tiny("grounding-dino")
def build_grounding_dino(folder: Path, seed: int) -> None:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    _seed(seed)
    backbone = SwinConfig(
        image_size=TINY_IMAGE_SIZE, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=4, out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=1030, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=32, num_queries=16,
        encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2, decoder_n_points=2,
        num_feature_levels=4, max_text_len=64, fusion_dropout=0.0, text_enhancer_dropout=0.0,
    )
    model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(folder)
    # BertTokenizer(vocab=...) reads the file; vocab_file= is silently ignored here.
    tokenizer = BertTokenizer(vocab=str(write_bert_vocab(folder)), do_lower_case=True)
    image_processor = GroundingDinoImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE_SIZE, "longest_edge": 2 * TINY_IMAGE_SIZE}
    )
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _sam_parts(image_size: int):
    from transformers import SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

    vision = SamVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, image_size=image_size,
        patch_size=16, output_channels=32, window_size=4, global_attn_indexes=[1], num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=image_size, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32
    )
    return vision, prompt, decoder


def _save_sam_processor(folder: Path, image_size: int, processor_class) -> None:
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": image_size // 4},
        mask_pad_size={"height": image_size // 4, "width": image_size // 4},
    )
    processor_class(image_processor=image_processor).save_pretrained(folder)


@register_tiny("sam")
def build_sam(folder: Path, seed: int) -> None:
    from transformers import SamConfig, SamModel, SamProcessor

    _seed(seed)
    vision, prompt, decoder = _sam_parts(TINY_IMAGE_SIZE)
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    SamModel(config).eval().save_pretrained(folder)
    _save_sam_processor(folder, TINY_IMAGE_SIZE, SamProcessor)


@register_tiny("sam-hq")
def build_sam_hq(folder: Path, seed: int) -> None:
    from transformers import (
        SamHQConfig,
        SamHQMaskDecoderConfig,
        SamHQModel,
        SamHQProcessor,
        SamHQPromptEncoderConfig,
        SamHQVisionConfig,
    )

    _seed(seed)
    vision, prompt, decoder = _sam_parts(TINY_IMAGE_SIZE)
    config = SamHQConfig(
        vision_config=SamHQVisionConfig(**vision.to_dict()),
        prompt_encoder_config=SamHQPromptEncoderConfig(**prompt.to_dict()),
        mask_decoder_config=SamHQMaskDecoderConfig(**decoder.to_dict(), vit_dim=32),
    )
    SamHQModel(config).eval().save_pretrained(folder)
    _save_sam_processor(folder, TINY_IMAGE_SIZE, SamHQProcessor)


@register_tiny("sam2-video")
def build_sam2_video(folder: Path, seed: int) -> None:
    from transformers import (
        Sam2HieraDetConfig,
        Sam2VideoConfig,
        Sam2VideoMaskDecoderConfig,
        Sam2VideoModel,
        Sam2VideoPromptEncoderConfig,
        Sam2VisionConfig,
    )

    _seed(seed)
    size = TINY_IMAGE_SIZE
    # Memory attention reads 64-channel memories (hard-coded) and splits object pointers into
    # hidden / 64 tokens, so hidden must be a multiple of 64 above 64, as in the real models.
    hidden = 128
    backbone = Sam2HieraDetConfig(
        hidden_size=16, image_size=[size, size], blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2], fpn_hidden_size=hidden,
    )
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(hidden_size=hidden, image_size=size, patch_size=16),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(
            hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=hidden
        ),
        image_size=size, num_maskmem=3, memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[size // 16] * 2,
        memory_encoder_hidden_size=hidden, mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=64, max_object_pointers_in_encoder=4,
    )
    Sam2VideoModel(config).eval().save_pretrained(folder)


SAM3_TINY_IMAGE_SIZE = 112  # 8 x 8 patches of 14 px (the real model: 1008 px, 72 x 72)


def write_clip_tokenizer(folder: Path, vocab_size: int) -> dict[str, int]:
    """A CLIP byte-level BPE tokenizer with no merges (every word is spelled in characters), the
    kind SAM 3's text encoder reads; returns the special token ids."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    if len(tokens) > vocab_size:
        raise ValueError(f"a CLIP vocabulary needs {len(tokens)} ids, the text model has {vocab_size}")
    tokenizer = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])
    tokenizer.model_max_length = 32
    tokenizer.save_pretrained(folder)
    return {"bos": 0, "eos": 1}


@register_tiny("sam3-video")
def build_sam3_video(folder: Path, seed: int) -> None:
    """SAM 3 video (`Sam3VideoModel`): the text-prompted DETR detector and the SAM 2 style tracker
    sharing one ViT backbone. Thresholds stay at the real defaults: callers lower them for random
    weights, as they would tune them for real ones. The hot-start delay is short but on, so the
    buffering and removal logic runs."""
    from transformers import Sam3Config, Sam3TrackerVideoConfig, Sam3VideoConfig, Sam3VideoModel

    _seed(seed)
    size, patch, hidden, vocab = SAM3_TINY_IMAGE_SIZE, 14, 128, 600
    special = write_clip_tokenizer(folder, vocab)
    backbone = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, image_size=size, patch_size=patch, window_size=4,
                    global_attn_indexes=[1], pretrain_image_size=size)
    vision = dict(model_type="sam3_vision_model", backbone_config=backbone, fpn_hidden_size=hidden)
    text = dict(model_type="clip_text_model", vocab_size=vocab, hidden_size=32, intermediate_size=64,
                projection_dim=32, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                bos_token_id=special["bos"], eos_token_id=special["eos"], pad_token_id=special["eos"])
    small = dict(hidden_size=hidden, num_layers=1, num_attention_heads=2, intermediate_size=64)
    detector = Sam3Config(
        vision_config=vision, text_config=text, geometry_encoder_config=small, detr_encoder_config=small,
        detr_decoder_config=small | {"num_queries": 8},
        mask_decoder_config=dict(hidden_size=hidden, num_upsampling_stages=2),
    )
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision,
        prompt_encoder_config=dict(hidden_size=hidden, image_size=size, patch_size=patch),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=hidden),
        image_size=size, num_maskmem=3, memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_encoder_hidden_size=hidden,
        mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=64,
        max_object_pointers_in_encoder=4,
    )
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * size // patch,
                             hotstart_delay=2, hotstart_unmatch_thresh=2, hotstart_dup_thresh=2)
    Sam3VideoModel(config).eval().save_pretrained(folder)
