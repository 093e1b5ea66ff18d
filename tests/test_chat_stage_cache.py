"""The response cache wired into every chat stage: a rerun replays completed calls for free,
with identical rows; failures are never cached; the flag does not change the fingerprint."""

from __future__ import annotations

import json

from agents.analyzer import CaptionAnalyzer
from agents.base import Batch
from tests.fakes.openai_server import Fail, FakeOpenAIServer, Reply
from tests.helpers_dataset import make_clip

CAPTIONS = ["A red ball rolls left.", "A dog jumps over a log.", "A cube slides right."]


def clips():
    return [make_clip(f"clip{i}", "folder", 32, 32, 8, caption) for i, caption in enumerate(CAPTIONS)]


def answer(body: dict) -> Reply:
    caption = body["messages"][-1]["content"].split('"""')[1]
    noun = caption.split()[2].lower()
    return Reply(json.dumps({"nouns": [noun], "phrases": [f"the {noun}"]}), prompt_tokens=len(caption),
                 completion_tokens=5)


def analyzer(server: FakeOpenAIServer, **extra) -> CaptionAnalyzer:
    chat = {"backend": "openai", "model": "m", "base_url": server.base_url, "max_retries": 0}
    return CaptionAnalyzer({"chat": chat, **extra})


def rows_of(out):
    return [(r.phrase_id, r.text, r.prompt_tokens, r.completion_tokens) for r in out.rows["phrases"]]


def test_second_run_makes_no_calls_and_gives_identical_rows(tmp_path):
    batch = Batch(tmp_path, tables={"clips": clips()})
    with FakeOpenAIServer(answer) as server:
        first = analyzer(server)(batch)
        assert len(server.calls) == 3
        second = analyzer(server)(batch)  # a fresh actor: a rerun or a resume
        assert len(server.calls) == 3  # every answer came from the cache
    assert rows_of(first) == rows_of(second) and len(rows_of(first)) == 6
    assert second.counters["chat_cached"] == 3 and first.counters["chat_cached"] == 0
    # replayed tokens were spent by the first run: counted apart, never as spent again
    assert second.counters["replayed_prompt_tokens"] == first.counters["prompt_tokens"] > 0
    assert second.counters["prompt_tokens"] == 0 and first.counters["replayed_prompt_tokens"] == 0
    cached = sorted(p.name for p in (tmp_path / "_cache" / "chat").iterdir())
    assert cached[0] == "responses.sqlite3" and len(cached) <= 3  # one database (and its WAL), not a file per answer


def test_a_failed_answer_is_not_cached_and_is_asked_again(tmp_path):
    batch = Batch(tmp_path, tables={"clips": clips()})
    with FakeOpenAIServer(answer) as server:
        server.script(Fail(400, message="refused"))  # the first request is refused, not retried
        first = analyzer(server, chat={"backend": "openai", "model": "m", "base_url": server.base_url,
                                       "max_retries": 0, "concurrency": 1})(batch)
        assert [r.reason for r in first.rejections] == ["api_rejected"]
        second = analyzer(server)(batch)
        assert len(server.calls) == 4  # three first, then only the refused one again
    assert not second.rejections and len(second.rows["phrases"]) == 6
    assert second.counters["chat_cached"] == 2


def test_an_edited_prompt_is_not_answered_from_the_cache(tmp_path, monkeypatch):
    import agents.chat_stage as cs

    batch = Batch(tmp_path, tables={"clips": clips()[:1]})
    with FakeOpenAIServer(answer) as server:
        analyzer(server)(batch)
        edited = cs.load_prompt("analyzer.v1")
        monkeypatch.setattr(cs, "load_prompt", lambda name: cs.Prompt(edited.name, edited.system, edited.user,
                                                                      edited.version + "-edited"))
        analyzer(server)(batch)
        assert len(server.calls) == 2


def test_cache_off_and_fingerprint(tmp_path):
    batch = Batch(tmp_path, tables={"clips": clips()[:1]})
    with FakeOpenAIServer(answer) as server:
        analyzer(server, cache=False)(batch)
        analyzer(server, cache=False)(batch)
        assert len(server.calls) == 2
        assert analyzer(server, cache=False).fingerprint() == analyzer(server).fingerprint()
    assert not (tmp_path / "_cache").exists()
