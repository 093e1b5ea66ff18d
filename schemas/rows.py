"""One pydantic row model per table, each with its explicit Arrow schema.

Every generated row carries `Lineage`: which agent, model, model revision and prompt version
produced it, and the tokens it cost where a language model was involved.
"""

from __future__ import annotations

import re
from typing import ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.enums import CaptionKind, McqCategory, Verdict
from schemas.masks import Rle

SCHEMA_VERSION = "1"

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_LETTERS = "ABCD"

LINEAGE_FIELDS = [
    pa.field("agent", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("model_revision", pa.string(), nullable=False),
    pa.field("prompt_version", pa.string(), nullable=False),
    pa.field("prompt_tokens", pa.int64()),
    pa.field("completion_tokens", pa.int64()),
]


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)
    TABLE: ClassVar[str]
    ARROW: ClassVar[pa.Schema]
    KEY: ClassVar[str]  # the column that identifies a row

    def to_record(self) -> dict:
        return self.model_dump(mode="json")


class Lineage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1)
    model: str = Field(min_length=1)
    model_revision: str = "main"
    prompt_version: str = "none"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _WithLineage(Row):
    agent: str = Field(min_length=1)
    model: str = Field(min_length=1)
    model_revision: str = "main"
    prompt_version: str = "none"
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)

    @classmethod
    def build(cls, lineage: Lineage, **fields):
        return cls(**fields, **lineage.model_dump())


class ClipRow(_WithLineage):
    TABLE: ClassVar[str] = "clips"
    KEY: ClassVar[str] = "clip_id"
    clip_id: str = Field(min_length=8)
    source_key: str = Field(min_length=1, description="where the clip came from in the source")
    video_path: str = Field(min_length=1, description="relative to the dataset root, or absolute")
    num_frames: int = Field(ge=2)
    fps: float = Field(gt=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    duration: float = Field(gt=0)
    start: float | None = Field(default=None, ge=0, description="seconds into video_path")
    end: float | None = Field(default=None, ge=0)
    source: str = Field(description="virtual | folder | manifest")
    caption: str | None = None
    frame_indices: list[int] = Field(description="frames the agents look at (sampling plan)")
    metadata: str | None = Field(default=None, description="JSON: manifest extras, virtual scene spec")
    motion_score: float | None = Field(default=None, ge=0, description="curation: mean frame difference (0-255)")
    camera_motion: str | None = Field(default=None, description="curation: static | pan_* | tilt_* | zoom_*")

    @model_validator(mode="after")
    def _plan_inside_clip(self):
        if not self.frame_indices:
            raise ValueError("frame_indices (sampling plan) is empty")
        if min(self.frame_indices) < 0 or max(self.frame_indices) >= self.num_frames:
            raise ValueError("frame_indices fall outside the clip")
        return self


class PhraseRow(_WithLineage):
    TABLE: ClassVar[str] = "phrases"
    KEY: ClassVar[str] = "phrase_id"
    phrase_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    text: str = Field(min_length=1, description="a noun or referring phrase to ground")
    kind: str = Field(pattern=r"^(noun|referring)$")


class ObjectRow(_WithLineage):
    TABLE: ClassVar[str] = "objects"
    KEY: ClassVar[str] = "object_id"
    object_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    label: str = Field(min_length=1)
    frame_indices: list[int] = Field(min_length=1)
    masks: list[Rle] = Field(min_length=1)
    boxes: list[list[float]] = Field(min_length=1)
    score: float
    source: str = Field(description="virtual for ground truth, else the producing agent")

    @model_validator(mode="after")
    def _aligned(self):
        n = len(self.frame_indices)
        if len(self.masks) != n or len(self.boxes) != n:
            raise ValueError(f"{n} frame indices but {len(self.masks)} masks and {len(self.boxes)} boxes")
        if any(len(b) != 4 for b in self.boxes):
            raise ValueError("every box must be [x0, y0, x1, y1]")
        if len(set(self.frame_indices)) != n:
            raise ValueError("frame_indices repeat")
        return self


class CaptionRow(_WithLineage):
    TABLE: ClassVar[str] = "captions"
    KEY: ClassVar[str] = "caption_id"
    caption_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    object_id: str | None = None
    kind: CaptionKind
    text: str = Field(min_length=1)
    source: str = Field(description="virtual | manifest | the producing agent")


class ReviewRow(_WithLineage):
    TABLE: ClassVar[str] = "reviews"
    KEY: ClassVar[str] = "review_id"
    review_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    object_id: str = Field(min_length=8)
    caption_id: str | None = None
    verdict: Verdict
    score: float = Field(ge=0, le=1)
    reason: str


class McqRow(_WithLineage):
    TABLE: ClassVar[str] = "mcqs"
    KEY: ClassVar[str] = "question_id"
    question_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    object_ids: list[str] = Field(default_factory=list)
    category: McqCategory
    question: str = Field(min_length=1, description="without the options")
    options: list[str] = Field(min_length=3, max_length=4)
    answer: str = Field(pattern=r"^[A-D]$")
    source: str = Field(pattern=r"^(template|llm)$")
    caption_id: str | None = Field(default=None, description="the caption the question came from")
    evidence: str | None = Field(default=None, description="span of the caption that grounds the answer")
    generated_answer: str | None = Field(
        default=None, pattern=r"^[A-D]$",
        description="the answer letter as the model wrote it, before the seeded option shuffle (llm questions)")

    @model_validator(mode="after")
    def _answer_among_options(self):
        if _LETTERS.index(self.answer) >= len(self.options):
            raise ValueError(f"answer {self.answer} but only {len(self.options)} options")
        normalised = [o.strip().lower() for o in self.options]
        if len(set(normalised)) != len(normalised):
            raise ValueError("options repeat")
        if any(not o for o in normalised):
            raise ValueError("an option is empty")
        return self


class SftRow(_WithLineage):
    TABLE: ClassVar[str] = "sft"
    KEY: ClassVar[str] = "sft_id"
    sft_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    question_id: str | None = None
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)


