"""The one stage shape every agent shares.

A stage is a class with a typed config (cheap to construct), `setup()` that loads its model once
per actor, and `process_batch(batch)` mapping the rows of one shard of clips to new rows and
rejection rows. It declares the tables it reads and writes and the resources it needs; the engine
checks those when the pipeline is built and decides where the stage runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas import RejectionRow, Row, rejection, row_model


class Resources(BaseModel):
    """What one actor of a stage needs, and how many actors run it."""

    model_config = ConfigDict(extra="forbid")
    num_cpus: float = Field(1.0, ge=0, description="CPUs per actor")
    num_gpus: float = Field(0.0, ge=0, description="GPU fraction per actor (0.5 packs two per GPU)")
    memory_gb: float | None = Field(None, gt=0, description="memory reserved per actor")
    actors: int = Field(1, ge=1, description="actor-pool size")
    max_in_flight: int = Field(2, ge=1, description="shards queued on one actor at a time")
    nice: int = Field(0, ge=0, le=19, description="niceness added to the actor's process (Ray starts workers at "
                      "15; 19 is the lowest priority): on cores shared with stages that wait on an API, a "
                      "CPU-bound stage yields to their short bursts")


class StageConfig(BaseModel):
    """Base of every stage's typed config: unknown keys are errors, so typos surface at once."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    resources: Resources = Field(default_factory=Resources)

    def fingerprint_fields(self) -> dict[str, Any]:
        """What decides the stage's output: everything but placement."""
        return self.model_dump(mode="json", exclude={"resources"})


@dataclass
class SourceItem:
    """One entry of a source, before ingest: a video (or a span of one) and what came with it."""

    source_key: str
    video_path: str
    source: str  # virtual | folder | manifest
    caption: str | None = None
    start: float | None = None
    end: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    signature: str = ""  # changes when the underlying file changes (size, mtime)


class UndeclaredTable(Exception):
    """A stage touched a table it did not declare in `reads` / `reads_for(config)`."""


@dataclass(frozen=True)
class SetupContext:
    """What a stage may need to know when it loads its model: where the dataset lives."""

    root: Path


@dataclass
class Batch:
    """The input of one stage call: one shard's source items and the rows upstream stages made.

    The runner builds it with `stage` and `declared` set: then only the declared tables can be
    read, and reading another raises UndeclaredTable naming the stage and the table."""

    root: Path
    items: list[SourceItem] = field(default_factory=list)
    tables: dict[str, list[Row]] = field(default_factory=dict)
    stage: str | None = None
    declared: frozenset[str] | None = None

    def rows(self, table: str) -> list[Any]:
        if self.declared is not None and table not in self.declared:
            raise UndeclaredTable(
                f"stage {self.stage} reads table {table!r} but declares only "
                f"{', '.join(sorted(self.declared)) or 'none'}; add it to the stage's reads (or reads_for)"
            )
        return self.tables.get(table, [])

    def part(self, items: list[SourceItem] | None = None, tables: dict[str, list[Row]] | None = None) -> Batch:
        """A batch of a subset of this one's items or rows, with the same declaration."""
        return Batch(self.root, items or [], tables or {}, self.stage, self.declared)

    @property
    def clips(self) -> list[Any]:
        return self.rows("clips")

    def by_clip(self, table: str) -> dict[str, list[Any]]:
        grouped: dict[str, list[Any]] = defaultdict(list)
        for row in self.rows(table):
            grouped[row.clip_id].append(row)
        return grouped

    def resolve(self, video_path: str) -> Path:
        path = Path(video_path)
        return path if path.is_absolute() else self.root / path

    def read_frames(self, clip: Any, indices: list[int] | None = None):
        """(T, H, W, 3) uint8 frames of a clip by clip-relative index (default: its sampling plan).
        The only way a stage gets frames: a clip may be a span of a longer video, or rotated."""
        from agents.video import read_clip_frames

        return read_clip_frames(self.resolve(clip.video_path), clip.fps, clip.num_frames, clip.frame_indices,
                                start=clip.start, indices=indices)

    def frame_times(self, clip: Any, indices: list[int]) -> list[float]:
        """Seconds from the clip's first frame to each frame `read_frames` gives for `indices`
        (frame time stamps in a variable-frame-rate video): a video input's time axis."""
        from agents.video import clip_frame_times

        return clip_frame_times(self.resolve(clip.video_path), clip.fps, clip.num_frames, indices, start=clip.start)


