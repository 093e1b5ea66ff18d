"""Quality checks of multiple-choice questions, each recorded per question with its outcome.

Reads `mcqs` and `captions`; writes `mcq_checks` (never edits `mcqs`: consumers drop questions
with a `drop` outcome and carry `flag`s, see `engine.export`). Checks, in order:
- options_unique: options that differ only by case, punctuation or articles -> drop;
- length_giveaway: the answer is the longest option and `length_ratio` times the mean distractor
  length -> flag (or drop);
- duplicate: near-identical questions (token Jaccard of question and options) in the same clip
  -> drop all but one (template questions win, being correct by construction); the same question
  and options on several clips of the batch -> flag (low diversity). Dataset-wide duplicates
  beyond one shard are removed at export time;
- letter_shuffle: the question writer shuffles options as it writes (agents.question_writer);
  this records per question the model's letter -> the written letter, and the distributions
  before (as the model answered) and after (as written) land in the counters (`letter_before_A`,
  `letter_after_A`, ...);
- blind: a text-only model answers the question without the video `blind_tries` times; if it is
  right more often than chance allows (one-sided binomial test at `blind_alpha`) the question tests
  language priors, not motion -> drop (or flag);
- consistency: a model judges whether the answer is derivable from the source caption -> drop (or
  flag) when not; an unreadable verdict is a flag.
The model-backed checks skip questions already dropped by a rule.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import replace
from math import comb
from typing import Any, Literal

from pydantic import BaseModel, Field

from agents.backends.chat import ChatResult
from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig, load_prompt, reject_answer
from schemas import Lineage, McqCheckRow, stable_id

LETTERS = "ABCD"
Action = Literal["flag", "drop"]
_ARTICLES = {"a", "an", "the"}


class BlindAnswer(BaseModel):
    answer: Literal["A", "B", "C", "D"]


class ConsistencyVerdict(BaseModel):
    derivable: bool
    reason: str = ""


class McqFiltersConfig(ChatStageConfig):
    prompt: str = Field("mcq_filters.blind.v1", description="blind-filter prompt file under agents/prompts/")
    consistency_prompt: str = "mcq_filters.consistency.v1"
    max_tokens: int = Field(128, ge=16, description="answer budget of a consistency verdict")
    seed: int = Field(0, description="sampling seed of the model checks (blind try t uses seed + t)")
    length_ratio: float = Field(1.8, gt=1, description="answer / mean distractor length that gives it away")
    length_action: Action = "flag"
    dedup_jaccard: float = Field(0.85, gt=0, le=1, description="token overlap above which questions are the same")
    blind: bool = True
    blind_tries: int = Field(3, ge=1)
    blind_alpha: float = Field(0.05, gt=0, lt=1)
    blind_temperature: float = Field(1.0, ge=0)
    blind_action: Action = "drop"
    consistency: bool = True
    consistency_action: Action = "drop"


def normalise_option(text: str) -> str:
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return " ".join(w for w in words if w not in _ARTICLES)


def tokens(question) -> set[str]:
    return set(normalise_option(" ".join([question.question, *question.options])).split())


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely k right answers are by chance."""
    return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def question_block(question: str, options: list[str]) -> str:
    return question + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))