class PreferenceRow(_WithLineage):
    TABLE: ClassVar[str] = "preferences"
    KEY: ClassVar[str] = "pair_id"
    pair_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    question_id: str | None = None
    question: str = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    error_type: str = Field(description="how rejected is wrong: wrong_direction, wrong_order, ...")


class McqCheckRow(_WithLineage):
    """One quality check of one question, with its outcome: checks are recorded, never applied
    silently. Consumers (exports, audit) drop questions with any `drop` outcome and carry `flag`s."""

    TABLE: ClassVar[str] = "mcq_checks"
    KEY: ClassVar[str] = "check_id"
    check_id: str = Field(min_length=8)
    question_id: str = Field(min_length=8)
    clip_id: str = Field(min_length=8)
    check: str = Field(
        pattern=r"^(options_unique|length_giveaway|duplicate|blind|consistency|letter_shuffle)$"
    )
    outcome: str = Field(pattern=r"^(pass|flag|drop)$")
    detail: str = ""
    order: list[int] | None = Field(
        default=None, description="letter_shuffle: new option order as indices into the original options"
    )


class RejectionRow(Row):
    TABLE: ClassVar[str] = "rejections"
    KEY: ClassVar[str] = "rejection_id"
    rejection_id: str = Field(min_length=8)
    item_id: str = Field(min_length=1, description="clip_id, object_id, source key or row id")
    clip_id: str | None = None
    stage: str = Field(min_length=1)
    reason: str
    detail: str = ""
    retryable: bool = False

    @field_validator("reason")
    @classmethod
    def _snake(cls, reason: str) -> str:
        if not _SNAKE.match(reason):
            raise ValueError(f"reason must be a short snake_case code, got {reason!r}")
        return reason


_RLE = pa.struct([pa.field("size", pa.list_(pa.int32())), pa.field("counts", pa.string())])
_ID = pa.string()


def _schema(table: str, fields: list[pa.Field], lineage: bool = True) -> pa.Schema:
    all_fields = fields + (LINEAGE_FIELDS if lineage else [])
    return pa.schema(all_fields, metadata={"schema_version": SCHEMA_VERSION, "table": table})


ClipRow.ARROW = _schema("clips", [
    pa.field("clip_id", _ID, nullable=False),
    pa.field("source_key", pa.string(), nullable=False),
    pa.field("video_path", pa.string(), nullable=False),
    pa.field("num_frames", pa.int64(), nullable=False),
    pa.field("fps", pa.float64(), nullable=False),
    pa.field("width", pa.int64(), nullable=False),
    pa.field("height", pa.int64(), nullable=False),
    pa.field("duration", pa.float64(), nullable=False),
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
    pa.field("source", pa.string(), nullable=False),
    pa.field("caption", pa.string()),
    pa.field("frame_indices", pa.list_(pa.int32()), nullable=False),
    pa.field("metadata", pa.string()),
    pa.field("motion_score", pa.float64()),
    pa.field("camera_motion", pa.string()),
])
PhraseRow.ARROW = _schema("phrases", [
    pa.field("phrase_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
])
ObjectRow.ARROW = _schema("objects", [
    pa.field("object_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("frame_indices", pa.list_(pa.int32()), nullable=False),
    pa.field("masks", pa.list_(_RLE), nullable=False),
    pa.field("boxes", pa.list_(pa.list_(pa.float32())), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
])
CaptionRow.ARROW = _schema("captions", [
    pa.field("caption_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("object_id", _ID),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
])
ReviewRow.ARROW = _schema("reviews", [
    pa.field("review_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("object_id", _ID, nullable=False),
    pa.field("caption_id", _ID),
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
])
McqRow.ARROW = _schema("mcqs", [
    pa.field("question_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("object_ids", pa.list_(pa.string()), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("question", pa.string(), nullable=False),
    pa.field("options", pa.list_(pa.string()), nullable=False),
    pa.field("answer", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("caption_id", _ID),
    pa.field("evidence", pa.string()),
    pa.field("generated_answer", pa.string()),
])
SftRow.ARROW = _schema("sft", [
    pa.field("sft_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("question_id", _ID),
    pa.field("question", pa.string(), nullable=False),
    pa.field("answer", pa.string(), nullable=False),
])
PreferenceRow.ARROW = _schema("preferences", [
    pa.field("pair_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("question_id", _ID),
    pa.field("question", pa.string(), nullable=False),
    pa.field("chosen", pa.string(), nullable=False),
    pa.field("rejected", pa.string(), nullable=False),
    pa.field("error_type", pa.string(), nullable=False),
])
McqCheckRow.ARROW = _schema("mcq_checks", [
    pa.field("check_id", _ID, nullable=False),
    pa.field("question_id", _ID, nullable=False),
    pa.field("clip_id", _ID, nullable=False),
    pa.field("check", pa.string(), nullable=False),
    pa.field("outcome", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
    pa.field("order", pa.list_(pa.int32())),
])
RejectionRow.ARROW = _schema("rejections", [
    pa.field("rejection_id", _ID, nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("clip_id", _ID),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
    pa.field("retryable", pa.bool_(), nullable=False),
], lineage=False)
