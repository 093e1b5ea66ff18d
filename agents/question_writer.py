"""Question writer: motion captions -> MotionBench MCQs, SFT and preference data; object captions
-> VideoRefer-style object questions.

Reads `clips`, `objects`, `captions` (and `reviews`, to skip rejected objects); writes `mcqs`,
`sft`, `preferences`. One chat request per motion caption (a clip-level `motion` or
`refined_detailed` caption, else the clip's manifest caption, recorded as `caption_id`
"clip:<clip_id>", else the motion captioner's caption) and one per clip with captioned objects.

The six MotionBench categories are enforced. The request names the categories the caption supports
(`supported_categories`: MR and MO always, LM with a place or direction word, AO with an order word,
RC with a count, CM when the clip has a camera-motion estimate or the caption mentions the camera)
and asks for exactly one question each; the estimate is in the prompt and counts as evidence.
What comes back is checked, and each failed rule is its own rejection: `unknown_category`,
`category_not_asked`, `duplicate_category` (a second question of a category), `wrong_option_count`
(every question has exactly four options), `answer_out_of_range`, `duplicate_options`,
`ungrounded_answer`, and `missing_category` for an asked category no question survived.

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
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, WithJsonSchema

from agents.answer_letters import balance_letters, shard_start
from agents.backends.chat import ChatResult
from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig, Prompt, load_prompt
from agents.curation.filters import CAMERA_WORDS
from agents.preference_pairs import preference_pair
from schemas import Lineage, McqRow, PreferenceRow, SftRow, stable_id

LETTERS = "ABCD"
MOTION_CATEGORIES = ("MR", "LM", "AO", "RC", "MO", "CM")
CATEGORY_NAMES = {
    "MR": "motion recognition (what motion happens)",
    "LM": "location-related motion (where, which direction)",
    "AO": "action order (what happens first, next)",
    "RC": "repetition count (how many times)",
    "MO": "motion-related objects (which object moves or is acted on)",
    "CM": "camera motion (pan, tilt, zoom, static camera)",
}
_LOCATION = re.compile(r"\b(left|right|up|down|upward|downward|top|bottom|centre|center|middle|across|toward|towards"
                       r"|away|into|out of|above|below|forward|backward|corner|edge|side|clockwise|counterclockwise)\b")
_ORDER = re.compile(r"\b(then|after|afterwards|before|first|next|finally|later|followed|meanwhile|while|once .* has)\b")
_COUNT = re.compile(r"\b(once|twice|thrice|times|again|repeatedly|\d+|two|three|four|five|six|seven|eight|nine|ten)\b")
_CAMERA = re.compile(r"\b(camera|pans?|panning|tilts?|zooms?|zooming)\b")
# Decoding hints (schema only): a wrong count or category is its own rejection, not a failed answer.
Options = Annotated[list[str], WithJsonSchema({"type": "array", "items": {"type": "string"}, "minItems": 4,
                                                "maxItems": 4})]
MotionCategory = Annotated[str, WithJsonSchema({"type": "string", "enum": list(MOTION_CATEGORIES)})]
ErrorType = Literal["wrong_direction", "wrong_order", "wrong_count", "wrong_object"]


class MotionQuestion(BaseModel):
    category: MotionCategory
    question: str = Field(min_length=3)
    options: Options = Field(min_length=1, max_length=8)
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
    options: Options = Field(min_length=1, max_length=8)
    answer: Literal["A", "B", "C", "D"]
    evidence: str = Field(min_length=1)


class ObjectAnswer(BaseModel):
    questions: list[ObjectQuestion]


class QuestionWriterConfig(ChatStageConfig):
    prompt: str = Field("question_writer.motion.v2", description="motion prompt file under agents/prompts/")
    object_prompt: str = Field("question_writer.object.v1", description="prompt file under agents/prompts/")
    object_questions: bool = Field(True, description="also write object-level questions")
    max_tokens: int = Field(2048, ge=64)
    temperature: float = Field(0.2, ge=0, le=2)
    seed: int = Field(0, description="seed of the option shuffle that balances answer letters")
    categories: list[Literal["MR", "LM", "AO", "RC", "MO", "CM"]] = Field(
        list(MOTION_CATEGORIES), description="motion categories asked for, where the caption supports them")


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
            asks += [self._ask("motion", clip, MotionSource(caption_id, text, camera_words(clip),
                                                             supported_categories(text, clip, self.config.categories)))
                     for caption_id, text in sources]
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
            prompt, model, item = self.prompt, MotionAnswer, payload.caption_id
            messages = prompt.messages(caption=payload.caption, camera=payload.camera,
                                       categories=[(c, CATEGORY_NAMES[c]) for c in payload.categories])
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
    def _motion_rows(self, out: StageOutput, clip, source: MotionSource, result: ChatResult) -> None:
        answer: MotionAnswer = result.parsed  # type: ignore[assignment]
        rows: list[tuple[str, dict, type]] = []
        evidence_text = f"{source.caption} {source.camera}"
        covered: set[str] = set()
        for q in answer.questions:
            if not self._category_ok(out, clip.clip_id, source, q, covered):
                continue
            fields = self._mcq_fields(out, clip.clip_id, source.caption_id, evidence_text, q, q.question, [])
            if fields:
                covered.add(q.category)
                rows.append(("mcqs", fields, McqRow))
        for category in source.categories:
            if category not in covered:
                out.reject(self.name, stable_id(self.name, "missing", source.caption_id, category), "missing_category",
                           f"{category} was asked for and no question of it passed the checks", clip.clip_id)
        caption_id = source.caption_id
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

    def _category_ok(self, out: StageOutput, clip_id: str, source: MotionSource, q, covered: set[str]) -> bool:
        """The category rules of a motion question; a failure is a rejection with its own reason."""
        question_id = stable_id(self.name, source.caption_id, q.category, q.question, *q.options)
        if q.category not in MOTION_CATEGORIES:
            out.reject(self.name, question_id, "unknown_category", f"category {q.category!r}", clip_id)
        elif q.category not in source.categories:
            out.reject(self.name, question_id, "category_not_asked",
                       f"{q.category} was not asked for (asked: {', '.join(source.categories)})", clip_id)
        elif q.category in covered:
            out.reject(self.name, question_id, "duplicate_category", f"a second {q.category} question", clip_id)
        else:
            return True
        return False

    def _mcq_fields(self, out, clip_id, caption_id, caption, q, question, object_ids) -> dict | None:
        """Checks every question must pass before it becomes a row; a failure is a rejection."""
        question_id = stable_id(self.name, caption_id, q.category, question, *q.options)
        options = [o.strip() for o in q.options]
        if len(options) != len(LETTERS):
            out.reject(self.name, question_id, "wrong_option_count", f"{len(options)} options, not 4", clip_id)
        elif LETTERS.index(q.answer) >= len(options):
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


@dataclass(frozen=True)
class MotionSource:
    """One motion caption to ask about, with what the clip supports."""

    caption_id: str
    caption: str
    camera: str  # the camera-motion estimate in words, "" without one
    categories: tuple[str, ...]


def motion_sources(clip, captions: list) -> list[tuple[str, str]]:
    """(caption_id, text) of every clip-level motion caption, else the manifest caption, else the
    motion captioner's caption (written for clips that came without one)."""
    clip_level = sorted(
        (c for c in captions if c.object_id is None and c.kind in ("motion", "refined_detailed")),
        key=lambda c: c.caption_id,
    )
    written = [c for c in clip_level if c.source != "motion_captioner"]
    if written:
        return [(c.caption_id, c.text) for c in written]
    if clip.caption:
        return [(f"clip:{clip.clip_id}", clip.caption)]
    return [(c.caption_id, c.text) for c in clip_level]


def camera_words(clip) -> str:
    return CAMERA_WORDS.get(getattr(clip, "camera_motion", None) or "", "")


def supported_categories(caption: str, clip, wanted) -> tuple[str, ...]:
    """The motion categories a caption can answer, in the configured order."""
    text = caption.lower()
    supported = {"MR", "MO"}
    supported |= {"LM"} if _LOCATION.search(text) else set()
    supported |= {"AO"} if _ORDER.search(text) else set()
    supported |= {"RC"} if _COUNT.search(text) else set()
    supported |= {"CM"} if camera_words(clip) or _CAMERA.search(text) else set()
    return tuple(c for c in wanted if c in supported)


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

