"""A response cache for chat backends: a replay of completed calls costs nothing.

Keyed by (request digest: messages, images, schema, sampling; model and revision; agent; prompt
version). Only successful, parsed answers are stored, so a failure is never replayed as a
success. Answers live in one SQLite file (`responses.sqlite3`, write-ahead log, so several actors
of one machine read and write it at once), not one file per answer: a million answers stay a few
files. Answers that an older version wrote as `<key[:2]>/<key>.json` files are still replayed.
SQLite needs a local or a POSIX-locking file system: with a dataset on object storage the cache
lives in a local folder (see `cache_folder`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.backends.chat import ChatBackend, ChatRequest, ChatResult, parse_answer

DB_FILE = "responses.sqlite3"


class ResponseCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._local = threading.local()  # one connection per thread: threaded actors share a cache

    def __getstate__(self) -> dict[str, Any]:  # a connection never travels to another process
        return {"folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.folder = state["folder"]
        self._local = threading.local()

    def key(self, request: ChatRequest, model: str, revision: str, namespace: str) -> str:
        digest = request.digest(f"{model}@{revision}")
        return hashlib.sha256(f"{namespace}\x1f{digest}".encode()).hexdigest()

    def _db(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "con", None) is None or local.pid != os.getpid():
            self.folder.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.folder / DB_FILE, timeout=60, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
            local.con, local.pid = con, os.getpid()
        return local.con

    def get(self, key: str) -> dict | None:
        row = self._db().execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
        if row:
            return json.loads(row[0])
        try:  # an answer cached by an older version, one file per answer
            return json.loads((self.folder / key[:2] / f"{key}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, result: ChatResult) -> None:
        if result.ok:
            self.put_many({key: _stored(result)})

    def put_many(self, answers: dict[str, dict]) -> None:
        """Store answers in one transaction (a batch of a stage's calls)."""
        if not answers:
            return
        con = self._db()
        with con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT OR REPLACE INTO answers (key, value) VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in answers.items()])

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


def _stored(result: ChatResult) -> dict:
    return {"text": result.text, "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}


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

    @property
    def takes_video(self) -> bool:
        return self.inner.takes_video

    @property
    def whole_batches(self) -> bool:
        return self.inner.whole_batches

    def teardown(self) -> None:
        self.inner.teardown()
        self.cache.close()

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
                results[position] = result
            self.cache.put_many({keys[p]: _stored(r) for p, r in zip(missing, answered, strict=True) if r.ok})
        return results  # type: ignore[return-value]


def _from_cache(stored: dict, request: ChatRequest) -> ChatResult | None:
    result = parse_answer(stored["text"], request.response_model)
    if not result.ok:  # the schema changed since the answer was stored: ask again
        return None
    result.prompt_tokens = stored.get("prompt_tokens", 0)
    result.completion_tokens = stored.get("completion_tokens", 0)
    result.cached = True
    return result
