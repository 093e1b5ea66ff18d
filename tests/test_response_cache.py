from pydantic import BaseModel

from agents.backends.cache import CachedChatBackend, ResponseCache
from agents.backends.chat import ChatRequest, ScriptedChatBackend


class Nouns(BaseModel):
    nouns: list[str]


def _request(text, model=Nouns):
    return ChatRequest(messages=[{"role": "user", "content": text}], response_model=model)


def test_replay_is_free_and_identical(tmp_path):
    inner = ScriptedChatBackend(lambda r: '{"nouns": ["dog"]}', model="m")
    backend = CachedChatBackend(inner, ResponseCache(tmp_path), namespace="analyzer/v1")
    first = backend.chat_batch([_request("a dog runs"), _request("a cat sits")])
    again = CachedChatBackend(ScriptedChatBackend(lambda r: "never called", model="m"),
                              ResponseCache(tmp_path), namespace="analyzer/v1")
    second = again.chat_batch([_request("a cat sits"), _request("a dog runs")])
    assert len(inner.requests) == 2 and again.inner.requests == []
    assert [r.parsed for r in second] == [first[1].parsed, first[0].parsed]
    assert all(r.cached for r in second)
    assert second[1].prompt_tokens == first[0].prompt_tokens  # rows stay identical on replay


def test_failures_are_never_cached(tmp_path):
    answers = iter(["not json at all", '{"nouns": ["dog"]}'])
    inner = ScriptedChatBackend(lambda r: next(answers), model="m")
    backend = CachedChatBackend(inner, ResponseCache(tmp_path), namespace="analyzer/v1")
    assert backend.chat_batch([_request("a dog")])[0].error == "parse_failed"
    ok = backend.chat_batch([_request("a dog")])[0]
    assert ok.ok and not ok.cached and len(inner.requests) == 2
    assert backend.chat_batch([_request("a dog")])[0].cached


def test_key_depends_on_model_prompt_version_and_input(tmp_path):
    cache = ResponseCache(tmp_path)
    base = cache.key(_request("x"), "m", "r", "analyzer/v1")
    assert base == cache.key(_request("x"), "m", "r", "analyzer/v1")
    assert len({base, cache.key(_request("y"), "m", "r", "analyzer/v1"),
                cache.key(_request("x"), "m2", "r", "analyzer/v1"),
                cache.key(_request("x"), "m", "r2", "analyzer/v1"),
                cache.key(_request("x"), "m", "r", "analyzer/v2"),
                cache.key(_request("x", model=None), "m", "r", "analyzer/v1")}) == 6


def test_many_answers_stay_a_few_files_and_old_json_answers_replay(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put_many({f"{i:064x}": {"text": '{"nouns": ["dog"]}', "prompt_tokens": i} for i in range(500)})
    assert len(list(tmp_path.rglob("*"))) <= 3
    assert cache.get(f"{7:064x}")["prompt_tokens"] == 7 and cache.get("f" * 64) is None
    legacy = tmp_path / "ab" / ("ab" + "0" * 62 + ".json")
    legacy.parent.mkdir()
    legacy.write_text('{"text": "{\\"nouns\\": []}", "prompt_tokens": 3}')
    assert ResponseCache(tmp_path).get("ab" + "0" * 62)["prompt_tokens"] == 3


def test_cache_travels_to_another_process_without_its_connection(tmp_path):
    import pickle

    cache = ResponseCache(tmp_path)
    cache.put_many({"k" * 64: {"text": "{}"}})
    again = pickle.loads(pickle.dumps(cache))
    assert again.get("k" * 64) == {"text": "{}"}
