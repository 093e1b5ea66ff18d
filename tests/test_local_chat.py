"""The local transformers backend on tiny random-weight Qwen2 and Qwen2.5-VL, through the real
load path (save_pretrained folder -> from_pretrained), batched generation and parsing."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from agents.backends.chat import ChatModelConfig, ChatRequest
from agents.backends.grammar import GrammarSet
from agents.backends.make import make_chat_backend


class Review(BaseModel):
    verdict: Literal["accept", "reject"]
    score: float = Field(ge=0, le=1)
    reason: str = Field(min_length=1, max_length=40)
    nouns: list[str] = Field(min_length=1, max_length=3)


@pytest.fixture(scope="module")
def text_backend(tmp_path_factory):
    cache = tmp_path_factory.mktemp("vde-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VDE_CACHE", str(cache))
        backend = make_chat_backend(ChatModelConfig(model="tiny:qwen2", max_new_tokens=96, concurrency=3))
        backend.setup()
        yield backend


def _ask(text, model=Review, **kw):
    return ChatRequest(messages=[{"role": "user", "content": text}], response_model=model, **kw)


def test_constrained_batch_gives_schema_valid_answers(text_backend):
    requests = [_ask("is the mask right? " * k) for k in range(1, 6)]  # 5 prompts, 2 batches, ragged
    results = text_backend.chat_batch(requests)
    assert len(results) == 5
    for result in results:
        assert result.ok, result.detail
        assert isinstance(result.parsed, Review) and 1 <= len(result.parsed.reason) <= 40
        assert result.completion_tokens > 5
    prompt_tokens = [r.prompt_tokens for r in results]
    assert prompt_tokens == sorted(prompt_tokens) and len(set(prompt_tokens)) == 5  # padding not counted


def test_generation_is_deterministic(text_backend):
    first = text_backend.chat_batch([_ask("same prompt")])[0].text
    again = text_backend.chat_batch([_ask("other"), _ask("same prompt")])[1].text
    assert first == again


def test_unconstrained_answers_go_through_the_parse_path(tmp_path, monkeypatch):
    monkeypatch.setenv("VDE_CACHE", str(tmp_path))
    backend = make_chat_backend(ChatModelConfig(model="tiny:qwen2", constrained=False, max_new_tokens=12))
    results = backend.chat_batch([_ask("judge"), ChatRequest(messages=[{"role": "user", "content": "hi"}])])
    assert results[0].error == "parse_failed"  # random weights do not write JSON on their own
    assert results[1].ok and results[1].completion_tokens <= 12


def test_text_model_refuses_images_as_a_result_not_an_exception(text_backend):
    image = Image.new("RGB", (32, 32))
    request = ChatRequest(messages=[{"role": "user", "content": [{"type": "image", "image": image}]}])
    [result] = text_backend.chat_batch([request])
    assert result.error == "generation_failed" and "cannot read images" in result.detail


def test_vision_model_reads_images_in_a_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("VDE_CACHE", str(tmp_path))
    backend = make_chat_backend(ChatModelConfig(model="tiny:qwen2.5-vl", max_new_tokens=96, concurrency=2))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, 96, 3), dtype=np.uint8)) for h in (64, 96)]
    requests = [
        ChatRequest(
            messages=[{"role": "user", "content": [{"type": "image", "image": im}, {"type": "text", "text": "judge"}]}],
            response_model=Review,
        )
        for im in images
    ]
    results = backend.chat_batch(requests)
    assert all(r.ok for r in results), [r.detail for r in results]
    assert results[0].prompt_tokens != results[1].prompt_tokens  # image tokens follow the image size


def test_schema_machine_forces_a_json_skeleton(text_backend):
    grammars = GrammarSet(text_backend._tokenizer)
    for seed in range(3):
        machine = grammars.matcher(Review.model_json_schema(), budget=60)
        tokens = []
        rng = np.random.default_rng(seed)
        while not machine.done:
            allowed = np.flatnonzero(machine.allowed().numpy())
            token = int(rng.choice(allowed))  # any allowed choice must stay valid JSON
            tokens.append(token)
            machine.advance(token)
        answer = json.loads(text_backend._tokenizer.decode(tokens))
        assert set(answer) == {"verdict", "score", "reason", "nouns"} and 1 <= len(answer["nouns"]) <= 3
        assert Review.model_validate(answer)
        assert len(tokens) < 60  # the longest answer the grammar allows fits the budget


def test_requests_of_concurrent_shards_join_one_running_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("VDE_CACHE", str(tmp_path))
    backend = make_chat_backend(ChatModelConfig(model="tiny:qwen2", max_new_tokens=64, concurrency=8))
    backend.setup()
    barrier = threading.Barrier(4)

    def shard(k):  # one shard in flight on the actor: its own thread, two requests
        barrier.wait()
        return backend.chat_batch([_ask(f"shard {k} item {i}") for i in range(2)])

    with ThreadPoolExecutor(4) as pool:
        answers = [r for batch in pool.map(shard, range(4)) for r in batch]
    assert len(answers) == 8 and all(r.ok for r in answers), [r.detail for r in answers]
    assert backend.loop.largest_batch > 2  # requests of several shards decoded in one forward pass
    alone = backend.chat_batch([_ask("shard 2 item 1")])[0]
    assert alone.text == answers[5].text  # joining a running batch does not change an answer


def test_teardown_ends_the_decode_loop_thread_and_a_new_setup_answers_again(tmp_path, monkeypatch):
    monkeypatch.setenv("VDE_CACHE", str(tmp_path))
    backend = make_chat_backend(ChatModelConfig(model="tiny:qwen2", max_new_tokens=96, concurrency=2))
    first = backend.chat_batch([_ask("before")])[0]
    thread = backend.loop._thread
    assert first.ok and thread is not None and thread.is_alive()
    backend.teardown()  # a daemon thread left inside torch at interpreter exit can abort the process
    assert not thread.is_alive()
    again = backend.chat_batch([_ask("before")])[0]  # loads again, with a loop of its own
    assert again.ok and again.text == first.text
    backend.teardown()
