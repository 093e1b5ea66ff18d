"""The engine's own mechanics (planning, incremental refresh, retries, isolation) on the local
executor, with ingest and a small caption stage whose calls are counted."""

import subprocess
import sys
import time

import pytest

from agents.base import Batch, Stage, StageConfig, StageOutput
from agents.ingest import Ingest
from engine.driver import BuildOptions, execute, plan_build
from engine.errors import UserError
from engine.executors import LocalExecutor
from engine.pipeline import Pipeline
from engine.progress import Progress
from engine.store import DatasetStore
from schemas import CaptionRow, Lineage, stable_id
from tests.helpers_media import write_good_clip

CALLS: list[str] = []
FAILING: set[str] = set()  # source keys whose clips raise: a transient fault outside the config


class EchoConfig(StageConfig):
    prefix: str = "clip"


class EchoCaptioner(Stage[EchoConfig]):
    """Writes one caption per clip; raises for clips listed in FAILING."""

    name = "echo"
    config_model = EchoConfig
    reads = ("clips",)
    writes = ("captions",)

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        for clip in batch.clips:
            CALLS.append(clip.clip_id)
            if clip.source_key in FAILING:
                raise RuntimeError(f"cannot caption {clip.source_key}")
            lineage = Lineage(agent=self.name, model="echo", prompt_version=self.config.prefix)
            out.add("captions", CaptionRow.build(
                lineage, caption_id=stable_id("cap", clip.clip_id, self.config.prefix), clip_id=clip.clip_id,
                kind="clip", text=f"{self.config.prefix} {clip.source_key}", source=self.name))
        return out


def _run(root, source, echo=None, shard_size=2, **opts):
    stages = [Ingest(), EchoCaptioner(echo or {})]
    pipeline = Pipeline(stages)
    store = DatasetStore(root, recover=True)
    options = BuildOptions(shard_size=shard_size, **opts)
    plan = plan_build(pipeline, store, str(source), options)
    CALLS.clear()
    progress = Progress(pipeline.names, live=False, interval=1e9)
    result = execute(pipeline, store, plan, lambda: LocalExecutor(stages, store.root), options, progress)
    return plan, result, store


def _videos(folder, n, start=0):
    folder.mkdir(exist_ok=True)
    for i in range(start, start + n):
        write_good_clip(folder / f"v{i:02d}.mp4", n=8, seed=i)


def _rows(store, sql):
    return store.duckdb().execute(sql).fetchall()


def test_pipeline_checks_tables_before_any_work():
    class NeedsObjects(EchoCaptioner):
        name = "needs"
        reads = ("objects",)

    with pytest.raises(UserError, match="reads objects, which no earlier stage writes"):
        Pipeline([Ingest(), NeedsObjects()])


def test_rerun_does_nothing_and_adding_clips_runs_only_them(tmp_path):
    _videos(tmp_path / "src", 5)
    plan, result, store = _run(tmp_path / "ds", tmp_path / "src")
    assert len(plan.shards) == 3 and len(CALLS) == 5
    assert _rows(store, "SELECT count(*), count(DISTINCT caption_id) FROM captions") == [(5, 5)]

    plan, result, store = _run(tmp_path / "ds", tmp_path / "src")
    assert plan.work == [] and CALLS == [] and result["commits"] == 0

    _videos(tmp_path / "src", 2, start=5)
    plan, result, store = _run(tmp_path / "ds", tmp_path / "src")
    assert len(CALLS) == 2 and plan.per_stage["ingest"] == {"new": 2, "up_to_date": 5}
    assert _rows(store, "SELECT count(*), count(DISTINCT caption_id) FROM captions") == [(7, 7)]


def test_a_commit_record_says_when_its_worker_began_and_how_long_it_worked(tmp_path):
    _videos(tmp_path / "src", 3)
    before = time.time()
    _, _, store = _run(tmp_path / "ds", tmp_path / "src")
    records = [r for stage in ("ingest", "echo") for r in store.commits(stage).values()]
    assert len(records) == 4
    for record in records:  # the span a benchmark counts as busy ends before the driver commits it
        assert before <= record["started_at"] <= record["started_at"] + record["seconds"] <= record["committed_at"] + 0.01


def test_changed_stage_config_recomputes_from_that_stage_only(tmp_path):
    _videos(tmp_path / "src", 3)
    _run(tmp_path / "ds", tmp_path / "src")
    plan, _, store = _run(tmp_path / "ds", tmp_path / "src", echo={"prefix": "v2"})
    assert plan.per_stage["ingest"] == {"up_to_date": 3}
    assert plan.per_stage["echo"] == {"config_changed": 3}
    assert len(CALLS) == 3
    texts = [t for (t,) in _rows(store, "SELECT text FROM captions ORDER BY text")]
    assert texts == ["v2 file:v00.mp4", "v2 file:v01.mp4", "v2 file:v02.mp4"]


def test_poison_clip_is_isolated_and_retried_only_if_retryable(tmp_path):
    _videos(tmp_path / "src", 4)
    FAILING.add("file:v01.mp4")
    plan, _, store = _run(tmp_path / "ds", tmp_path / "src")
    FAILING.clear()
    assert _rows(store, "SELECT count(*) FROM captions") == [(3,)]
    (reason,) = _rows(store, "SELECT reason FROM rejections WHERE stage = 'echo'")
    assert reason == ("stage_error",)
    # stage_error is retryable: the next run retries that shard only (and the clip now works)
    plan, _, store = _run(tmp_path / "ds", tmp_path / "src")
    assert plan.per_stage["echo"].get("failed_before") == 2  # the shard holding v01 (2 clips)
    assert _rows(store, "SELECT count(*) FROM captions") == [(4,)]
    assert _rows(store, "SELECT count(*) FROM rejections WHERE stage = 'echo'") == [(0,)]


