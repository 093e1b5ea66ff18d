"""The official-package backends (`make official`). Tests needing the packages are skipped where
they are absent; run them with a Python that has sam2 / groundingdino-py and torchvision.

The parity tests build the official architecture with random weights, convert the weights into the
transformers model, and run both backends on the same frames and prompts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from agents.backends import convert_sam2, official
from agents.backends.preprocess import restore_masks

HAS_SAM2 = importlib.util.find_spec("sam2") is not None
official.install_nms_shim()  # before anything imports torchvision (transformers' SAM 2 does, where it is installed)


def test_nms_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 50, (40, 2))
    boxes = torch.tensor(np.concatenate([corners, corners + rng.uniform(5, 30, (40, 2))], axis=1), dtype=torch.float32)
    scores = torch.tensor(rng.uniform(size=40), dtype=torch.float32)
    expected = []
    for i in scores.argsort(descending=True).tolist():
        if all(_iou(boxes[i], boxes[j]) <= 0.5 for j in expected):
            expected.append(i)
    assert official._nms(boxes, scores, 0.5).tolist() == expected


def _iou(a, b) -> float:
    w = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    h = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = w * h
    area = lambda x: float((x[2] - x[0]) * (x[3] - x[1]))  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.skipif(HAS_SAM2, reason="sam2 is installed here")
def test_missing_package_is_a_clear_error():
    with pytest.raises(official.OfficialPackageMissing, match="sam2.*make official"):
        official.OfficialVideoPropagator("random:sam2.1_hiera_t", device="cpu").setup()


def test_sam2_key_mapping_round_trips_and_names_the_official_modules():
    from transformers import Sam2VideoModel

    with torch.device("meta"):
        model = Sam2VideoModel(convert_sam2.sam2_video_config("sam2.1_hiera_tiny"))
    state = model.state_dict()
    as_official = convert_sam2.transformers_to_official(state)
    for key in ("image_encoder.trunk.blocks.11.mlp.layers.1.weight", "image_encoder.neck.convs.3.conv.bias",
                "sam_prompt_encoder.point_embeddings.3.weight", "sam_mask_decoder.output_upscaling.3.weight",
                "sam_mask_decoder.output_hypernetworks_mlps.2.layers.2.bias", "memory_attention.norm.weight",
                "memory_encoder.mask_downsampler.encoder.12.weight", "memory_encoder.fuser.layers.1.gamma",
                "obj_ptr_proj.layers.1.weight", "maskmem_tpos_enc"):
        assert key in as_official, key
    assert as_official["sam_prompt_encoder.point_embeddings.0.weight"].shape == (1, 256)
    back = convert_sam2.official_to_transformers(as_official)
    assert sorted(back) == sorted(state)
    assert all(back[k].shape == state[k].shape for k in state)


def _moving_shapes(count=3, height=96, width=128):
    """A disk moving right and a square moving down, with noise: frames and the keyframe masks."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:height, :width]
    frames = np.full((count, height, width, 3), 40, np.uint8)
    for t in range(count):
        frames[t][(yy - 40) ** 2 + (xx - 30 - 8 * t) ** 2 < 18**2] = (220, 60, 60)
        frames[t][(abs(yy - 20 - 6 * t) < 12) & (abs(xx - 95) < 12)] = (60, 200, 90)
    frames = np.clip(frames + rng.integers(0, 20, frames.shape), 0, 255).astype(np.uint8)
    key = count // 2
    masks = np.stack([(yy - 40) ** 2 + (xx - 30 - 8 * key) ** 2 < 18**2,
                      (abs(yy - 20 - 6 * key) < 12) & (abs(xx - 95) < 12)])
    return frames, key, masks


