"""Progress per stage: clips done / in flight / rejected, throughput and ETA.

On a terminal it is a live table (rich). Otherwise (a log file, `ray job logs`) it prints one line
when a stage finishes and, while work goes on, one heartbeat line every `interval` seconds naming
the stages at work, so a log grows by lines that say something. The same numbers end up in the
run summary in the dataset.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class StageProgress:
    planned: int = 0
    done: int = 0
    in_flight: int = 0
    rejected: int = 0
    shards: int = 0
    planned_shards: int = 0
    seconds: float = 0.0  # summed worker time
    counters: dict[str, int] = field(default_factory=dict)  # summed stage counters (tokens, calls, ...)

    def rate(self, elapsed: float) -> float:
        return self.done / elapsed if elapsed > 0 else 0.0


@dataclass
class Progress:
    stages: list[str]
    started: float = field(default_factory=time.monotonic)
    by_stage: dict[str, StageProgress] = field(default_factory=dict)
    live: bool = field(default_factory=lambda: sys.stderr.isatty())
    interval: float = 30.0  # heartbeat period without a terminal
    _last_print: float = field(default_factory=time.monotonic)
    _live_view: object = None
    _reported: set = field(default_factory=set)  # stages whose end was printed

    def __post_init__(self) -> None:
        self.by_stage = {name: StageProgress() for name in self.stages}

    def plan(self, stage: str, clips: int) -> None:
        self.by_stage[stage].planned += clips
        self.by_stage[stage].planned_shards += 1

    def started_task(self, stage: str, clips: int) -> None:
        self.by_stage[stage].in_flight += clips
        self.refresh()

    def finished_task(self, stage: str, clips: int, rejected: int, seconds: float,
                      counters: dict[str, int] | None = None) -> None:
        p = self.by_stage[stage]
        for key, value in (counters or {}).items():
            p.counters[key] = p.counters.get(key, 0) + value
        p.in_flight -= clips
        p.done += clips
        p.rejected += rejected
        p.shards += 1
        p.seconds += seconds
        self.refresh()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self, stage: str) -> float | None:
        p = self.by_stage[stage]
        rate = p.rate(self.elapsed())
        remaining = p.planned - p.done
        return remaining / rate if rate > 0 and remaining > 0 else (0.0 if remaining <= 0 else None)

    def summary(self, models: dict[str, str] | None = None) -> dict:
        """Per-stage numbers and the run's tokens; `models` (stage -> model name) prices them."""
        elapsed = self.elapsed()
        return {
            "elapsed_s": round(elapsed, 2),
            "stages": {
                name: {**asdict(p), "clips_per_s": round(p.rate(elapsed), 3), "eta_s": _round(self.eta(name))}
                for name, p in self.by_stage.items()
            },
            "tokens": token_summary({n: p.counters for n, p in self.by_stage.items()}, models or {}),
        }

    # ----- rendering -----
    def __enter__(self) -> Progress:
        if self.live:
            from rich.live import Live

            self._live_view = Live(self._table(), refresh_per_second=4, transient=False)
            self._live_view.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live_view is not None:
            self._live_view.update(self._table())
            self._live_view.__exit__(*exc)
            return
        for name, p in self.by_stage.items():
            if name not in self._reported and p.planned_shards:
                self._print(f"{name} stopped at {p.done}/{p.planned} clips, {p.rejected} rejected")
        idle = [name for name, p in self.by_stage.items() if not p.planned_shards]
        if idle:
            self._print(f"nothing to run: {', '.join(idle)}")

    def refresh(self) -> None:
        if self._live_view is not None:
            self._live_view.update(self._table())
            return
        for name, p in self.by_stage.items():
            if name not in self._reported and p.planned_shards and p.shards >= p.planned_shards and not p.in_flight:
                self._reported.add(name)
                self._print(f"{name} done: {p.done}/{p.planned} clips, {p.rejected} rejected, "
                            f"{p.rate(self.elapsed()):.2f} clips/s")
        if time.monotonic() - self._last_print >= self.interval:
            self._print(self._heartbeat())

    def _heartbeat(self) -> str:
        busy = [f"{name} {p.done}/{p.planned} ({p.in_flight} in flight, eta {_fmt_eta(self.eta(name))})"
                for name, p in self.by_stage.items() if name not in self._reported and p.planned_shards]
        finished = sum(1 for name in self.by_stage if name in self._reported)
        return f"working: {', '.join(busy) or 'waiting'}; {finished}/{len(self.by_stage)} stages done"

    def _print(self, text: str) -> None:
        self._last_print = time.monotonic()
        print(f"[{self.elapsed():7.1f}s] {text}", file=sys.stderr, flush=True)

    def _table(self):
        from rich.table import Table

        elapsed = self.elapsed()
        table = Table(title=f"build  {elapsed:6.1f}s", title_justify="left")
        for column in ("stage", "done", "planned", "in flight", "rejected", "clips/s", "eta"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        for name, p in self.by_stage.items():
            table.add_row(
                name, str(p.done), str(p.planned), str(p.in_flight), str(p.rejected),
                f"{p.rate(elapsed):.2f}", _fmt_eta(self.eta(name)),
            )
        return table


def _fmt_eta(eta: float | None) -> str:
    if eta is None:
        return "?"
    return f"{eta:.0f}s" if eta < 120 else f"{eta / 60:.1f}m"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


PRICES_FILE = Path(__file__).resolve().parent.parent / "data" / "audit" / "prices.yaml"


def token_summary(counters: dict[str, dict[str, int]], models: dict[str, str]) -> dict:
    """Tokens spent (they reached the model in this run: answers used and answers wasted) apart
    from tokens replayed from the response cache (spent by an earlier run); cost from spent only."""
    prices = _prices()
    spent = {"prompt": 0, "completion": 0}
    replayed = {"prompt": 0, "completion": 0}
    cost = 0.0
    for stage, c in counters.items():
        prompt = c.get("prompt_tokens", 0) + c.get("wasted_prompt_tokens", 0)
        completion = c.get("completion_tokens", 0) + c.get("wasted_completion_tokens", 0)
        spent["prompt"] += prompt
        spent["completion"] += completion
        replayed["prompt"] += c.get("replayed_prompt_tokens", 0)
        replayed["completion"] += c.get("replayed_completion_tokens", 0)
        price = prices.get(models.get(stage, ""), {})
        cost += (prompt * float(price.get("input", 0)) + completion * float(price.get("output", 0))) / 1e6
    calls = sum(c.get("chat_calls", 0) for c in counters.values())
    cached = sum(c.get("chat_cached", 0) for c in counters.values())
    return {"spent": spent, "replayed": replayed, "calls": calls, "replayed_calls": cached,
            "cost_usd": round(cost, 6)}


def _prices() -> dict[str, dict[str, float]]:
    import yaml

    return (yaml.safe_load(PRICES_FILE.read_text()) or {}) if PRICES_FILE.is_file() else {}
