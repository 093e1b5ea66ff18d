"""An LLM stage in OpenAI Batch API mode, end to end against the loopback batch server: the rows
equal those of online answers, batch ids live under <dataset>/_batches/<stage>/, and a run that
stops while its batch is pending resumes that batch by id instead of paying for a new one."""

from __future__ import annotations

import json
import re

import pytest

from agents.backends.chat import ChatModelConfig
from agents.backends.make import make_chat_backend
from agents.backends.openai_batch import BatchPending, OpenAIBatchBackend
from agents.question_writer import QuestionWriter
from tests.fakes.batch_server import BatchServer
from tests.helpers_dataset import batch_from_store, write_dataset

READS = ("clips", "objects", "captions", "reviews")


def answer(body: dict) -> str:
    """One question for each category the request asks for, grounded in the caption's first words."""
    content = body["messages"][-1]["content"]
    caption = content.split('"""')[1]
    evidence = " ".join(caption.split()[:3])
    asked = re.findall(r"^\s+(MR|LM|AO|RC|MO|CM) ", content, flags=re.M)
    return json.dumps({"questions": [{"category": c, "question": f"Which {c} answer fits the video?",
                                      "options": [evidence, "nothing moves", "it spins", "it flies away"],
                                      "answer": "A", "evidence": evidence} for c in asked],
                       "sft": [{"question": "What moves?", "answer": evidence, "rationale": "The caption says so."}],
                       "preferences": []})


def writer(server: BatchServer, **chat) -> QuestionWriter:
    cfg = {"backend": "openai-batch", "model": "gpt-4o-mini", "base_url": server.base_url, "batch_poll_s": 0.01,
           **chat}
    return QuestionWriter({"chat": cfg, "object_questions": False})


@pytest.fixture()
def dataset(tmp_path):
    return write_dataset(tmp_path / "ds")


def test_config_builds_the_batch_backend(tmp_path):
    backend = make_chat_backend(ChatModelConfig(backend="openai-batch", model="m", batch_poll_s=2), tmp_path)
    assert isinstance(backend, OpenAIBatchBackend) and backend.poll_interval_s == 2 and backend.state_dir == tmp_path


def test_stage_in_batch_mode_writes_rows_with_tokens(dataset):
    batch = batch_from_store(dataset.root, READS)
    with BatchServer(answer, polls_before_done=2) as server:
        out = writer(server)(batch)
        assert server.created == {"files": 1, "batches": 1}  # both captions in one batch
    assert len(out.rows["mcqs"]) >= 4 and len(out.rows["sft"]) == 2 and not out.rejections
    assert all(r.prompt_tokens + r.completion_tokens > 0 for r in out.rows["mcqs"])
    assert out.counters["completion_tokens"] == sum(r.completion_tokens for t in ("mcqs", "sft", "preferences")
                                                    for r in out.rows[t])
    [state] = (dataset.root / "_batches" / "question_writer").glob("*.json")
    assert json.loads(state.read_text())["statuses"] == ["completed"]


def test_resume_after_a_crash_by_batch_id(dataset):
    batch = batch_from_store(dataset.root, READS)
    with BatchServer(answer, polls_before_done=3) as server:
        with pytest.raises(BatchPending):  # the run stops while the batch is still running
            writer(server, batch_max_wait_s=0)(batch)
        assert server.created["batches"] == 1
        resumed = writer(server)(batch)  # the same command again, in a fresh process
        assert server.created == {"files": 1, "batches": 1}  # picked up by id, nothing paid twice
        online_like = writer(server)(batch)  # a third run: answered from the response cache
        assert server.created["batches"] == 1
    ids = lambda out: sorted(r.question_id for r in out.rows["mcqs"])  # noqa: E731
    assert len(ids(resumed)) >= 4 and ids(resumed) == ids(online_like)
    assert online_like.counters["chat_cached"] == 2


def test_a_stage_that_streams_clip_by_clip_sends_one_batch_job_per_shard(dataset):
    """The reviewer sends an online model each clip's asks as soon as they are built; the Batch
    API gets the whole shard as one job (a job per clip would multiply files and waits)."""
    from agents.reviewer import MaskReviewer

    verdict = json.dumps({"verdict": "accept", "score": 0.9, "reason": "the mask follows the object"})
    batch = batch_from_store(dataset.root, ("objects", "captions"))
    clips = {r.clip_id for r in batch.tables["objects"]}
    cfg = {"backend": "openai-batch", "model": "gpt-4o-mini", "base_url": "", "batch_poll_s": 0.01}
    with BatchServer(lambda body: verdict, polls_before_done=1) as server:
        reviewer = MaskReviewer({"chat": {**cfg, "base_url": server.base_url}})
        out = reviewer(batch)
        assert server.created == {"files": 1, "batches": 1}
    reviewed = {r.clip_id for r in out.rows["reviews"]}
    assert len(clips) == 2 and reviewed == clips and out.counters["chat_calls"] >= 2
