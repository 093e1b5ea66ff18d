"""Where stages run: in this process, or as Ray actor pools.

Both executors take `ShardTask`s and hand back `(task, ShardResult | Exception)` pairs, so the
driver loop that plans, commits and reports is the same for a laptop test and a GPU cluster.
Ray actors (rather than Ray Data) carry the stages because the unit of work here is a shard that
must be committed exactly once per stage and resumed from any stage: the driver owns that state
machine, and actor pools give each stage its own resources, model loaded once per actor, restart
on death and retry of the batch that was in flight.
"""

from __future__ import annotations

import os
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

from agents.base import SetupContext, Stage
from engine.errors import UserError
from engine.runner import ShardResult, ShardTask, run_task
from engine.store import DatasetStore


def start_stages(stages: list[Stage], root: Path | str) -> None:
    """Load every stage's model before the first batch: a missing model ends the run here, in
    one sentence, instead of turning every clip into a rejection."""
    ctx = SetupContext(Path(root))
    for stage in stages:
        try:
            stage.start(ctx)
        except Exception as err:  # noqa: BLE001 - reported to the user as the stage's start-up failure
            raise UserError(setup_failure(stage.name, err)) from err


def setup_failure(stage: str, err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err  # a Ray task error carries the actor's exception
    return f"stage {stage} cannot start: {cause}"


class LocalExecutor:
    """Runs every task in this process, one at a time (tests, debugging, tiny runs)."""

    def __init__(self, stages: list[Stage], root: Path):
        self.stages = stages
        self.store = DatasetStore(root)
        self.queue: deque[ShardTask] = deque()
        start_stages(stages, self.store.root)

    def submit(self, task: ShardTask) -> None:
        self.queue.append(task)

    def next_result(self) -> tuple[ShardTask, ShardResult | Exception]:
        task = self.queue.popleft()
        try:
            return task, run_task(self.stages[task.stage_index], self.store, task)
        except Exception as err:  # noqa: BLE001 - reported as a stage failure by the driver
            return task, err

    def in_flight(self) -> int:
        return len(self.queue)

    def cancel_waiting(self) -> None:
        """Drop tasks not started yet (a stop): here every queued task is one."""
        self.queue.clear()

    def shutdown(self) -> None:
        for stage in self.stages:
            stage.teardown()


class RayExecutor:
    """One actor pool per group of stages, sized and placed by the stages' declared resources.

    A group is one stage, or several light stages co-located in one actor (placement
    `colocate:`), which saves a process and its start-up per stage on small machines."""

    def __init__(self, stages: list[Stage], root: Path, groups: list[list[int]] | None = None,
                 max_restarts: int = 3, max_task_retries: int = 2):
        import ray

        self.ray = ray
        self.stages = stages
        groups = groups or [[index] for index in range(len(stages))]
        self.group_of = {index: g for g, members in enumerate(groups) for index in members}
        actor_class = ray.remote(StageActor)
        self.pools: list[list[Any]] = []
        self.limits: list[int] = []
        self.load: dict[Any, int] = {}
        self.makers: list[Any] = []
        self.lost_since: dict[tuple[int, str], float] = {}  # (stage, shard) -> first loss of its task
        for members in groups:
            hosted = [stages[i] for i in members]
            res = [s.resources for s in hosted]
            options: dict[str, Any] = {
                "num_cpus": max(r.num_cpus for r in res),
                "num_gpus": max(r.num_gpus for r in res),
                "max_restarts": max_restarts,
                "max_task_retries": max_task_retries,
            }
            if all(s.concurrent_shards for s in hosted):
                options["max_concurrency"] = max(r.max_in_flight for r in res)
            memory = sum(r.memory_gb or 0 for r in res)
            if memory:
                options["memory"] = int(memory * 2**30)
            specs = [(type(s), s.config.model_dump()) for s in hosted]
            nice = min(r.nice for r in res)  # the most urgent stage of the actor decides
            make = partial(_new_actor, actor_class, options, specs, str(root), nice)
            pool = [make() for _ in range(max(r.actors for r in res))]
            self.makers.append(make)
            self.pools.append(pool)
            self.limits.append(max(r.max_in_flight for r in res))
            self.load.update({actor: 0 for actor in pool})
        self.waiting: list[deque[ShardTask]] = [deque() for _ in groups]
        self.running: dict[Any, tuple[ShardTask, Any]] = {}
        self.ready: set[Any] = set()  # actors whose stages are set up
        self.starting = {actor.start.remote(): (g, actor) for g, pool in enumerate(self.pools) for actor in pool}

    @property
    def slots(self) -> int:
        """Tasks the pools run at once: actors x max_in_flight, summed over the pools."""
        return sum(len(pool) * limit for pool, limit in zip(self.pools, self.limits, strict=True))

    def submit(self, task: ShardTask) -> None:
        group = self.group_of[task.stage_index]
        self.waiting[group].append(task)
        self._dispatch(group)

    def _started(self, ref: Any) -> None:
        """An actor finished loading its models: it takes shards from now on. Every actor loads at
        once, and a pool's shards start on its first ready actor: the light stages work while a
        heavy model still loads. A setup that failed ends the run in one sentence, naming the stage
        (shards already committed stay)."""
        group, actor = self.starting.pop(ref)
        try:
            self.ray.get(ref)
        except Exception as err:  # noqa: BLE001 - the stage's own setup error, said once
            self.shutdown()
            stage = getattr(getattr(err, "cause", None), "stage", None) or "?"
            raise UserError(setup_failure(stage, getattr(err, "cause", None) or err)) from None
        self.ready.add(actor)
        self._dispatch(group)

    def _dispatch(self, group: int) -> None:
        pool = [actor for actor in self.pools[group] if actor in self.ready]
        while self.waiting[group] and pool:
            actor = min(pool, key=lambda a: self.load[a])
            if self.load[actor] >= self.limits[group]:
                return
            task = _next_waiting(self.waiting[group])
            ref = actor.run.remote(task)
            self.load[actor] += 1
            self.running[ref] = (task, actor)

    def next_result(self, timeout: float | None = None) -> tuple[ShardTask, ShardResult | Exception] | None:
        """The next finished task; None when nothing finished within `timeout` or an actor just
        became ready (its pool's waiting shards are sent)."""
        if not self.running and not self.starting:
            return None
        ready, _ = self.ray.wait([*self.running, *self.starting], num_returns=1, timeout=timeout)
        if not ready:
            return None
        ref = ready[0]
        if ref in self.starting:
            self._started(ref)
            return None
        task, actor = self.running.pop(ref)
        self.load[actor] -= 1
        group = self.group_of[task.stage_index]
        try:
            result: ShardResult | Exception = self.ray.get(ref)
        except Exception as err:  # noqa: BLE001 - actor died past its restarts, or the task raised
            if self._resubmit_lost(task, actor, group, err):
                return None
            result = err
        self.lost_since.pop((task.stage_index, task.shard_id), None)
        self._dispatch(group)
        return task, result

    def _resubmit_lost(self, task: ShardTask, actor: Any, group: int, err: Exception) -> bool:
        """A task lost with its actor or node (not one that raised) runs again, on a restarted
        or new actor, for up to LOST_TASK_WINDOW_S: a task only stages files, the driver commits,
        so running it twice is harmless."""
        lost = (self.ray.exceptions.ActorUnavailableError, self.ray.exceptions.ActorDiedError,
                self.ray.exceptions.NodeDiedError, self.ray.exceptions.ObjectLostError)
        if not isinstance(err, lost):
            return False
        first = self.lost_since.setdefault((task.stage_index, task.shard_id), time.monotonic())
        if time.monotonic() - first > LOST_TASK_WINDOW_S:
            return False
        if isinstance(err, self.ray.exceptions.ActorDiedError):  # past its restarts: a new one
            pool = self.pools[group]
            pool[pool.index(actor)] = fresh = self.makers[group]()
            self.load[fresh] = 0
            self.ready.add(fresh)  # it sets its stages up before its first shard (StageActor.run)
        time.sleep(LOST_TASK_PAUSE_S)  # let the actor restart elsewhere
        self.waiting[group].appendleft(task)
        self._dispatch(group)
        return True

    def cancel_waiting(self) -> None:
        """Drop tasks no actor has started (a stop); running ones still finish and commit."""
        for queue in self.waiting:
            queue.clear()

    def in_flight(self) -> int:
        """Tasks submitted and not yet handed back, running or waiting for an actor."""
        return len(self.running) + sum(len(queue) for queue in self.waiting)

    def shutdown(self) -> None:
        for pool in self.pools:
            for actor in pool:
                self.ray.kill(actor)


def _next_waiting(queue: deque[ShardTask]) -> ShardTask:
    """The waiting task of the latest stage, first come first served among equals: an actor
    shared by several stages (ingest with ground truth) moves the shards it has on before it
    starts new ones, so later stages get work early and shards in flight finish."""
    position = max(range(len(queue)), key=lambda i: (queue[i].stage_index, -i))
    task = queue[position]
    del queue[position]
    return task


LOST_TASK_WINDOW_S = 300.0  # how long a task lost with its node is tried again
LOST_TASK_PAUSE_S = 1.0


def _new_actor(actor_class, options: dict[str, Any], specs: list, root: str, nice: int = 0):
    return actor_class.options(**options).remote(specs, root, options["num_cpus"], nice)


class StageActor:
    """A Ray actor holding one or more stage instances; `start` loads their models once."""

    def __init__(self, specs: list[tuple[type[Stage], dict]], root: str, num_cpus: float, nice: int = 0):
        _ignore_sigint()  # Ctrl-C reaches the whole process group: only the driver decides to stop
        if nice and hasattr(os, "nice"):
            os.nice(nice)  # this process only: a CPU-bound stage yields to the ones waiting on an API
        threads = max(1, int(num_cpus))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        # Set here, before any model library is imported: a cluster the run joins (a Ray job) does
        # not carry the driver's environment, and every actor's loading bars would flood its log.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        pyarrow_without_pandas()
        self.threads = threads
        self.stages = {cls.name: cls(config) for cls, config in specs}
        self.store = DatasetStore(root, create=False)
        self.started = False

    def start(self) -> None:
        self.started = True
        for stage in self.stages.values():
            try:
                stage.start(SetupContext(self.store.root))
            except Exception as err:
                raise StageStartError(stage.name, err) from None
        limit_torch_threads(self.threads)

    def run(self, task: ShardTask) -> ShardResult:
        if not self.started:  # an actor made to replace a dead one
            self.start()
        return run_task(self.stages[task.stage], self.store, task)


class StageStartError(Exception):
    """A stage's setup failed inside an actor (travels back through Ray with the stage's name)."""

    def __init__(self, stage: str, err: BaseException):
        super().__init__(str(err))
        self.stage = stage

    def __reduce__(self):
        return (_rebuild_start_error, (self.stage, str(self)))


def _rebuild_start_error(stage: str, message: str) -> StageStartError:
    return StageStartError(stage, Exception(message))


def pyarrow_without_pandas() -> None:
    """pyarrow's first conversion of Python values imports pandas (0.3-1 cpu-s per process) only
    to ask whether the values are pandas objects; a stage's rows never are. Run that probe once
    with pandas hidden, so it finds none. Only actor processes do this: they hold nothing but
    stages. pandas itself stays importable, and `to_pandas()` still imports it when called."""
    import sys

    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    hide = _HidePandas()
    sys.meta_path.insert(0, hide)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(hide)


class _HidePandas:
    """An import finder under which `import pandas` fails (while pyarrow probes for it)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas hidden from pyarrow's probe", name=name)


def limit_torch_threads(threads: int) -> None:
    """Ray sets OMP_NUM_THREADS but torch keeps its own count; pin it where torch is loaded."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _ignore_sigint() -> None:
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread of the worker: nothing to do
        pass
