"""Question writer: motion captions -> MotionBench MCQs, SFT and preference data; object captions
-> VideoRefer-style object questions.

Reads `clips`, `objects`, `captions` (and `reviews`, to skip rejected objects); writes `mcqs`,
`sft`, `preferences`. One chat request per motion caption (a clip-level `motion` or
`refined_detailed` caption, else the clip's manifest caption, recorded as `caption_id`
"clip:<clip_id>") and one per clip with captioned objects.

Every question keeps the caption it came from and its evidence span, which must appear in that
caption (else `ungrounded_answer`). Object questions name objects as [k] in the model's text; the
writer turns each into a `<region>` placeholder and lists the object ids in the same order, so a
VideoRefer export has exactly one region per object.

Letters are balanced as written: models favour some answer letters, so each question's options are
shuffled by a permutation seeded by its id and the stage `seed` (stable run after run), and the
correct option of a four-option question is then placed by the shard's letter rotation
(`agents.answer_letters`); the row keeps the model's own letter in `generated_answer`, and
`mcq_filters` reports both distributions. Preference pairs are made from the grounded questions
by `agents.preference_pairs` (the rejected answer changes one motion fact of the correct one).

Example row: {"category": "RC", "question": "How many times does the ball bounce?", "options":
["once", "twice", "three times", "four times"], "answer": "B", "evidence": "bounces twice", ...}
"""

from __future__ import annotations

import random
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from agents.backends.chat import ChatResult
from agents.answer_letters import balance_letters, shard_start
from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig, Prompt, load_prompt
from agents.preference_pairs import preference_pair
from schemas import Lineage, McqRow, PreferenceRow, SftRow, stable_id

LETTERS = "ABCD"
ErrorType = Literal["wrong_direction", "wrong_order", "wrong_count", "wrong_object"]


class MotionQuestion(BaseModel):
    category: Literal["MR", "LM", "CM", "MO", "AO", "RC"]
    question: str = Field(min_length=3)
    options: list[str] = Field(min_length=3, max_length=4)
    answer: Literal["A", "B", "C", "D"]
    evidence: str = Field(min_length=1)


class SftItem(BaseModel):
    question: str = Field(min_length=3)
    answer: str = Field(min_length=1)
    rationale: str = Field(min_length=1)


class PreferenceItem(BaseModel):
    question: str = Field(min_length=3)
    chosen: str = Field(min_length=1)
    rejected: str = Field(min_length=1)
    error_type: ErrorType


class MotionAnswer(BaseModel):
    questions: list[MotionQuestion]
    sft: list[SftItem] = Field(default_factory=list)
    preferences: list[PreferenceItem] = Field(default_factory=list)


class ObjectQuestion(BaseModel):
    category: Literal["basic", "reasoning", "future"]
    question: str = Field(min_length=3)
    options: list[str] = Field(min_length=3, max_length=4)
    answer: Literal["A", "B", "C", "D"]
    evidence: str = Field(min_length=1)


class ObjectAnswer(BaseModel):
    questions: list[ObjectQuestion]


class QuestionWriterConfig(ChatStageConfig):
    prompt: str = Field("question_writer.motion.v1", description="motion prompt file under agents/prompts/")
    object_prompt: str = Field("question_writer.object.v1", description="prompt file under agents/prompts/")
    object_questions: bool = Field(True, description="also write object-level questions")
    max_tokens: int = Field(2048, ge=64)
    temperature: float = Field(0.2, ge=0, le=2)
    seed: int = Field(0, description="seed of the option shuffle that balances answer letters")


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def shuffle_order(question_id: str, n: int, seed: int) -> list[int]:
    """The seeded option order of a question: position i shows the model's option order[i]."""
    order = list(range(n))
    random.Random(stable_id("letter_shuffle", seed, question_id)).shuffle(order)
    return order