SAM2_TEST_SIZE = 256  # the same weights at a quarter of the input size: 16x fewer pixels on a CPU


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SAM2, reason="the official sam2 package is not installed (make official)")
def test_official_and_transformers_sam2_agree_on_converted_weights(tmp_path):
    import torch.nn.functional as F
    from sam2.build_sam import build_sam2_video_predictor
    from transformers import Sam2VideoModel

    from agents.backends.vision import TransformersVideoPropagator

    torch.manual_seed(0)
    predictor = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu",
        hydra_overrides_extra=[f"++model.image_size={SAM2_TEST_SIZE}"],
    )
    model = Sam2VideoModel(convert_sam2.sam2_video_config("sam2.1_hiera_tiny", SAM2_TEST_SIZE))
    model.load_state_dict(convert_sam2.official_to_transformers(predictor.state_dict()), strict=True)
    model.save_pretrained(tmp_path / "hf")

    frames, keyframe, masks = _moving_shapes()
    theirs = official.OfficialVideoPropagator("random:sam2.1_hiera_t", device="cpu")
    theirs.predictor, theirs.image_size = predictor, SAM2_TEST_SIZE  # setup() would build it at 1024
    ours = TransformersVideoPropagator(tmp_path / "hf", "converted", device="cpu")
    ours.setup()
    official_grid, presence = theirs.propagate(frames, keyframe, masks)
    grid, _ = ours.propagate(frames, keyframe, masks)
    assert presence.shape == (3, 2)
    on_keyframe = restore_masks(official_grid, frames.shape[1:3])[keyframe]
    assert ((on_keyframe & masks).sum(axis=(1, 2)) / (on_keyframe | masks).sum(axis=(1, 2)) > 0.9).all()

    # The official predictor upsamples its low-res logits straight to the frame; do the same here.
    low = torch.from_numpy(grid.logits)
    height, width = frames.shape[1:3]
    upsampled = F.interpolate(low.flatten(0, 1)[:, None], size=(height, width), mode="bilinear",
                              align_corners=False).reshape(*low.shape[:2], height, width).numpy()
    reference = official_grid.logits
    assert reference.shape == upsampled.shape == (3, 2, height, width)
    others = [t for t in range(3) if t != keyframe]
    assert reference[others].std() > 0.01  # propagated frames come from the network, not the prompt
    assert np.abs(reference - upsampled).max() < 1e-3
    ours_masks, their_masks = upsampled > 0, reference > 0
    iou = (ours_masks & their_masks).sum(axis=(2, 3)) / np.maximum((ours_masks | their_masks).sum(axis=(2, 3)), 1)
    assert (iou > 0.99).all()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SAM2, reason="the official sam2 package is not installed (make official)")
def test_transformers_weights_load_into_the_official_propagator(tmp_path):
    from transformers import Sam2VideoModel

    torch.manual_seed(1)
    model = Sam2VideoModel(convert_sam2.sam2_video_config("sam2.1_hiera_tiny"))
    state = convert_sam2.transformers_to_official(model.state_dict())
    torch.save({"model": state}, tmp_path / "sam2.1_hiera_tiny.pt")
    propagator = official.OfficialVideoPropagator(str(tmp_path / "sam2.1_hiera_tiny.pt"), device="cpu")
    propagator.setup()  # the official loader refuses missing or unexpected keys
    loaded = propagator.predictor.state_dict()
    assert sorted(loaded) == sorted(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


HAS_GROUNDINGDINO = importlib.util.find_spec("groundingdino") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GROUNDINGDINO, reason="groundingdino-py is not installed (make official)")
def test_official_and_transformers_grounding_dino_agree_on_converted_weights(tmp_path):
    """SwinT-OGC at full size except the text encoder: a 1-layer BERT (its weights convert as well)."""
    import os

    import groundingdino
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        SwinConfig,
    )

    from agents.backends import convert_grounding_dino
    from agents.backends.preprocess import IMAGENET_MEAN, IMAGENET_STD
    from agents.backends.tiny_vision import write_bert_vocab

    official._restore_bert_mask_helpers()
    torch.manual_seed(0)
    bert = BertConfig(vocab_size=1030, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=256)
    BertModel(bert).save_pretrained(tmp_path / "bert")
    tokenizer = BertTokenizer(vocab=str(write_bert_vocab(tmp_path / "bert")), do_lower_case=True)
    tokenizer.save_pretrained(tmp_path / "bert")
    args = SLConfig.fromfile(os.path.join(os.path.dirname(groundingdino.__file__), "config/GroundingDINO_SwinT_OGC.py"))
    args.text_encoder_type, args.device = str(tmp_path / "bert"), "cpu"
    theirs = build_model(args).eval()
    swin = SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                      out_indices=[2, 3, 4])
    ours = GroundingDinoForObjectDetection(GroundingDinoConfig(backbone_config=swin, text_config=bert)).eval()
    ours.load_state_dict(convert_grounding_dino.official_to_transformers(theirs.state_dict()), strict=True)

    image = torch.rand(3, 256, 320)  # enough positions for the 900 two-stage queries
    pixels = (image - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    caption = "red circle. small blue square."
    text = tokenizer([caption], return_tensors="pt")
    with torch.inference_mode():
        reference = theirs(pixels[None], captions=[caption])
        out = ours(pixel_values=pixels[None], input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                   token_type_ids=text["token_type_ids"], pixel_mask=torch.ones(1, 256, 320, dtype=torch.long))
    length = text["input_ids"].shape[1]
    assert torch.allclose(out.pred_boxes, reference["pred_boxes"], atol=1e-4)
    assert torch.allclose(out.logits[..., :length], reference["pred_logits"][..., :length], atol=1e-3)
