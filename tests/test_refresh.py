"""Incremental refresh with the real agents: adding clips, or changing one agent's config,
recomputes exactly what it should, counted in model calls at a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
from collections import Counter

from engine.run import main
from engine.store import DatasetStore
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.test_flaky_endpoint import scripted_answer

STAGES = "ingest,ground_truth,template_writer,analyzer,annotator,reviewer,question_writer"
LLM = ("analyzer", "annotator", "reviewer", "question_writer")
BY_SCHEMA = {"AnalyzerAnswer": "analyzer", "AnnotatorAnswer": "annotator", "ReviewAnswer": "reviewer",
             "MotionAnswer": "question_writer", "ObjectAnswer": "question_writer"}


class Calls:
    def __init__(self):
        self.by_stage: Counter = Counter()

    def __call__(self, body: dict):
        self.by_stage[BY_SCHEMA[body["response_format"]["json_schema"]["name"]]] += 1
        return Reply(scripted_answer(body), prompt_tokens=10, completion_tokens=5)


def _build(root, server, source, *extra, capsys=None):
    flags = []
    for stage in LLM:
        for key, value in {"backend": "openai", "model": "m", "base_url": server.base_url, "concurrency": 4}.items():
            flags += ["--set", f"{stage}.chat.{key}={value}"]
        flags += ["--set", f"{stage}.cache=false"]  # count recomputation, not cache misses
    assert main(["build-motionvid-qa", "--dataset", str(root), "--source", source, "--executor", "local",
                 "--stages", STAGES, "--shard-size", "2", *flags, *extra]) == 0


def test_refresh_runs_only_new_clips_and_changed_stages(tmp_path, capsys):
    calls = Calls()
    with FakeOpenAIServer(calls) as server:
        _build(tmp_path, server, "virtual:3")
        first = Counter(calls.by_stage)
        assert first["analyzer"] == 3 and first["annotator"] > 0 and first["question_writer"] > 0
        committed = {s: json.dumps(DatasetStore(tmp_path).commits(s), sort_keys=True) for s in STAGES.split(",")}

        calls.by_stage.clear()
        _build(tmp_path, server, "virtual:3")
        assert sum(calls.by_stage.values()) == 0  # nothing new, nothing changed: no model call

        calls.by_stage.clear()
        _build(tmp_path, server, "virtual:4")  # one more scene: one new shard
        assert calls.by_stage["analyzer"] == 1
        assert calls.by_stage["question_writer"] <= 2  # motion + object questions of that one clip
        writer_calls = first["question_writer"] + calls.by_stage["question_writer"]
        for stage in STAGES.split(","):  # the old shards' commits are untouched
            old = json.loads(committed[stage])
            now = DatasetStore(tmp_path).commits(stage)
            assert all(now[shard] == record for shard, record in old.items()), stage

        capsys.readouterr()
        _build(tmp_path, server, "virtual:4", "--set", "question_writer.max_tokens=1000", "--dry-run")
        plan = capsys.readouterr().out
        assert "question_writer" in plan and "4 clips to run (4 config changed)" in plan
        lines = {line.split()[0]: line for line in plan.splitlines()[1:]}
        for stage in ("ingest", "analyzer", "annotator", "reviewer"):
            assert "0 clips to run (nothing to do); 4 up to date" in lines[stage], lines[stage]

        calls.by_stage.clear()
        _build(tmp_path, server, "virtual:4", "--set", "question_writer.max_tokens=1000")
        assert set(calls.by_stage) == {"question_writer"}  # only the changed stage asks its model
        assert calls.by_stage["question_writer"] == writer_calls  # every clip, asked once again
