"""The OpenAI-compatible chat backend (OpenAI, vLLM, SGLang) through the official `openai` client.

Requests of a batch run on a thread pool of `concurrency` workers with the sync client: stages
are synchronous and may run inside Ray actors that own an event loop already, so threads keep
the backend free of loop juggling; the work is network-bound, so the GIL costs nothing here.

Retries are tenacity's, not the client's (the client is built with `max_retries=0`): the policy
is then one readable place, the waits are configurable (tests use milliseconds) and the attempt
count is recorded on each result. Transient failures (429, 408, 5xx, timeouts, connection errors)
retry with exponential backoff and jitter, waiting at least what a `Retry-After` header asks;
other 4xx never retry. An answer that fails the response model is re-asked `parse_retries` times,
with the answer and the parse error appended to the conversation, then becomes a retryable
`parse_failed` result (the next run asks again). Nothing here raises for one bad request.

The key is read from the environment when the client is built and lives only inside the client
(the Authorization header); it is never copied into results, configs or log messages.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

from agents.backends.chat import ChatBackend, ChatModelConfig, ChatRequest, ChatResult, parse_answer

log = logging.getLogger(__name__)

RETRY_AFTER_CEILING_S = 120.0  # a server asking for longer than this is treated as down


class OpenAIChatBackend(ChatBackend):
    # The OpenAI chat protocol has no video part: clips go as image_url frames, which every
    # OpenAI-compatible server reads. vLLM's server adds a `video_url` part, but it takes an encoded
    # video file (a URL or a data:video/mp4 URL) that vLLM decodes and re-samples by its own frame
    # policy, so the frames and time stamps chosen here would not be what the model sees; the
    # in-process vLLM backend (`backend: vllm`) takes the frames with their time stamps instead.
    takes_video = False

    def __init__(self, cfg: ChatModelConfig):
        self.cfg = cfg
        self.model = cfg.model
        self.revision = cfg.revision
        self._client = None
        self._pool: ThreadPoolExecutor | None = None

    def setup(self) -> None:
        import openai

        key = os.environ.get(self.cfg.api_key_env)
        if not key and self.cfg.base_url is None:
            from agents.backends.models import ModelNotFound

            raise ModelNotFound(
                f"model {self.cfg.model!r} is served by the OpenAI API, which needs a key: set "
                f"${self.cfg.api_key_env}, or point base_url at an OpenAI-compatible server (vLLM, SGLang)"
            )
        self._client = openai.OpenAI(
            api_key=key or "unused",  # local servers accept any key
            base_url=self.cfg.base_url,
            timeout=self.cfg.timeout_s,
            max_retries=0,
        )
        # One pool per backend, not per call: shards answered at the same time on one actor
        # share the `concurrency` limit instead of each getting their own.
        self._pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="chat")
        if self.cfg.base_url is not None:
            self._check_server()

    def _check_server(self) -> None:
        """A self-hosted endpoint must be up and serve the model, or the stage fails at start-up
        with one sentence instead of rejecting every item later."""
        from agents.backends.models import ModelNotFound

        how = f"start one with `vllm serve {self.cfg.model}` (or SGLang) or fix base_url"
        try:
            served = [m.id for m in self._client.models.list(timeout=min(self.cfg.timeout_s, 10.0))]
        except Exception as err:
            raise ModelNotFound(
                f"no OpenAI-compatible server answers at {self.cfg.base_url} for model {self.cfg.model!r}; "
                f"{how} ({type(err).__name__})"
            ) from None
        if served and self.cfg.model not in served:
            raise ModelNotFound(
                f"the server at {self.cfg.base_url} serves {', '.join(served[:5])}, not {self.cfg.model!r}; {how}"
            )

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if self._client is None:
            self.setup()
        if not requests:
            return []
        return list(self._pool.map(self._answer, requests))

    def _answer(self, request: ChatRequest) -> ChatResult:
        """The answer of the last attempt, carrying its own tokens; the tokens of answers that
        were re-asked are paid for too, and travel separately as `wasted_*`."""
        wasted_prompt = wasted_completion = attempts = 0
        result = ChatResult(error="api_error")
        asked = request
        for ask in range(self.cfg.parse_retries + 1):
            if ask:
                wasted_prompt += result.prompt_tokens
                wasted_completion += result.completion_tokens
                asked = with_parse_error(request, result)
            result = self._ask_once(asked)
            attempts += result.attempts
            if result.error != "parse_failed":
                break
        if result.error == "parse_failed":
            # a sampled answer can come out right next time: the next run asks again
            result.retryable = True
        result.wasted_prompt_tokens, result.wasted_completion_tokens = wasted_prompt, wasted_completion
        result.attempts = attempts
        return result

    def _ask_once(self, request: ChatRequest) -> ChatResult:
        import openai
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=RetryAfterOrBackoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s),
            stop=stop_after_attempt(self.cfg.max_retries + 1),
            before_sleep=_log_retry,
            reraise=True,
        )
        attempt_number = 0
        try:
            for attempt in retrying:
                attempt_number = attempt.retry_state.attempt_number
                with attempt:
                    response = self._client.chat.completions.create(**self._payload(request))
        except openai.APIStatusError as err:
            transient = is_transient(err)
            return ChatResult(
                error="api_error" if transient else "api_rejected",
                detail=f"HTTP {err.status_code}: {_short(err)}",
                retryable=transient,
                attempts=attempt_number,
            )
        except Exception as err:  # timeouts, connection errors, anything odd: one bad request
            return ChatResult(
                error="api_error", detail=f"{type(err).__name__}: {_short(err)}", retryable=True,
                attempts=attempt_number,
            )
        text = (response.choices[0].message.content or "") if response.choices else ""
        result = parse_answer(text, request.response_model)
        if response.usage is not None:
            result.prompt_tokens = response.usage.prompt_tokens or 0
            result.completion_tokens = response.usage.completion_tokens or 0
        result.attempts = attempt_number
        return result

    def _payload(self, request: ChatRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": [_wire_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            payload["seed"] = request.seed
        if request.response_model is not None:
            payload["response_format"] = response_format(request.response_model)
        return payload


def with_parse_error(request: ChatRequest, failed: ChatResult) -> ChatRequest:
    """The re-ask after an answer that did not fit: the answer and why it failed follow the
    original messages, so the model can correct itself instead of repeating the mistake."""
    from dataclasses import replace

    feedback = (f"That answer could not be used ({failed.detail or 'not valid JSON'}). Answer again with "
                "only the JSON object the schema asks for.")
    messages = [*request.messages, {"role": "assistant", "content": failed.text or ""},
                {"role": "user", "content": feedback}]
    return replace(request, messages=messages)


@cache
def response_format(model) -> dict[str, Any]:
    """A strict `json_schema` response format from a pydantic model, made once per model (the client's own converter
    makes the schema strict-mode compatible; a plain schema is the fallback). String length
    limits are left out: strict mode refuses them, and the answer is validated here anyway."""
    try:
        from openai.lib._parsing._completions import type_to_response_format_param

        fmt = dict(type_to_response_format_param(model))
    except (ImportError, TypeError, ValueError):
        fmt = {
            "type": "json_schema",
            "json_schema": {"name": model.__name__, "schema": model.model_json_schema(), "strict": False},
        }
    fmt["json_schema"] = {**fmt["json_schema"], "schema": _without_length_limits(fmt["json_schema"]["schema"])}
    return fmt


def _without_length_limits(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_length_limits(v) for k, v in schema.items() if k not in ("minLength", "maxLength")}
    if isinstance(schema, list):
        return [_without_length_limits(v) for v in schema]
    return schema


def is_transient(err: BaseException) -> bool:
    import openai

    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 429) or err.status_code >= 500
    return False


class RetryAfterOrBackoff:
    """Tenacity wait: exponential backoff with jitter, never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float):
        from tenacity import wait_exponential_jitter

        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def __call__(self, retry_state) -> float:
        delay = self.backoff(retry_state)
        outcome = retry_state.outcome
        err = outcome.exception() if outcome is not None else None
        asked = retry_after_seconds(getattr(err, "response", None))
        if asked is not None:
            delay = max(delay, min(asked, RETRY_AFTER_CEILING_S))
        return delay


def retry_after_seconds(response) -> float | None:
    """Seconds a response asks the client to wait (`retry-after-ms`, `retry-after` as seconds or
    an HTTP date), or None."""
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """PIL image parts become base64 data URLs, a video part its frames as images (the protocol has
    no video part, see OpenAIChatBackend); everything else passes through."""
    content = message.get("content")
    if not isinstance(content, list):
        return message
    parts = []
    for part in content:
        if part.get("type") == "image" and hasattr(part.get("image"), "save"):
            parts.append({"type": "image_url", "image_url": {"url": image_data_url(part["image"])}})
        elif part.get("type") == "video" and isinstance(part.get("video"), list):
            parts.extend({"type": "image_url", "image_url": {"url": image_data_url(f)}} for f in part["video"])
        else:
            parts.append(part)
    return {**message, "content": parts}


def image_data_url(image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _log_retry(retry_state) -> None:
    err = retry_state.outcome.exception() if retry_state.outcome else None
    log.warning(
        "chat request failed (%s), retry %d in %.2fs",
        type(err).__name__,
        retry_state.attempt_number,
        retry_state.upcoming_sleep,
    )


def _short(err: BaseException) -> str:
    return str(getattr(err, "message", None) or err)[:300]