def split_tokens(total: int, parts: int) -> list[int]:
    """Spread a call's tokens over the rows it made, so that sums over rows stay exact."""
    if parts <= 0:
        return []
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class QuestionWriter(ChatStage):
    name = "question_writer"
    config_model = QuestionWriterConfig
    reads = ("clips", "objects", "captions", "reviews")
    writes = ("mcqs", "sft", "preferences")
    version = "2"
    config: QuestionWriterConfig

    def setup(self) -> None:
        super().setup()
        self.object_prompt = load_prompt(self.config.object_prompt)

    # ----- the batch -----
    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        captions = batch.by_clip("captions")
        objects = batch.by_clip("objects")
        rejected = {r.object_id for r in batch.rows("reviews") if r.verdict == "reject"}
        asks: list[Ask] = []  # context: (kind, clip, payload)
        for clip in batch.clips:
            sources = motion_sources(clip, captions.get(clip.clip_id, []))
            if not sources:
                out.reject(self.name, clip.clip_id, "no_motion_caption", "no motion caption to ask about", clip.clip_id)
            asks += [self._ask("motion", clip, source) for source in sources]
            described = described_objects(objects.get(clip.clip_id, []), captions.get(clip.clip_id, []), rejected)
            if self.config.object_questions and described:
                asks.append(self._ask("object", clip, described))
        for ask, result in self.ask(asks, out):
            kind, clip, payload = ask.context
            if kind == "motion":
                self._motion_rows(out, clip, payload, result)
            else:
                self._object_rows(out, clip, payload, result)
        out.rows["mcqs"] = balance_letters(out.rows["mcqs"], shard_start(batch.clips))
        return out

    def _ask(self, kind: str, clip, payload: Any) -> Ask:
        if kind == "motion":
            prompt, model, item = self.prompt, MotionAnswer, payload[0]
            messages = prompt.messages(caption=payload[1])
        else:
            prompt, model, item = self.object_prompt, ObjectAnswer, f"objects:{clip.clip_id}"
            lines = [f"[{i}] {obj.label}: {caption.text}" for i, (obj, caption) in enumerate(payload, start=1)]
            messages = prompt.messages(objects="\n".join(lines))
        request = self.request(messages, model, prompt=prompt, temperature=self.config.temperature)
        return Ask(item, clip.clip_id, request, (kind, clip, payload))

    def _lineages(self, prompt: Prompt, result: ChatResult, rows: int) -> list[Lineage]:
        prompt_tokens = split_tokens(result.prompt_tokens, rows)
        completion_tokens = split_tokens(result.completion_tokens, rows)
        return [self.lineage(prompt=prompt, prompt_tokens=p, completion_tokens=c)
                for p, c in zip(prompt_tokens, completion_tokens, strict=True)]

    # ----- motion: MCQs, SFT, preferences -----
    def _motion_rows(self, out: StageOutput, clip, source: tuple[str, str], result: ChatResult) -> None:
        caption_id, caption = source
        answer: MotionAnswer = result.parsed  # type: ignore[assignment]
        rows: list[tuple[str, dict, type]] = []
        for q in answer.questions:
            fields = self._mcq_fields(out, clip.clip_id, caption_id, caption, q, q.question, [])
            if fields:
                rows.append(("mcqs", fields, McqRow))
        for s in answer.sft:
            answer_text = f"{s.answer.rstrip()} {s.rationale.strip()}"
            rows.append(("sft", {"sft_id": stable_id(self.name, "sft", caption_id, s.question, answer_text),
                                 "clip_id": clip.clip_id, "question": s.question, "answer": answer_text}, SftRow))
        # preference pairs come from the grounded questions, one motion fact changed by rule; the
        # model's own pairs (both sides written from the caption) are not used
        for _, q, _ in [r for r in rows if r[0] == "mcqs"]:
            pair = preference_pair(q["category"], q["options"], q["answer"])
            if pair:
                rows.append(("preferences", {"pair_id": stable_id(self.name, "pair", q["question_id"]),
                                             "clip_id": clip.clip_id, "question_id": q["question_id"],
                                             "question": q["question"], "chosen": pair[0], "rejected": pair[1],
                                             "error_type": pair[2]}, PreferenceRow))
        self._emit(out, clip.clip_id, self.prompt, result, rows)

    # ----- objects: basic / reasoning / future -----
    def _object_rows(self, out: StageOutput, clip, described: list, result: ChatResult) -> None:
        answer: ObjectAnswer = result.parsed  # type: ignore[assignment]
        rows = []
        for q in answer.questions:
            refs = [int(k) for k in re.findall(r"\[(\d+)\]", q.question)]
            item = stable_id(self.name, "object_question", clip.clip_id, q.question)
            if not refs:
                out.reject(self.name, item, "no_object_reference", q.question, clip.clip_id)
                continue
            if any(not 1 <= k <= len(described) for k in refs):
                out.reject(self.name, item, "unknown_object", f"refers to {refs}, {len(described)} objects", clip.clip_id)
                continue
            referred = [described[k - 1][1] for k in refs]
            # the evidence may come from any referred object's caption; that caption is the source
            source = next((c for c in referred if grounded(q.evidence, c.text)), referred[0])
            question = re.sub(r"\[(\d+)\]", "<region>", q.question)
            object_ids = [described[k - 1][0].object_id for k in refs]
            fields = self._mcq_fields(out, clip.clip_id, source.caption_id, source.text, q, question, object_ids)
            if fields:
                rows.append(("mcqs", fields, McqRow))
        self._emit(out, clip.clip_id, self.object_prompt, result, rows)

    def _mcq_fields(self, out, clip_id, caption_id, caption, q, question, object_ids) -> dict | None:
        """Checks every question must pass before it becomes a row; a failure is a rejection."""
        question_id = stable_id(self.name, caption_id, q.category, question, *q.options)
        options = [o.strip() for o in q.options]
        if LETTERS.index(q.answer) >= len(options):
            out.reject(self.name, question_id, "answer_out_of_range", f"{q.answer} of {len(options)}", clip_id)
        elif len({normalise(o) for o in options}) != len(options) or not all(normalise(o) for o in options):
            out.reject(self.name, question_id, "duplicate_options", " | ".join(options), clip_id)
        elif not grounded(q.evidence, caption):
            out.reject(self.name, question_id, "ungrounded_answer", f"evidence {q.evidence!r} not in the caption", clip_id)
        else:
            out.counters[f"options_{len(options)}"] += 1
            order = shuffle_order(question_id, len(options), self.config.seed)
            answer = LETTERS[order.index(LETTERS.index(q.answer))]
            return {"question_id": question_id, "clip_id": clip_id, "object_ids": object_ids, "category": q.category,
                    "question": question.strip(), "options": [options[i] for i in order], "answer": answer,
                    "generated_answer": q.answer, "source": "llm", "caption_id": caption_id,
                    "evidence": q.evidence.strip()}
        return None

    def _emit(self, out: StageOutput, clip_id: str, prompt: Prompt, result: ChatResult, rows: list) -> None:
        if not rows:
            out.reject(self.name, stable_id(self.name, "empty", clip_id, result.text), "no_usable_items",
                       "the answer held no item that passed the checks", clip_id)
            return
        for (table, fields, model), lineage in zip(rows, self._lineages(prompt, result, len(rows)), strict=True):
            try:
                out.add(table, model.build(lineage, **fields))
                out.counters[f"{table}_written"] += 1
            except ValidationError as err:
                item = next(iter(fields.values()))
                out.reject(self.name, item, "invalid_row", str(err.errors()[0]["msg"]), clip_id)


