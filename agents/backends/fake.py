"""An instant stand-in for a chat model, for benchmarks and smoke runs of the engine itself.

`backend: fake` answers every request with a schema-valid JSON instance built from the response
model's JSON schema, its strings made of words from the request's own text, after an optional
simulated latency (`fake_latency_s`) with at most `concurrency` requests in flight, so the
engine's overhead and its API concurrency can be measured without a model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.backends.chat import (
    ChatBackend,
    ChatModelConfig,
    ChatRequest,
    ChatResult,
    json_schema,
    parse_answer,
)


class InstantChatBackend(ChatBackend):
    def __init__(self, cfg: ChatModelConfig):
        self.cfg = cfg
        self.model = f"fake:{cfg.model}"
        self.revision = "none"
        self.calls = 0
        self._pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="fake-chat")

    def teardown(self) -> None:
        self._pool.shutdown(wait=True)

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        self.calls += len(requests)
        if self.cfg.fake_latency_s <= 0:
            return [self._answer(r) for r in requests]
        return list(self._pool.map(self._answer_later, requests))

    def _answer_later(self, request: ChatRequest) -> ChatResult:
        time.sleep(self.cfg.fake_latency_s)
        return self._answer(request)

    def _answer(self, request: ChatRequest) -> ChatResult:
        words = _words(request)
        if request.response_model is None:
            text = " ".join(words[:12]) or "ok"
        else:
            schema = json_schema(request.response_model)
            text = json.dumps(instance(schema, schema.get("$defs", {}), words, "root"))
        result = parse_answer(text, request.response_model)
        result.prompt_tokens = len(words)
        result.completion_tokens = len(text.split())
        return result


def instance(schema: dict[str, Any], defs: dict[str, Any], words: list[str], path: str) -> Any:
    """A small valid instance of a JSON schema; strings are windows of the request's words."""
    if "$ref" in schema:
        return instance(defs[schema["$ref"].split("/")[-1]], defs, words, path)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return instance(options[0], defs, words, path)
    if "enum" in schema:
        return schema["enum"][_pick(path, len(schema["enum"]))]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance(sub, defs, words, f"{path}.{name}") for name, sub in props.items()}
    if kind == "array":
        count = max(schema.get("minItems", 1), min(2, schema.get("maxItems", 2)))
        return [instance(schema.get("items", {}), defs, words, f"{path}[{i}]") for i in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", 0) + 1 if "exclusiveMinimum" in schema else 1))
    if kind == "number":
        low, high = schema.get("minimum", 0.0), schema.get("maximum", 1.0)
        return (low + high) / 2
    if kind == "boolean":
        return True
    return _string(schema, words, path)


def _string(schema: dict[str, Any], words: list[str], path: str) -> str:
    if "pattern" in schema and schema["pattern"].startswith("^[A-D]"):
        return "ABCD"[_pick(path, 4)]
    if not words:
        return "x"
    start = _pick(path, len(words))
    text = " ".join(words[start : start + 4]) or words[0]
    return text[: schema.get("maxLength", len(text))] or "x"


def _words(request: ChatRequest) -> list[str]:
    texts = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return " ".join(texts[-1:]).split()


def _pick(path: str, n: int) -> int:
    return int(hashlib.sha256(path.encode()).hexdigest(), 16) % max(n, 1)
