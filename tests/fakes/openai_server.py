"""A real HTTP server on 127.0.0.1 speaking the OpenAI chat-completions protocol, for tests.

Scripting: queue behaviours with `server.script(...)`; each request takes the next one, and when
the queue is empty `server.responder(body)` decides (default: a schema-valid answer to the
request's `response_format`). Behaviours:

    Reply(content=None)        200; None content = a minimal instance of the requested JSON schema
    Reply(content='{"a": 1')   200 with malformed JSON content
    Fail(429, retry_after=1)   an error status, optionally with a Retry-After header
    Reply(..., delay_s=5)      a slow answer (for client timeouts)

Every request is recorded in `server.calls` (body, headers, arrival time).

    with FakeOpenAIServer() as server:
        server.script(Fail(429, retry_after=0.2), Reply('{"x": "y"}'))
        client = openai.OpenAI(base_url=server.base_url, api_key="k")
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    content: str | None = None
    prompt_tokens: int = 11
    completion_tokens: int = 7
    delay_s: float = 0.0


@dataclass
class Fail:
    status: int
    retry_after: float | str | None = None
    message: str = "scripted failure"
    delay_s: float = 0.0


Behaviour = Reply | Fail


@dataclass
class RecordedCall:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class FakeOpenAIServer:
    """Chat completions on POST .../chat/completions; GET .../models lists `models`, GET
    .../models/ID answers 404 for a model not in a non-empty `models` (unknown or retired)."""

    def __init__(self, responder: Callable[[dict[str, Any]], Behaviour] | None = None,
                 models: tuple[str, ...] = ()):
        self.responder = responder or (lambda body: Reply())
        self.models = models  # GET /v1/models lists these; empty = does not say (any model goes)
        self.calls: list[RecordedCall] = []
        self.gets: list[str] = []  # paths of GET requests (model lists and look-ups), in order
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._queue.extend(behaviours)

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Behaviour:
        with self._lock:
            self.calls.append(RecordedCall(body, headers))
            if self._queue:
                return self._queue.popleft()
        return self.responder(body)


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            with server._lock:
                server.gets.append(self.path)
            if self.path.rstrip("/").endswith("/models"):
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in server.models]
                self._send_json(200, {"object": "list", "data": data})
            elif "/models/" in self.path:  # retrieve one model: known when listed (or when nothing is listed)
                model = self.path.split("/models/", 1)[1]
                if not server.models or model in server.models:
                    self._send_json(200, {"id": model, "object": "model", "created": 0, "owned_by": "fake"})
                else:
                    self._send_json(404, {"error": {"message": f"The model `{model}` does not exist",
                                                    "type": "invalid_request_error", "code": "model_not_found"}})
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            behaviour = server._next(body, {k.lower(): v for k, v in self.headers.items()})
            time.sleep(behaviour.delay_s)
            try:
                if isinstance(behaviour, Fail):
                    self._send_error(behaviour)
                else:
                    self._send_reply(body, behaviour)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): nothing to answer

        def _send_reply(self, body: dict[str, Any], reply: Reply) -> None:
            content = reply.content if reply.content is not None else _answer_for(body)
            payload = {
                "id": f"chatcmpl-{len(server.calls)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                ],
                "usage": {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                },
            }
            self._send_json(200, payload)

        def _send_error(self, fail: Fail) -> None:
            extra = {} if fail.retry_after is None else {"Retry-After": str(fail.retry_after)}
            error = {"error": {"message": fail.message, "type": "scripted", "code": str(fail.status)}}
            self._send_json(fail.status, error, extra)

        def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    return Handler


def _answer_for(body: dict[str, Any]) -> str:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = fmt["json_schema"]["schema"]
        return json.dumps(schema_example(schema, schema.get("$defs", {})))
    return "A plain answer."


def schema_example(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A minimal instance of a JSON schema (enough for the shapes structured outputs use)."""
    if "$ref" in schema:
        return schema_example(defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return schema_example(options[0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if kind == "object":
        return {name: schema_example(sub, defs) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [schema_example(schema.get("items", {}), defs) for _ in range(count)]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", low + 1)
        value = (low + high) / 2
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return True
    return "example " * max(1, schema.get("minLength", 1))


@pytest.fixture
def openai_server():
    """A started FakeOpenAIServer, stopped after the test."""
    with FakeOpenAIServer() as server:
        yield server