def motion_sources(clip, captions: list) -> list[tuple[str, str]]:
    """(caption_id, text) of every clip-level motion caption, else the manifest caption."""
    clip_level = sorted(
        (c for c in captions if c.object_id is None and c.kind in ("motion", "refined_detailed")),
        key=lambda c: c.caption_id,
    )
    if clip_level:
        return [(c.caption_id, c.text) for c in clip_level]
    return [(f"clip:{clip.clip_id}", clip.caption)] if clip.caption else []


def described_objects(objects: list, captions: list, rejected: set[str]) -> list[tuple[Any, Any]]:
    """(object, best caption) for each object not rejected by review: refined over raw."""
    rank = {"refined_detailed": 0, "object_detailed": 1}
    best: dict[str, Any] = {}
    for c in sorted(captions, key=lambda c: (rank.get(c.kind, 9), c.caption_id)):
        if c.object_id and c.kind in rank:
            best.setdefault(c.object_id, c)
    return [(o, best[o.object_id]) for o in sorted(objects, key=lambda o: o.object_id)
            if o.object_id in best and o.object_id not in rejected]


def grounded(evidence: str, caption: str) -> bool:
    """The evidence span appears in the caption (case, punctuation and spacing aside)."""
    span = normalise(evidence)
    return bool(span) and span in normalise(caption)

