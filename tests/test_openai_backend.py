"""The OpenAI-compatible backend, with the real `openai` client, against a loopback server."""

import json
import logging
from typing import Literal

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from agents.backends.chat import ChatModelConfig, ChatRequest
from agents.backends.make import make_chat_backend
from tests.fakes.openai_server import Fail, FakeOpenAIServer, Reply

KEY = "sk-test-SECRET-0123456789"


@pytest.fixture
def openai_server():
    with FakeOpenAIServer() as server:
        yield server


class Verdict(BaseModel):
    verdict: Literal["accept", "reject"]
    score: float = Field(ge=0, le=1)
    reason: str = Field("", max_length=50)


def _backend(server, monkeypatch, **overrides):
    monkeypatch.setenv("VDE_TEST_KEY", KEY)
    settings = dict(
        backend="openai", model="gpt-4o", base_url=server.base_url, api_key_env="VDE_TEST_KEY",
        concurrency=4, timeout_s=2.0, max_retries=3, parse_retries=1,
        backoff_initial_s=0.01, backoff_max_s=0.05,
    )
    backend = make_chat_backend(ChatModelConfig(**{**settings, **overrides}))
    backend.setup()
    return backend


def _request(**kw):
    return ChatRequest(messages=[{"role": "user", "content": "judge"}], response_model=Verdict, **kw)


def test_structured_output_sends_schema_and_records_usage(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch)
    openai_server.script(Reply('{"verdict": "accept", "score": 0.9}', prompt_tokens=40, completion_tokens=9))
    [result] = backend.chat_batch([_request()])
    assert result.ok and result.parsed == Verdict(verdict="accept", score=0.9)
    assert (result.prompt_tokens, result.completion_tokens, result.attempts) == (40, 9, 1)
    body = openai_server.calls[0].body
    assert body["model"] == "gpt-4o"
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == {"verdict", "score", "reason"} and schema["additionalProperties"] is False
    assert "maxLength" not in json.dumps(schema)  # strict mode refuses length limits
    assert openai_server.calls[0].headers["authorization"] == f"Bearer {KEY}"


def test_default_answer_follows_requested_schema(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch)
    results = backend.chat_batch([_request() for _ in range(6)])
    assert all(r.ok for r in results) and len(openai_server.calls) == 6


def test_429_waits_for_retry_after(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch)
    openai_server.script(Fail(429, retry_after=0.6), Reply('{"verdict": "reject", "score": 0.1}'))
    [result] = backend.chat_batch([_request()])
    assert result.ok and result.attempts == 2
    first, second = openai_server.calls
    assert second.at - first.at >= 0.6  # the backoff alone would be ~0.02 s


def test_500_retries_with_backoff_then_succeeds(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch, backoff_initial_s=0.1, backoff_max_s=1.0)
    openai_server.script(Fail(500), Fail(503), Reply('{"verdict": "accept", "score": 1}'))
    [result] = backend.chat_batch([_request()])
    assert result.ok and result.attempts == 3 and len(openai_server.calls) == 3
    gaps = [b.at - a.at for a, b in zip(openai_server.calls, openai_server.calls[1:], strict=False)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # exponential: initial, then twice that


def test_persistent_500_gives_retryable_api_error(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch, max_retries=2)
    openai_server.responder = lambda body: Fail(500)
    [result] = backend.chat_batch([_request()])
    assert result.error == "api_error" and result.retryable and len(openai_server.calls) == 3


def test_400_is_not_retried(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch)
    openai_server.script(Fail(400, message="bad schema"))
    [result] = backend.chat_batch([_request()])
    assert result.error == "api_rejected" and not result.retryable
    assert "400" in result.detail and len(openai_server.calls) == 1


def test_slow_answer_times_out_and_is_retried(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch, timeout_s=0.3, max_retries=1)
    openai_server.script(Reply(delay_s=1.0), Reply('{"verdict": "accept", "score": 0.5}'))
    [result] = backend.chat_batch([_request()])
    assert result.ok and result.attempts == 2 and len(openai_server.calls) == 2


def test_malformed_json_is_reasked_then_parse_failed(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch, parse_retries=1)
    openai_server.script(Reply('{"verdict": "acc'), Reply('{"verdict": "maybe", "score": 3}'))
    [result] = backend.chat_batch([_request()])
    assert result.error == "parse_failed" and len(openai_server.calls) == 2
    # both attempts are paid for: the last one's tokens on the result, the re-asked one's as waste
    assert (result.prompt_tokens, result.wasted_prompt_tokens) == (11, 11)


def test_one_bad_request_does_not_break_the_batch(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch, concurrency=1)
    openai_server.script(Reply('{"verdict": "accept", "score": 0.2}'), Fail(422), Reply("not json at all"),
                         Reply("still not json"), Reply('{"verdict": "reject", "score": 0.0}'))
    results = backend.chat_batch([_request() for _ in range(4)])
    assert [r.error for r in results] == [None, "api_rejected", "parse_failed", None]


def test_images_travel_as_data_urls(openai_server, monkeypatch):
    backend = _backend(openai_server, monkeypatch)
    image = Image.fromarray(np.full((16, 16, 3), 200, np.uint8))
    content = [{"type": "image", "image": image}, {"type": "text", "text": "what is it?"}]
    [result] = backend.chat_batch([ChatRequest(messages=[{"role": "user", "content": content}])])
    assert result.ok and result.text == "A plain answer."
    part = openai_server.calls[0].body["messages"][0]["content"][0]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_key_never_reaches_results_config_or_logs(openai_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    cfg_backend = _backend(openai_server, monkeypatch)
    openai_server.script(Fail(429, retry_after=0), Fail(400))
    results = cfg_backend.chat_batch([_request(), _request()])
    dumped = json.dumps([vars(r) | {"parsed": None} for r in results]) + cfg_backend.cfg.model_dump_json()
    assert KEY not in dumped
    assert KEY not in caplog.text
    assert all(call.headers["authorization"].endswith(KEY) for call in openai_server.calls)


def test_missing_key_for_the_openai_api_fails_at_setup(monkeypatch):
    from agents.backends.models import ModelNotFound

    monkeypatch.delenv("VDE_ABSENT_KEY", raising=False)
    backend = make_chat_backend(ChatModelConfig(backend="openai", model="gpt-4o", api_key_env="VDE_ABSENT_KEY"))
    with pytest.raises(ModelNotFound, match=r"gpt-4o.*\$VDE_ABSENT_KEY"):
        backend.setup()


def test_self_hosted_server_is_checked_at_setup(monkeypatch):
    from agents.backends.models import ModelNotFound
    from tests.fakes.openai_server import FakeOpenAIServer

    with FakeOpenAIServer(models=("Qwen/Qwen2.5-7B-Instruct",)) as server:
        good = ChatModelConfig(backend="openai", model="Qwen/Qwen2.5-7B-Instruct", base_url=server.base_url)
        make_chat_backend(good).setup()
        wrong = good.model_copy(update={"model": "OpenGVLab/InternVL2-26B"})
        with pytest.raises(ModelNotFound, match="not 'OpenGVLab/InternVL2-26B'.*vllm serve"):
            make_chat_backend(wrong).setup()
        url = server.base_url
    with pytest.raises(ModelNotFound, match="no OpenAI-compatible server answers"):
        make_chat_backend(good.model_copy(update={"base_url": url, "timeout_s": 1.0})).setup()
    assert not server.calls  # the checks are GETs, not chat calls