def test_removed_clips_stay_unless_pruned(tmp_path):
    _videos(tmp_path / "src", 4)
    _run(tmp_path / "ds", tmp_path / "src")
    (tmp_path / "src" / "v00.mp4").unlink()
    (tmp_path / "src" / "v03.mp4").unlink()
    (tmp_path / "src" / "v02.mp4").unlink()
    plan, _, store = _run(tmp_path / "ds", tmp_path / "src")
    assert plan.work == []
    assert _rows(store, "SELECT count(*) FROM clips") == [(4,)]
    plan, _, store = _run(tmp_path / "ds", tmp_path / "src", prune=True)
    assert _rows(store, "SELECT source_key FROM clips") == [("file:v01.mp4",)]
    assert _rows(store, "SELECT count(*) FROM captions") == [(1,)]


def test_help_is_fast_and_imports_nothing_heavy():
    """`--help` of the CLI and of every job answers without importing torch, ray, transformers,
    duckdb or av."""
    code = ("import sys, contextlib, io\n"
            "from engine.run import JOBS, main\n"
            "for argv in [['--help']] + [[job, '--help'] for job in JOBS]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        try: main(argv)\n"
            "        except SystemExit: pass\n"
            "    assert 'usage' in out.getvalue(), argv\n"
            "print([m for m in ('torch', 'ray', 'transformers', 'duckdb', 'av') if m in sys.modules])")
    started = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert time.time() - started < 5  # generous for a loaded CI machine; ~0.2 s locally


class PendingError(RuntimeError):
    reason = "batch_pending"
    whole_shard = True


class PendingStage(EchoCaptioner):
    """Raises a whole-shard error (as a Batch API job still running does) while PENDING is set."""

    name = "pending"
    calls = 0

    def process_batch(self, batch):
        PendingStage.calls += 1
        if PENDING:
            raise PendingError("batch still running")
        return super().process_batch(batch)


PENDING = [True]


def test_whole_shard_errors_are_not_split_and_are_retried(tmp_path):
    _videos(tmp_path / "src", 3)
    stages = [Ingest(), PendingStage()]
    pipeline = Pipeline(stages)
    store = DatasetStore(tmp_path / "ds", recover=True)
    options = BuildOptions(shard_size=3)
    plan = plan_build(pipeline, store, str(tmp_path / "src"), options)
    PendingStage.calls = 0
    execute(pipeline, store, plan, lambda: LocalExecutor(stages, store.root), options,
            Progress(pipeline.names, live=False, interval=1e9))
    assert PendingStage.calls == 1  # one attempt for the shard, not one per clip
    rows = _rows(store, "SELECT reason, retryable FROM rejections WHERE stage = 'pending'")
    assert rows == [("batch_pending", True)] * 3
    PENDING.clear()
    plan = plan_build(pipeline, store, str(tmp_path / "src"), options)
    assert plan.per_stage["pending"] == {"failed_before": 3}
    execute(pipeline, store, plan, lambda: LocalExecutor(stages, store.root), options,
            Progress(pipeline.names, live=False, interval=1e9))
    assert _rows(store, "SELECT count(*) FROM captions") == [(3,)]


def test_copied_file_in_another_shard_is_one_clip(tmp_path):
    src = tmp_path / "src"
    _videos(src, 3)
    (src / "v99.mp4").write_bytes((src / "v00.mp4").read_bytes())  # same content, last shard
    plan, _, store = _run(tmp_path / "ds", src, shard_size=2)
    assert _rows(store, "SELECT count(*), count(DISTINCT clip_id) FROM clips") == [(3, 3)]
    assert _rows(store, "SELECT count(*), count(DISTINCT caption_id) FROM captions") == [(3, 3)]
    (rejected,) = _rows(store, "SELECT item_id, reason FROM rejections")
    assert rejected == ("file:v99.mp4", "duplicate_clip")
    plan, result, store = _run(tmp_path / "ds", src, shard_size=2)  # a rerun keeps it that way
    assert plan.work == [] and _rows(store, "SELECT count(*) FROM clips") == [(3,)]


class CountingExecutor(LocalExecutor):
    """The local executor with a placement's worth of slots, counting shards in flight."""

    def __init__(self, stages, root, slots):
        super().__init__(stages, root)
        self.slots, self.started, self.finished, self.most = slots, set(), set(), 0
        self.last = len(stages) - 1

    def submit(self, task):
        self.started.add(task.shard_id)
        self.most = max(self.most, len(self.started - self.finished))
        super().submit(task)

    def next_result(self):
        task, result = super().next_result()
        if task.stage_index == self.last:
            self.finished.add(task.shard_id)
        return task, result


@pytest.mark.parametrize(("slots", "cap", "expected"), [(3, None, 3), (5, None, 5), (5, 2, 2)])
def test_shards_in_flight_come_from_the_executors_slots_capped_by_the_job(tmp_path, slots, cap, expected):
    _videos(tmp_path / "src", 12)
    stages = [Ingest(), EchoCaptioner({})]
    pipeline, store = Pipeline(stages), DatasetStore(tmp_path / "ds", recover=True)
    options = BuildOptions(shard_size=2, max_shards_in_flight=cap)
    plan = plan_build(pipeline, store, str(tmp_path / "src"), options)
    made: list[CountingExecutor] = []
    result = execute(pipeline, store, plan, lambda: made.append(CountingExecutor(stages, store.root, slots)) or made[0],
                     options, Progress(pipeline.names, live=False, interval=1e9))
    assert result["commits"] == 12
    assert made[0].most == expected
