"""Qwen-VL prompts with images and video, as the model's own processor would build them.

Images go through the PIL image processor. Videos (a message part `{"type": "video", "video":
[PIL frames], "timestamps": [seconds]}`) are patchified here the way Qwen's video processor does it
(that processor needs torchvision, absent on CPU machines): frames resized to one grid, normalised,
grouped by `temporal_patch_size`, flattened to `pixel_values_videos` with `video_grid_thw`. The time
axis is kept: Qwen2.5-VL spaces its temporal position ids by the seconds between frame groups
(`second_per_grid_ts`), Qwen3-VL writes a `<t seconds>` text stamp before every frame group.

The prompt's 3D M-RoPE position ids come from the model's own `get_rope_index` with the
`mm_token_type_ids` its processor would return (0 text, 1 image, 2 video), so a continuously batched
prompt sees exactly the positions `generate` would give it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


class QwenVisionInputs:
    def __init__(self, model, tokenizer, path: Path):
        import transformers as tf

        self.model = model
        self.tokenizer = tokenizer
        self.images = tf.Qwen2VLImageProcessorPil.from_pretrained(path)
        self.timestamped = model.config.model_type.startswith("qwen3_vl")
        self.ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_PAD, VIDEO_PAD)}

    def prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], dict[str, Any], Any]:
        """Token ids, vision tensors and the [3, L] position ids of one chat prompt."""
        import torch

        parts = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        extra: dict[str, Any] = {}
        images = [p["image"].convert("RGB") for p in parts if p.get("type") == "image"]
        if images:
            pixels = self.images(images=images, return_tensors="pt")
            extra |= {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}
            text = _expand(text, IMAGE_PAD, [IMAGE_PAD * n for n in self._tokens(pixels["image_grid_thw"])])
        videos = [self.video(p["video"], p.get("timestamps")) for p in parts if p.get("type") == "video"]
        seconds = None
        if videos:
            extra |= {"pixel_values_videos": torch.cat([v[0] for v in videos]),
                      "video_grid_thw": torch.stack([v[1] for v in videos])}
            seconds = torch.tensor([v[2] for v in videos])
            text = self._expand_videos(text, videos)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids, extra, self.positions(ids, extra, seconds)

    def positions(self, ids: list[int], extra: dict[str, Any], seconds=None):
        import torch

        input_ids = torch.tensor([ids])
        types = torch.zeros_like(input_ids, dtype=torch.int32)
        types[input_ids == self.ids[IMAGE_PAD]] = 1
        types[input_ids == self.ids[VIDEO_PAD]] = 2
        kwargs = {"image_grid_thw": extra.get("image_grid_thw"), "video_grid_thw": extra.get("video_grid_thw")}
        if not self.timestamped:
            kwargs["second_per_grid_ts"] = seconds
        position_ids, _ = self.model.model.get_rope_index(input_ids, types, **kwargs)
        return position_ids[:, 0, :]

    def video(self, frames: list, timestamps: list[float] | None):
        """(pixel_values_videos, grid [t, h, w], seconds per temporal group, group mid-times)."""
        import numpy as np
        import torch

        proc = self.images
        step = proc.temporal_patch_size
        first = proc(images=[frames[0].convert("RGB")], return_tensors="pt")["image_grid_thw"][0]
        height, width = int(first[1]) * proc.patch_size, int(first[2]) * proc.patch_size
        mean, std = np.array(proc.image_mean, np.float32), np.array(proc.image_std, np.float32)
        arrays = [(np.asarray(f.convert("RGB").resize((width, height), 3), np.float32) / 255.0 - mean) / std
                  for f in frames]
        clip = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # T, C, H, W
        times = list(timestamps) if timestamps is not None else [i / 2.0 for i in range(len(frames))]
        if pad := -len(frames) % step:
            clip = torch.cat([clip, clip[-1:].expand(pad, -1, -1, -1)])
            times += [times[-1]] * pad
        grid = torch.tensor([clip.shape[0] // step, height // proc.patch_size, width // proc.patch_size])
        patches = _patchify(clip, proc.patch_size, proc.merge_size, step)
        mids = [(times[i] + times[i + step - 1]) / 2 for i in range(0, len(times), step)]
        span = (mids[-1] - mids[0]) / (len(mids) - 1) if len(mids) > 1 else step / 2.0
        return patches, grid, float(span), mids

    def _tokens(self, grids) -> list[int]:
        return (grids.prod(dim=1) // self.images.merge_size**2).tolist()

    def _expand_videos(self, text: str, videos: list) -> str:
        merge = self.images.merge_size**2
        pieces = []
        for _, grid, _, mids in videos:
            per_frame = int(grid[1] * grid[2]) // merge
            if self.timestamped:  # Qwen3-VL: a text time stamp before each frame group
                pieces.append("".join(f"<{t:.1f} seconds>{VISION_START}{VIDEO_PAD * per_frame}{VISION_END}"
                                      for t in mids))
            else:
                pieces.append(VISION_START + VIDEO_PAD * (per_frame * int(grid[0])) + VISION_END)
        return _expand(text, VISION_START + VIDEO_PAD + VISION_END, pieces)


def _expand(text: str, marker: str, replacements: list[str]) -> str:
    pieces = text.split(marker)
    if len(pieces) - 1 != len(replacements):
        raise ValueError(f"the chat template wrote {len(pieces) - 1} {marker} markers for {len(replacements)} inputs")
    out = pieces[0]
    for replacement, piece in zip(replacements, pieces[1:], strict=True):
        out += replacement + piece
    return out


def _patchify(clip, patch: int, merge: int, step: int):
    """Qwen's video patch layout: [groups * h * w, C * step * patch * patch]."""
    frames, channels, height, width = clip.shape
    grid_t, grid_h, grid_w = frames // step, height // patch, width // patch
    patches = clip.reshape(grid_t, step, channels, grid_h // merge, merge, patch, grid_w // merge, merge, patch)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return patches.reshape(grid_t * grid_h * grid_w, channels * step * patch * patch)
