"""Throughput of the Segmentor's three models, eager and with the best settings found.

Builds the real-size architectures with random weights (Grounding DINO-T and -B, HQ-SAM ViT-L,
SAM 2.1 hiera-tiny and -large video) on a GPU, or the tiny builds on a CPU so the script stays
tested, and prints images/s, frames/s (1, 5 and 10 tracked objects) and achieved TFLOP/s.

    python bench/vision.py                 # real sizes on a GPU, tiny sizes on a CPU
    python bench/vision.py --tiny --frames 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def real_models() -> dict:
    """Real-size configs (random weights): the published architectures' shapes."""
    from transformers import (
        GroundingDinoConfig,
        Sam2HieraDetConfig,
        Sam2VideoConfig,
        Sam2VisionConfig,
        SamHQConfig,
        SamHQMaskDecoderConfig,
        SamHQVisionConfig,
        SwinConfig,
    )

    swin_b = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
                        out_features=["stage2", "stage3", "stage4"])
    hiera_l = Sam2HieraDetConfig(
        hidden_size=144, embed_dim_per_stage=[144, 288, 576, 1152], num_attention_heads_per_stage=[2, 4, 8, 16],
        blocks_per_stage=[2, 6, 36, 4], global_attention_blocks=[23, 33, 43],
        window_positional_embedding_background_size=[7, 7], window_size_per_stage=[8, 4, 16, 8],
    )
    return {
        "grounding-dino-T": GroundingDinoConfig(),
        "grounding-dino-B": GroundingDinoConfig(backbone_config=swin_b),
        "sam-hq-vit-l": SamHQConfig(
            vision_config=SamHQVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                            global_attn_indexes=[5, 11, 17, 23]),
            mask_decoder_config=SamHQMaskDecoderConfig(vit_dim=1024),
        ),
        "sam2.1-hiera-tiny": Sam2VideoConfig(),
        "sam2.1-hiera-large": Sam2VideoConfig(
            vision_config=Sam2VisionConfig(backbone_config=hiera_l, backbone_channel_list=[1152, 576, 288, 144])
        ),
    }


def build(kind: str, config_or_path, device: str, dtype):
    from transformers import GroundingDinoForObjectDetection, Sam2VideoModel, SamHQModel

    cls = {"grounding": GroundingDinoForObjectDetection, "sam-hq": SamHQModel, "sam2": Sam2VideoModel}[kind]
    if isinstance(config_or_path, Path):
        model = cls.from_pretrained(config_or_path)
    else:
        config_or_path._attn_implementation = "sdpa" if getattr(cls, "_supports_sdpa", False) else "eager"
        model = cls(config_or_path)
    return model.to(device=device, dtype=dtype).eval()


def timed(fn, repeats: int, device: str) -> tuple[float, float]:
    """(seconds per call, FLOPs per call) after one warm-up call."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            fn()
        flops = counter.get_total_flops()
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
    return (time.perf_counter() - start) / repeats, flops


def bench_detector(model, image_size, batch, device, dtype, repeats):
    import torch

    height, width = image_size
    pixels = torch.randn(batch, 3, height, width, device=device, dtype=dtype)
    ids = torch.tensor([[101, 2417, 2303, 1012, 2630, 4098, 1012, 102]] * batch, device=device)
    ids = ids.clamp(max=model.config.text_config.vocab_size - 1)
    seconds, flops = timed(lambda: model(pixel_values=pixels, input_ids=ids), repeats, device)
    return {"images_per_s": batch / seconds, "tflops": flops / seconds / 1e12, "batch": batch}


def bench_segmenter(model, device, dtype, repeats, boxes=10):
    import torch

    size = model.config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size, device=device, dtype=dtype)
    input_boxes = torch.tensor([[[10.0, 10.0, size / 2, size / 2]] * boxes], device=device, dtype=dtype)
    seconds, flops = timed(lambda: model(pixel_values=pixels, input_boxes=input_boxes, multimask_output=False),
                           repeats, device)
    return {"images_per_s": 1 / seconds, "tflops": flops / seconds / 1e12, "boxes": boxes}


def bench_propagator(model, frames: int, objects: int, device, dtype):
    import torch
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    from agents.backends.preprocess import resize_masks_to_grid

    size = int(model.config.image_size)
    video = torch.randn(frames, 3, size, size, device=device, dtype=dtype)

    def run():
        session = Sam2VideoInferenceSession(video=video, video_height=size, video_width=size,
                                            inference_device=device, inference_state_device=device,
                                            video_storage_device=device, dtype=dtype)
        masks = np.zeros((objects, size, size), bool)
        for i in range(objects):
            masks[i, 10 * i : 10 * i + size // 4, 10 * i : 10 * i + size // 4] = True
        prompts = resize_masks_to_grid(masks, size, device)
        for i in range(objects):
            session.add_mask_inputs(session.obj_id_to_idx(i), 0, prompts[i : i + 1])
        session.obj_with_new_inputs = list(range(objects))
        for _ in model.propagate_in_video_iterator(session, start_frame_idx=0):
            pass

    seconds, flops = timed(run, 1, device)
    return {"frames_per_s": frames / seconds, "tflops": flops / seconds / 1e12, "objects": objects}


def main(argv=None) -> dict:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny builds (the default without a GPU)")
    parser.add_argument("--frames", type=int, default=16, help="frames per propagation run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the image encoders")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="tiny builds, 2 frames, one repeat: seconds, for the test suite")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tiny, args.frames, args.repeats = True, 2, 1

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tiny = args.tiny or device == "cpu"
    settings = {"eager": torch.float32}
    if device == "cuda":
        settings["bf16+sdpa"] = torch.bfloat16
    if tiny:
        from agents.backends.models import resolve_model

        models = {"grounding-dino-tiny": resolve_model("tiny:grounding-dino"), "sam-hq-tiny": resolve_model("tiny:sam-hq"),
                  "sam2-video-tiny": resolve_model("tiny:sam2-video")}
        detector_size = (128, 160)
    else:
        models = real_models()
        detector_size = (800, 1333)
    results = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "tiny": tiny, "rows": []}
    for name, spec in models.items():
        kind = "grounding" if "grounding" in name else "sam-hq" if "sam-hq" in name else "sam2"
        for setting, dtype in settings.items():
            model = build(kind, spec, device, dtype)
            if kind == "grounding":
                for batch in (1, 8):
                    row = bench_detector(model, detector_size, batch, device, dtype, args.repeats)
                    results["rows"].append({"model": name, "setting": setting, **row})
            elif kind == "sam-hq":
                results["rows"].append({"model": name, "setting": setting,
                                        **bench_segmenter(model, device, dtype, args.repeats)})
                if args.compile:
                    model.vision_encoder = torch.compile(model.vision_encoder)
                    results["rows"].append({"model": name, "setting": setting + "+compile",
                                            **bench_segmenter(model, device, dtype, args.repeats)})
            else:
                for objects in (1, 5, 10):
                    results["rows"].append({"model": name, "setting": setting,
                                            **bench_propagator(model, args.frames, objects, device, dtype)})
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
    for row in results["rows"]:
        rate = row.get("images_per_s") or row.get("frames_per_s")
        unit = "img/s" if "images_per_s" in row else "frames/s"
        extra = {k: row[k] for k in ("batch", "boxes", "objects") if k in row}
        print(f"{row['model']:22} {row['setting']:18} {rate:9.2f} {unit:8} {row['tflops']:8.3f} TFLOP/s  {extra}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
