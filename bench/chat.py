"""Benchmark: the local transformers chat backend with continuous batching and llguidance grammars
vs the static batches with a hand-written per-row vocabulary mask it replaced (`baseline_chat.py`).

    python bench/chat.py [--requests 32] [--max-new-tokens 96] [--model tiny:qwen2] [--smoke]

Both get the same schema-constrained requests (same prompts, same tiny random-weight model, same
token budget), all submitted at once the way shards in flight on one actor submit them: the new path
from one thread per shard of 4 requests into one running batch of up to `--requests` sequences, the
baseline in static batches of up to the same size, one `generate` per shard as today's actor runs
them. The answer schema fixes the length of every string and list, and the budget is above it, so
both paths write answers of the same shape and length (random weights would otherwise close
strings at different points under the two grammars, and tokens/s would compare unequal work). Both must give only
schema-valid answers; each backend is warmed up with one full run, then the median of `--repeats`
timed runs is kept. The last
line printed is one JSON object with `ratio` (generated tokens/s, new over baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, Field, StringConstraints  # noqa: E402

WORDS = "a red ball rolls left across the table while the camera pans right slowly".split()


class Verdict(BaseModel):
    verdict: Literal["accept", "reject"]
    score: float = Field(ge=0, le=1)
    reason: str = Field(min_length=48, max_length=48)
    nouns: list[Annotated[str, StringConstraints(min_length=12, max_length=12)]] = Field(min_length=3, max_length=3)


def requests(n: int):
    from agents.backends.chat import ChatRequest

    prompts = [" ".join(WORDS[(i * 3) % len(WORDS):] + WORDS[: (i * 3) % len(WORDS)]) * (1 + i % 3) for i in range(n)]
    return [ChatRequest(messages=[{"role": "user", "content": f"Judge this caption: {p}"}], response_model=Verdict)
            for p in prompts]


def run(backend, reqs, shard_size: int) -> tuple[float, list]:
    shards = [reqs[i: i + shard_size] for i in range(0, len(reqs), shard_size)]
    start = time.perf_counter()
    with ThreadPoolExecutor(len(shards)) as pool:  # each shard in flight calls the backend itself
        results = [r for batch in pool.map(backend.chat_batch, shards) for r in batch]
    return time.perf_counter() - start, results


def measure(name: str, backend, reqs, shard_size: int, repeats: int) -> dict:
    backend.setup()
    run(backend, reqs, shard_size)  # warm-up: first forward passes at every batch shape, grammar compilation
    timed = sorted((run(backend, reqs, shard_size) for _ in range(repeats)), key=lambda r: r[0])
    seconds, results = timed[len(timed) // 2]  # the median run
    tokens = sum(r.completion_tokens for r in results)
    valid = sum(r.ok for r in results)
    backend.teardown()
    print(f"{name:<34} {seconds:7.2f} s  {tokens:6d} tokens  {tokens / seconds:8.1f} tok/s  valid {valid}/{len(results)}")
    return {"seconds": round(seconds, 3), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
            "valid": valid, "requests": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32, help="concurrent requests (and batch size)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend (the median is kept)")
    parser.add_argument("--model", default="tiny:qwen2")
    parser.add_argument("--smoke", action="store_true", help="4 requests, 64 tokens, one run: seconds, for the test suite")
    parser.add_argument("--only", choices=["baseline", "continuous"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.max_new_tokens, args.repeats = 4, 64, 1
    os.environ.setdefault("VDE_CACHE", tempfile.mkdtemp(prefix="vde-bench-chat-"))
    if args.only:
        print(json.dumps(measure_one(args)))
        return
    print(f"{args.requests} concurrent requests, {args.model}, budget {args.max_new_tokens} tokens")
    # each backend in its own process: OpenMP thread teams left by one would slow the other down
    base, new = (in_subprocess(args, name) for name in ("baseline", "continuous"))
    ratio = new["tokens_per_s"] / base["tokens_per_s"]
    print(f"ratio (tokens/s, new / baseline): {ratio:.2f}")
    print(json.dumps({"requests": args.requests, "model": args.model, "baseline": base, "continuous": new,
                      "ratio": round(ratio, 2)}))


def measure_one(args) -> dict:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from agents.backends.chat import ChatModelConfig

    cfg = ChatModelConfig(model=args.model, max_new_tokens=args.max_new_tokens, concurrency=args.requests)
    if args.only == "baseline":
        from bench.baseline_chat import StaticBatchChatBackend

        return measure("static batches + per-row mask", StaticBatchChatBackend(cfg), requests(args.requests), 4,
                       args.repeats)
    from agents.backends.local_chat import LocalChatBackend

    return measure("continuous batching + llguidance", LocalChatBackend(cfg), requests(args.requests), 4, args.repeats)


def in_subprocess(args, name: str) -> dict:
    import subprocess

    command = [sys.executable, __file__, "--only", name, "--requests", str(args.requests), "--max-new-tokens",
               str(args.max_new_tokens), "--repeats", str(args.repeats), "--model", args.model]
    # idle OpenMP workers sleep instead of spinning: on a busy 2-core machine a spinning worker takes
    # the core the decode loop thread needs (measured: 5-30x slower steps); same setting for both
    env = os.environ | {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:  # its own error, not only "died with SIGABRT"
        sys.exit(f"bench/chat.py --only {name} exited with {out.returncode}:\n{out.stderr[-3000:]}")
    lines = out.stdout.strip().splitlines()
    print(lines[-2] if len(lines) > 1 else "")
    return json.loads(lines[-1])


if __name__ == "__main__":
    main()
