"""The Batch API backend against the loopback batch server, through the real `openai` client."""

from __future__ import annotations

import json

import pytest
from openai import OpenAI
from pydantic import BaseModel

from agents.backends.chat import ChatRequest
from agents.backends.openai_batch import BatchPending, OpenAIBatchBackend
from tests.fakes.batch_server import BatchServer


class Verdict(BaseModel):
    answer: str


def echo(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    if "explode" in prompt:
        raise ValueError("content policy")
    if "garble" in prompt:
        return "not json at all"
    return json.dumps({"answer": prompt.upper()})


def requests(*prompts: str) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": p}], response_model=Verdict) for p in prompts]


def backend(server: BatchServer, state_dir, **kw) -> OpenAIBatchBackend:
    client = OpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)
    return OpenAIBatchBackend("gpt-4o-mini", state_dir, client=client, poll_interval_s=0.01, **kw)


def test_results_fold_back_in_order_with_tokens(tmp_path):
    with BatchServer(echo, polls_before_done=2) as server:
        results = backend(server, tmp_path / "_batches").chat_batch(requests("one", "two", "garble", "explode"))
    assert [r.parsed.answer for r in results[:2]] == ["ONE", "TWO"]
    assert results[0].completion_tokens > 0 and results[0].prompt_tokens > 0
    assert results[2].error == "parse_failed"
    assert results[3].error == "api_error" and "content policy" in results[3].detail and not results[3].retryable
    [state_file] = (tmp_path / "_batches").glob("*.json")
    state = json.loads(state_file.read_text())
    assert state["batches"][0]["batch_id"].startswith("batch-") and state["statuses"] == ["completed"]


def test_resume_after_interruption_by_batch_id(tmp_path):
    with BatchServer(echo, polls_before_done=5) as server:
        impatient = backend(server, tmp_path, max_wait_s=0)
        with pytest.raises(BatchPending, match="run again to resume"):
            impatient.chat_batch(requests("alpha", "beta"))
        resumed = backend(server, tmp_path).chat_batch(requests("alpha", "beta"))  # a fresh process, same requests
        assert [r.parsed.answer for r in resumed] == ["ALPHA", "BETA"]
        assert server.created == {"files": 1, "batches": 1}  # nothing submitted twice
        backend(server, tmp_path).chat_batch(requests("gamma"))
        assert server.created == {"files": 2, "batches": 2}  # different requests, a new batch


def test_split_into_several_batch_files(tmp_path):
    with BatchServer(echo) as server:
        results = backend(server, tmp_path, max_requests_per_file=2).chat_batch(requests("a", "b", "c"))
        assert server.created["batches"] == 2
    assert [r.parsed.answer for r in results] == ["A", "B", "C"]


def test_failed_batch_gives_retryable_errors(tmp_path):
    with BatchServer(echo, fail_batches=True) as server:
        results = backend(server, tmp_path).chat_batch(requests("a", "b"))
    assert all(r.error == "api_error" and r.retryable and "failed" in r.detail for r in results)


def test_request_lines_carry_schema_and_images(tmp_path):
    from PIL import Image

    request = ChatRequest(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is it?"}, {"type": "image", "image": Image.new("RGB", (4, 4))}]}],
        response_model=Verdict, seed=3)
    line = OpenAIBatchBackend("m", tmp_path, client=object()).request_line(0, request)
    assert line["url"] == "/v1/chat/completions" and line["custom_id"].startswith("0-")
    body = line["body"]
    assert body["response_format"]["json_schema"]["name"] == "Verdict" and body["seed"] == 3
    assert body["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
