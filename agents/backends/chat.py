"""The chat boundary every language-model stage talks through.

A stage builds `ChatRequest`s (OpenAI-style messages, images as PIL images or data URLs, an
optional pydantic model the answer must satisfy) and gets `ChatResult`s back, one per request,
in order. A backend never raises for one bad answer: it returns a result with `error` set to a
reason code, so the stage can turn it into a rejection row.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


@dataclass
class ChatRequest:
    # OpenAI chat format; image parts {"type": "image", "image": PIL}, video parts
    # {"type": "video", "video": [PIL], "timestamps": [seconds]} (only to a backend that `takes_video`)
    messages: list[dict[str, Any]]
    response_model: type[BaseModel] | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = 0
    cache_key: str | None = None  # set by the stage: its prompt version, part of the response-cache key

    def digest(self, model: str) -> str:
        """Identifies the request for the response cache: messages, schema, sampling, model."""
        schema = json_schema(self.response_model) if self.response_model else None
        payload = json.dumps(
            [_digestable(self.messages), schema, self.max_tokens, self.temperature, self.seed, model],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class ChatResult:
    text: str = ""
    parsed: BaseModel | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # a reason code: parse_failed, api_error, ...
    detail: str = ""
    retryable: bool = False
    cached: bool = False
    attempts: int = 1
    # tokens billed for attempts whose answer was not used (a malformed answer re-asked); the
    # answer's own tokens above are those of the attempt that produced it, so row sums stay exact
    wasted_prompt_tokens: int = 0
    wasted_completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


class ChatBackend(ABC):
    """Where a model runs: a local checkpoint, an OpenAI-compatible endpoint, or a test script."""

    model: str
    revision: str = "main"
    # A `{"type": "video", "video": [PIL frames], "timestamps": [seconds]}` part reaches the model
    # as one video with its time axis (Qwen-VL, local or in vLLM); stages send separate images to
    # a backend without it. Known after `setup()`.
    takes_video: bool = False
    # Each `chat_batch` call is a job of its own (the Batch API): stages then send a shard's
    # requests in one call instead of clip by clip as they are built.
    whole_batches: bool = False

    def setup(self) -> None:
        """Load the model or open the client; called once per actor."""

    @abstractmethod
    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        """Answer every request, in order; never raise for a single bad answer."""

    def teardown(self) -> None:
        pass


@cache
def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A response model's JSON schema, made once per model class (pydantic rebuilds it each call).
    Callers must not mutate it."""
    return model.model_json_schema()


def parse_answer(text: str, response_model: type[BaseModel] | None) -> ChatResult:
    """Parse model text into the response model; a failure is a `parse_failed` result."""
    if response_model is None:
        return ChatResult(text=text)
    candidate = extract_json(text)
    if candidate is None:
        return ChatResult(text=text, error="parse_failed", detail="no JSON object in the answer")
    try:
        return ChatResult(text=text, parsed=response_model.model_validate(candidate))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return ChatResult(text=text, error="parse_failed", detail=f"{where}: {first['msg']}"[:300])


def extract_json(text: str) -> Any | None:
    """The first JSON object in `text`, tolerating code fences and prose around it."""
    start = text.find("{")
    while start != -1:
        depth = 0
        in_string = False
        escaped = False
        for end in range(start, len(text)):
            ch = text[end]
            if in_string:
                escaped = ch == "\\" and not escaped
                if ch == '"' and not escaped:
                    in_string = False
                continue
            if ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(text[start : end + 1])
                    except json.JSONDecodeError:
                        break
        start = text.find("{", start + 1)
    return None


class ScriptedChatBackend(ChatBackend):
    """A fake at the model boundary for tests: answers come from a function of the request."""

    def __init__(self, answer: Callable[[ChatRequest], str], model: str = "scripted", revision: str = "test",
                 takes_video: bool = False):
        self.answer = answer
        self.model = model
        self.revision = revision
        self.takes_video = takes_video
        self.requests: list[ChatRequest] = []

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        results = []
        for request in requests:
            self.requests.append(request)
            text = self.answer(request)
            result = parse_answer(text, request.response_model)
            result.prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.messages)
            result.completion_tokens = len(text.split())
            results.append(result)
        return results


def _digestable(messages: list[dict[str, Any]]) -> Any:
    """Messages with images (and video frames) replaced by a hash of their pixels, so the digest is stable."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image" and hasattr(part.get("image"), "tobytes"):
                    image = part["image"]
                    parts.append({"type": "image", "sha": hashlib.sha256(image.tobytes()).hexdigest()})
                elif part.get("type") == "video" and isinstance(part.get("video"), list):
                    frames = hashlib.sha256()
                    for frame in part["video"]:
                        frames.update(frame.tobytes())
                    parts.append({"type": "video", "sha": frames.hexdigest(), "timestamps": part.get("timestamps")})
                else:
                    parts.append(part)
            out.append({**message, "content": parts})
        else:
            out.append(message)
    return out


@dataclass
class ChatStats:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class ChatModelConfig(BaseModel):
    """Where a stage's language model runs. The API key is read from the environment variable
    named by `api_key_env` when the backend starts; it is never part of a config, row or log."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    backend: Literal["local", "vllm", "openai", "openai-batch", "fake"] = Field(
        "local", description="local checkpoint (transformers), local checkpoint in vLLM's engine (extra .[vllm]), "
        "OpenAI-compatible endpoint, its Batch API (half price, slow), or an instant fake for benchmarks")
    model: str = Field("tiny:qwen2", description="tiny:<name>, a local folder, a HF id or an API model name")
    revision: str = "main"
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (None: api.openai.com)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    concurrency: int = Field(8, ge=1, description="requests in flight (openai) / batch size (local)")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0, description="retries of transient API failures (429, 5xx, timeouts)")
    parse_retries: int = Field(1, ge=0, description="re-asks after an answer that fails the schema")
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    max_new_tokens: int = Field(256, ge=1)
    constrained: bool = Field(True, description="local: decode only schema-valid JSON")
    seed: int = 0
    batch_poll_s: float = Field(30.0, gt=0, description="openai-batch: seconds between status polls")
    batch_max_wait_s: float = Field(24 * 3600.0, ge=0, description="openai-batch: wait this long, then stop "
                                    "(the batch ids are kept; the next run resumes them)")
    fake_latency_s: float = Field(0.0, ge=0, description="fake: simulated seconds per request")
    max_model_len: int = Field(4096, ge=256, description="vllm: longest prompt + answer in tokens")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vllm: share of GPU memory for the engine")
