"""A response cache for chat backends: a replay of completed calls costs nothing.

Keyed by (request digest: messages, images, schema, sampling; model and revision; agent; prompt
version). Only successful, parsed answers are stored, so a failure is never replayed as a
success. One JSON file per answer, written atomically, so many actors (on many nodes sharing the
dataset's storage) can use one cache without a lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from agents.backends.chat import ChatBackend, ChatRequest, ChatResult, parse_answer


class ResponseCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def key(self, request: ChatRequest, model: str, revision: str, namespace: str) -> str:
        digest = request.digest(f"{model}@{revision}")
        return hashlib.sha256(f"{namespace}\x1f{digest}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, result: ChatResult) -> None:
        if not result.ok:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps({"text": result.text, "prompt_tokens": result.prompt_tokens,
                                   "completion_tokens": result.completion_tokens}))
        os.replace(tmp, path)


class CachedChatBackend(ChatBackend):
    """Wraps a backend: answers from the cache where it can, asks the model for the rest."""

    def __init__(self, inner: ChatBackend, cache: ResponseCache, namespace: str):
        self.inner = inner
        self.cache = cache
        self.namespace = namespace
        self.model = inner.model
        self.revision = inner.revision
        self.hits = 0
        self.misses = 0

    def setup(self) -> None:
        self.inner.setup()

    def teardown(self) -> None:
        self.inner.teardown()

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        # a request's cache_key (its prompt version) joins the namespace: an edited prompt never replays
        keys = [self.cache.key(r, self.inner.model, self.inner.revision,
                               f"{self.namespace}/{r.cache_key}" if r.cache_key else self.namespace)
                for r in requests]
        results: list[ChatResult | None] = []
        missing: list[int] = []
        for position, (request, key) in enumerate(zip(requests, keys, strict=True)):
            stored = self.cache.get(key)
            hit = _from_cache(stored, request) if stored else None
            results.append(hit)
            if hit is None:
                missing.append(position)
        self.hits += len(requests) - len(missing)
        self.misses += len(missing)
        if missing:
            answered = self.inner.chat_batch([requests[i] for i in missing])
            for position, result in zip(missing, answered, strict=True):
                self.cache.put(keys[position], result)
                results[position] = result
        return results  # type: ignore[return-value]


def _from_cache(stored: dict, request: ChatRequest) -> ChatResult | None:
    result = parse_answer(stored["text"], request.response_model)
    if not result.ok:  # the schema changed since the answer was stored: ask again
        return None
    result.prompt_tokens = stored.get("prompt_tokens", 0)
    result.completion_tokens = stored.get("completion_tokens", 0)
    result.cached = True
    return result
