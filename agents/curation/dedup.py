"""Near-duplicate removal: perceptual hashes of frames at fixed relative positions in each clip.

Two clips are near duplicates when the mean Hamming distance between their aligned frame hashes
(64-bit pHash of the frames at 10%, 30%, ... of the clip) is at most `max_distance` bits. Of a
group of near duplicates the best-quality copy stays (larger short side, then more pixels, then
longer, then higher frame rate; ties by clip_id so the choice is deterministic) and each other
copy becomes a `near_duplicate` rejection naming the clip it duplicated.

Where it runs: the ingest stage computes the hashes and calls `find_near_duplicates` over the
candidates of its batch (which catches repeats inside a video and across the videos of a shard),
and stores the hashes in the clip's metadata (`curation.phash`). Duplicates that land in different shards
need one pass over every clip of the source: the same function over records read back from the
`clips` table (`records_from_metadata`), run before the downstream stages. The comparison is
all-pairs in numpy (fine to tens of thousands of clips); past that, bucket the hashes first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

HASH_BITS = 64


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    hash_frames: int = Field(5, ge=1, description="frames hashed per clip")
    max_distance: float = Field(8.0, ge=0, le=HASH_BITS, description="mean Hamming bits that still count as a copy")


@dataclass(frozen=True)
class DedupRecord:
    clip_id: str
    hashes: tuple[str, ...]  # hex pHash per aligned frame
    quality: tuple[float, ...]  # larger is better, compared in order


@dataclass(frozen=True)
class Duplicate:
    clip_id: str
    kept_id: str
    distance: float


def hash_positions(start_frame: int, end_frame: int, count: int) -> list[int]:
    """Frames at the centres of `count` equal parts of the clip."""
    length = end_frame - start_frame
    return [start_frame + min(length - 1, int((i + 0.5) * length / count)) for i in range(count)]


def frame_hash(rgb_or_grey: np.ndarray) -> str:
    import imagehash
    from PIL import Image

    return str(imagehash.phash(Image.fromarray(rgb_or_grey)))


def quality_key(width: int, height: int, duration: float, fps: float) -> tuple[float, ...]:
    return (float(min(width, height)), float(width * height), round(duration, 3), round(fps, 3))


def find_near_duplicates(records: list[DedupRecord], max_distance: float) -> list[Duplicate]:
    """The records to drop, each with the better copy it duplicates."""
    if not records:
        return []
    order = sorted(records, key=lambda r: (tuple(-q for q in r.quality), r.clip_id))
    width = max(len(r.hashes) for r in order)
    hashes = np.array([_as_words(r.hashes, width) for r in order], dtype=np.uint64)
    valid = np.array([[i < len(r.hashes) for i in range(width)] for r in order])
    kept: list[int] = []
    duplicates: list[Duplicate] = []
    for index, record in enumerate(order):
        if kept:
            distances = _mean_distance(hashes[index], valid[index], hashes[kept], valid[kept])
            best = int(np.argmin(distances))
            if distances[best] <= max_distance:
                duplicates.append(Duplicate(record.clip_id, order[kept[best]].clip_id, round(float(distances[best]), 2)))
                continue
        kept.append(index)
    return duplicates


def _as_words(hex_hashes: tuple[str, ...], width: int) -> list[int]:
    return [int(h, 16) for h in hex_hashes] + [0] * (width - len(hex_hashes))


def _mean_distance(one: np.ndarray, one_valid: np.ndarray, many: np.ndarray, many_valid: np.ndarray) -> np.ndarray:
    both = many_valid & one_valid[None, :]
    bits = np.bitwise_count(np.bitwise_xor(many, one[None, :])).astype(np.float64)
    counted = both.sum(axis=1)
    # Clips with no frame position in common cannot be compared: never call them copies.
    return np.where(counted > 0, (bits * both).sum(axis=1) / np.maximum(counted, 1), np.inf)


def records_from_metadata(rows) -> list[DedupRecord]:
    """Dedup records from clip rows whose metadata JSON holds `phash` (as ingest writes it)."""
    import json

    records = []
    for row in rows:
        hashes = (json.loads(row.metadata) if row.metadata else {}).get("curation", {}).get("phash")
        if hashes:
            quality = quality_key(row.width, row.height, row.duration, row.fps)
            records.append(DedupRecord(row.clip_id, tuple(hashes), quality))
    return records