class McqFilters(ChatStage):
    name = "mcq_filters"
    config_model = McqFiltersConfig
    reads = ("mcqs", "captions")
    writes = ("mcq_checks",)
    version = "1"
    config: McqFiltersConfig

    @classmethod
    def reads_for(cls, config: McqFiltersConfig) -> tuple[str, ...]:
        """The consistency check needs the clips' own captions (manifest questions cite them)."""
        return ("clips", *cls.reads) if config.consistency else cls.reads

    def setup(self) -> None:
        """The model is loaded only when a model-backed check is on."""
        if self.config.blind or self.config.consistency:
            super().setup()
        self.prompt = load_prompt(self.config.prompt)
        self.consistency_prompt = load_prompt(self.config.consistency_prompt)

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        questions = sorted(batch.rows("mcqs"), key=lambda q: (q.source != "template", q.question_id))
        self.outcomes: dict[str, list[str]] = defaultdict(list)
        for q in questions:
            self._options_unique(out, q)
            self._length_giveaway(out, q)
            self._letter_balance(out, q)
        self._duplicates(out, questions)
        alive = [q for q in questions if "drop" not in self.outcomes[q.question_id]]
        if self.config.blind and alive:
            self._blind(out, alive)
        if self.config.consistency and alive:
            self._consistency(out, alive, batch)
        return out

    # ----- recording -----
    def _record(self, out, q, check, outcome, detail="", lineage: Lineage | None = None) -> None:
        lineage = lineage or Lineage(agent=self.name, model="rules", model_revision=self.version)
        out.add("mcq_checks", McqCheckRow.build(
            lineage, check_id=stable_id(self.name, q.question_id, check), question_id=q.question_id,
            clip_id=q.clip_id, check=check, outcome=outcome, detail=detail[:500]))
        self.outcomes[q.question_id].append(outcome)
        out.counters[f"{check}_{outcome}"] += 1

    # ----- rule checks -----
    def _options_unique(self, out, q) -> None:
        seen = Counter(normalise_option(o) for o in q.options)
        repeated = [o for o, n in seen.items() if n > 1 or not o]
        self._record(out, q, "options_unique", "drop" if repeated else "pass",
                     f"options repeat: {repeated}" if repeated else "")

    def _length_giveaway(self, out, q) -> None:
        lengths = [len(o.strip()) for o in q.options]
        answer_len = lengths.pop(LETTERS.index(q.answer))
        ratio = answer_len / max(1.0, sum(lengths) / len(lengths))
        gives_away = ratio >= self.config.length_ratio and answer_len > max(lengths)
        self._record(out, q, "length_giveaway", self.config.length_action if gives_away else "pass",
                     f"answer {ratio:.2f}x the mean distractor length")

    def _letter_balance(self, out, q) -> None:
        before = q.generated_answer or q.answer  # template questions are written balanced
        out.counters[f"letter_before_{before}"] += 1
        out.counters[f"letter_after_{q.answer}"] += 1
        self._record(out, q, "letter_shuffle", "pass", f"{before} -> {q.answer}")

    def _duplicates(self, out, questions) -> None:
        kept: dict[str, list[tuple[Any, set[str]]]] = defaultdict(list)
        first_clip_of: dict[str, str] = {}
        for q in questions:
            words = tokens(q)
            twin = next((k for k, kw in kept[q.clip_id] if jaccard(words, kw) >= self.config.dedup_jaccard), None)
            if twin is not None:
                self._record(out, q, "duplicate", "drop", f"near-identical to {twin.question_id} in the same clip")
                continue
            kept[q.clip_id].append((q, words))
            key = " ".join(sorted(words))
            elsewhere = first_clip_of.setdefault(key, q.clip_id)
            if elsewhere != q.clip_id:
                self._record(out, q, "duplicate", "flag", f"same question and options as on clip {elsewhere}")
            else:
                self._record(out, q, "duplicate", "pass")

    # ----- model checks -----
    def _blind(self, out, questions) -> None:
        asks = []
        for q in questions:
            messages = self.prompt.messages(question=question_block(q.question, q.options))
            asks += [Ask(q.question_id, q.clip_id, self.request(
                         messages, BlindAnswer, max_tokens=16, temperature=self.config.blind_temperature,
                         seed=self.config.seed + t)) for t in range(self.config.blind_tries)]
        results = self.answer(asks, out)
        n = self.config.blind_tries
        for i, q in enumerate(questions):
            tries = results[i * n : (i + 1) * n]
            answered = [r for r in tries if r.ok]
            right = sum(r.parsed.answer == q.answer for r in answered)
            failed = [r for r in tries if not r.ok]
            # a failed try is no answer, not a wrong one: the test runs over the tries that answered
            p_value = binomial_tail(right, len(answered), 1 / len(q.options)) if answered else 1.0
            outcome = self.config.blind_action if p_value < self.config.blind_alpha else "pass"
            if not answered:
                outcome = "flag"
            # the tries that answered; failed ones are counted as wasted tokens (agents.chat_stage)
            merged = ChatResult(prompt_tokens=sum(r.prompt_tokens for r in answered),
                                completion_tokens=sum(r.completion_tokens for r in answered))
            self._record(out, q, "blind", outcome,
                         f"{right}/{len(answered)} right without the video (chance 1/{len(q.options)}, "
                         f"p={p_value:.3f}" + (f", {len(failed)} of {n} tries failed: {failed[0].error}" if failed
                                               else "") + ")",
                         lineage=self.lineage(merged))
            if failed:  # sampled tries can answer next time: the next run asks again
                sampled = self.config.blind_temperature > 0
                reject_answer(out, self.name, q.question_id, q.clip_id,
                              replace(failed[0], retryable=failed[0].retryable or sampled))

    def _consistency(self, out, questions, batch: Batch) -> None:
        captions = {c.caption_id: c.text for c in batch.rows("captions")}
        captions.update({f"clip:{c.clip_id}": c.caption for c in batch.clips if c.caption})
        asks = []
        for q in questions:
            caption = captions.get(q.caption_id or "")
            if caption is None:
                why = "template question, correct by construction" if q.source == "template" else "source caption not found"
                self._record(out, q, "consistency", "pass" if q.source == "template" else "flag", why)
                continue
            messages = self.consistency_prompt.messages(
                caption=caption, question=question_block(q.question, q.options),
                answer=f"{q.answer}. {q.options[LETTERS.index(q.answer)]}")
            request = self.request(messages, ConsistencyVerdict, prompt=self.consistency_prompt, seed=self.config.seed)
            asks.append(Ask(q.question_id, q.clip_id, request, q))
        for ask, result in zip(asks, self.answer(asks, out), strict=True):
            q = ask.context
            lineage = self.lineage(result if result.ok else None, prompt=self.consistency_prompt)
            if not result.ok:
                self._record(out, q, "consistency", "flag", f"unverified ({result.error}): {result.detail}", lineage=lineage)
            elif result.parsed.derivable:
                self._record(out, q, "consistency", "pass", result.parsed.reason, lineage=lineage)
            else:
                self._record(out, q, "consistency", self.config.consistency_action, result.parsed.reason,
                             lineage=lineage)
