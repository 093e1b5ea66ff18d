"""One pydantic row model per table; its Arrow schema is derived from it (`arrow_schema`).

Every generated row carries `Lineage`: which agent, model, model revision and prompt version
produced it, and the tokens it cost where a language model was involved. The lineage fields are
declared once, on `Lineage`; row models inherit them and Arrow stores them last.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.enums import CaptionKind, McqCategory, Verdict
from schemas.masks import Rle, mask_areas

SCHEMA_VERSION = "1"

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_LETTERS = "ABCD"

class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=True)
    TABLE: ClassVar[str]
    ARROW: ClassVar[pa.Schema]
    KEY: ClassVar[str]  # the column that identifies a row

    def to_record(self) -> dict:
        return self.model_dump(mode="json")


class Lineage(BaseModel):
    """Who made a row: agent, model, model revision, prompt version, and the tokens it cost."""

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1)
    model: str = Field(min_length=1)
    model_revision: str = "main"
    prompt_version: str = "none"
    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)


class _WithLineage(Row, Lineage):
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
    areas: list[int] | None = Field(
        None, description="pixels in each mask, aligned with masks; filled from the masks when a row is validated "
                          "(null only in files written before the column: readers fall back to the masks)")

    @model_validator(mode="after")
    def _aligned(self):
        n = len(self.frame_indices)
        if len(self.masks) != n or len(self.boxes) != n:
            raise ValueError(f"{n} frame indices but {len(self.masks)} masks and {len(self.boxes)} boxes")
        if any(len(b) != 4 for b in self.boxes):
            raise ValueError("every box must be [x0, y0, x1, y1]")
        if len(set(self.frame_indices)) != n:
            raise ValueError("frame_indices repeat")
        if self.areas is None:
            self.areas = mask_areas(self.masks)
        elif len(self.areas) != n:
            raise ValueError(f"{n} masks but {len(self.areas)} areas")
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


def arrow_schema(model: type[Row]) -> pa.Schema:
    """The Arrow schema of a row model: its own fields in order, then the lineage fields; a field
    is nullable when its type admits None; numbers inside lists are 32-bit (frame indices, boxes)."""
    lineage = [n for n in Lineage.model_fields if n in model.model_fields]
    names = [n for n in model.model_fields if n not in lineage] + lineage
    fields = [pa.field(n, _arrow_type(model.model_fields[n].annotation),
                       nullable=type(None) in typing.get_args(model.model_fields[n].annotation)) for n in names]
    return pa.schema(fields, metadata={"schema_version": SCHEMA_VERSION, "table": model.TABLE})


def _arrow_type(tp: Any, in_list: bool = False) -> pa.DataType:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _arrow_type(next(a for a in typing.get_args(tp) if a is not type(None)), in_list)
    if origin is list:
        return pa.list_(_arrow_type(typing.get_args(tp)[0], in_list=True))
    if issubclass(tp, BaseModel):
        return pa.struct([pa.field(n, _arrow_type(f.annotation)) for n, f in tp.model_fields.items()])
    for python, wide, narrow in ((bool, pa.bool_(), pa.bool_()), (str, pa.string(), pa.string()),
                                 (int, pa.int64(), pa.int32()), (float, pa.float64(), pa.float32())):
        if issubclass(tp, python):
            return narrow if in_list else wide
    raise TypeError(f"no Arrow type for {tp!r}")


for _model in (ClipRow, PhraseRow, ObjectRow, CaptionRow, ReviewRow, McqRow, SftRow, PreferenceRow, McqCheckRow,
               RejectionRow):
    _model.ARROW = arrow_schema(_model)
