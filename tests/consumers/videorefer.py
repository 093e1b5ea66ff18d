"""VideoRefer's data loaders, ported from DAMO-NLP-SG/VideoRefer:

- `load_v1`: `videorefer/train.py` `LazySupervisedDataset.__getitem__` (the `annotation` branch)
  with `videorefer/mm_utils.py` `annToMask`; the model (`videorefer/model/videorefer_arch.py`)
  consumes one `<region>` token per `annotation` entry.
- `load_videollama3`: `videorefer_videollama3/train.py` `_convert_normal` (the video branch): `video`
  must be a one-item list joined to the data folder; every (object, frame) entry of `masks` is one
  mask and replaces the next `<region>` in the conversation, in order.
- `bench_q_single`: `videorefer/eval/inference_videorefer_q_bench.py` in `single` mode: every
  object's annotation is read at the record's `frame_idx`.
Frames are read with PyAV where upstream uses decord `VideoReader.get_batch` (same 0-based
decode order).
"""

from __future__ import annotations

import os

import numpy as np
from pycocotools import mask as mask_utils

from agents.video import read_frames


def ann_to_mask(mask_ann, h=None, w=None) -> np.ndarray:
    if isinstance(mask_ann, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(mask_ann, h, w))
    elif isinstance(mask_ann["counts"], list):
        rle = mask_utils.frPyObjects(mask_ann, h, w)
    else:
        rle = mask_ann
    return mask_utils.decode(rle)


def load_v1(record: dict, data_folder: str) -> dict:
    video_file = os.path.join(data_folder, record["video"])
    all_frames: set = set()
    for ann in record["annotation"]:
        all_frames.update(list(ann.keys()))
    all_frames = list(all_frames)
    ann_indices = [[all_frames.index(frame) for frame in ann.keys()] for ann in record["annotation"]]
    frame_idx = [int(f) for f in all_frames]
    frames = read_frames(video_file, frame_idx)  # upstream: process_video(..., frame_idx=all_frames)
    h, w = record.get("height"), record.get("width")
    masks = [ann_to_mask(anns[k]["segmentation"], h, w) for anns in record["annotation"] for k in anns.keys()]
    regions = sum(turn["value"].count("<region>") for turn in record["conversations"])
    return {"frames": dict(zip(frame_idx, frames, strict=True)), "masks": masks, "ann_indices": ann_indices,
            "frame_keys": [int(k) for anns in record["annotation"] for k in anns.keys()],
            "regions_match": regions == len(record["annotation"])}


def load_videollama3(record: dict, data_folder: str) -> dict:
    conversation = [dict(turn) for turn in record["conversations"]]
    h, w = record.get("height"), record.get("width")
    masks, frame_ids, mask_ids = [], [], []
    for ann in record["masks"]:
        for k in ann.keys():
            if int(k) not in frame_ids:
                frame_ids.append(int(k))
            mask_ids.append(frame_ids.index(int(k)))
            masks.append(ann_to_mask(ann[k], h, w))
    video_file = record["video"]
    if not (isinstance(video_file, list) and len(video_file) == 1):
        raise ValueError(f"Unsupported video format: {video_file}")
    additional_frames = read_frames(os.path.join(data_folder, video_file[0]), frame_ids)
    conv_i = 0
    for _ in range(len(masks)):
        while "<region>" not in conversation[conv_i]["value"]:
            conv_i += 1  # IndexError when masks outnumber the placeholders
        conversation[conv_i]["value"] = conversation[conv_i]["value"].replace("<region>", "[<REGION>]", 1)
    left = sum(turn["value"].count("<region>") for turn in conversation)
    return {"masks": masks, "frames": [additional_frames[i] for i in mask_ids], "frame_keys": frame_ids,
            "mask_frame_keys": [frame_ids[i] for i in mask_ids], "placeholders_left": left}


def bench_q_single(record: dict) -> list[dict]:
    frame_idx = str(record["frame_idx"])
    return [{frame_idx: ann[frame_idx]} for ann in record["annotation"]]  # KeyError: an object lacks the frame