@dataclass
class StageOutput:
    """What a stage call returns: new rows per table and rejection rows."""

    rows: dict[str, list[Row | dict]] = field(default_factory=lambda: defaultdict(list))
    rejections: list[RejectionRow] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, table: str, row: Row | dict) -> None:
        self.rows[table].append(row)

    def reject(
        self, stage: str, item_id: str, reason: str, detail: str = "", clip_id: str | None = None
    ) -> None:
        self.rejections.append(rejection(stage, item_id, reason, detail, clip_id))
        self.counters[f"rejected_{reason}"] += 1


C = TypeVar("C", bound=StageConfig)


class Stage(Generic[C]):
    """Base class of every stage. Subclasses set `name`, `config_model`, `reads`, `writes`,
    `version`, and implement `process_batch`; model-backed stages also implement `setup`.

    `reads` is what the stage needs whatever its config; a stage whose inputs depend on its
    config overrides `reads_for(config)`; `optional_reads` are read when an earlier stage of the
    run writes them. The runner hands it exactly those tables (`inputs()`)."""

    name: ClassVar[str]
    config_model: ClassVar[type[StageConfig]] = StageConfig
    reads: ClassVar[tuple[str, ...]] = ()
    # Tables read when an earlier stage of the run writes them, and absent otherwise.
    optional_reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    # Bump when the stage's code changes its output, so refresh recomputes what it made.
    version: ClassVar[str] = "1"

    def __init__(self, config: C | dict | None = None):
        if isinstance(config, StageConfig):
            self.config: C = config  # type: ignore[assignment]
        else:
            self.config = self.config_model.model_validate(config or {})  # type: ignore[assignment]
        self._ready = False
        self._setup_lock = threading.Lock()

    @property
    def resources(self) -> Resources:
        return self.config.resources

    @classmethod
    def reads_for(cls, config: C) -> tuple[str, ...]:
        """The tables a stage with this config needs (default: the class's `reads`)."""
        return tuple(cls.reads)

    @property
    def is_source(self) -> bool:
        """The source role: the stage that turns source items into clips (ingest). It alone gets
        the shard's items; every other stage gets rows."""
        return "clips" in self.writes

    def inputs(self) -> tuple[str, ...]:
        """Every table the batch exposes: the needed ones, then those read only when present."""
        needed = tuple(self.reads_for(self.config))
        return needed + tuple(t for t in self.optional_reads if t not in needed)

    def setup(self, ctx: SetupContext | None = None) -> None:
        """Load models. The executor calls it once per actor, before the first batch."""

    def start(self, ctx: SetupContext | None = None) -> None:
        """Set up once (thread-safe); `setup()` written without a context is called without one."""
        if self._ready:
            return
        with self._setup_lock:  # an actor answering several shards at once sets up only once
            if not self._ready:
                if ctx is not None and _takes_context(self.setup):
                    self.setup(ctx)
                else:
                    self.setup()
                self._ready = True

    def ensure_setup(self) -> None:
        self.start()

    @property
    def concurrent_shards(self) -> bool:
        """Whether one actor may work on several shards at once (threads): true for stages that
        mostly wait on a remote service, whose calls release the GIL. Such a stage's
        `process_batch` must keep no per-call state on `self`."""
        return False

    def process_batch(self, batch: Batch) -> StageOutput:
        raise NotImplementedError

    def teardown(self) -> None:
        """Release models."""

    def __call__(self, batch: Batch) -> StageOutput:
        self.ensure_setup()
        return self.process_batch(batch)

    def fingerprint(self) -> str:
        """Identifies what this stage would produce: code version and output-relevant config."""
        payload = json.dumps(
            {"stage": self.name, "version": self.version, "config": self.config.fingerprint_fields()},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def check_tables(self) -> None:
        for table in (*self.inputs(), *self.writes):
            row_model(table)  # raises on an unknown table name


def _takes_context(setup) -> bool:
    try:
        return len(inspect.signature(setup).parameters) >= 1
    except (TypeError, ValueError):
        return False
