"""Analyzer: a clip's caption -> the object nouns and referring phrases the Segmentor grounds.

Reads `clips` (virtual clips carry their scene description in `caption`), writes `phrases`.
Input: ClipRow.caption; a clip without one uses its clip-level `motion` caption from `captions`
when an earlier stage wrote one (the motion captioner, for raw footage). Output: PhraseRow(text, kind "noun" | "referring"), normalised
(whitespace collapsed, trailing punctuation dropped, nouns lower-cased), deduplicated per clip
case-insensitively, filtered by length, capped per clip (`max_phrases`, nouns first).
Example: "A red ball rolls left." -> noun "ball", referring "the red ball".

Rejections: `no_caption` (clip without any caption), `parse_failed` / `api_error` (the model's
answer), `no_phrases` (an answer left nothing usable after filtering).
With the tiny profile the phrases are noise from random weights; schema-guided decoding still
makes every answer parse, so the stage produces rows.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema

from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig
from schemas import PhraseRow, stable_id

# The length limit is a decoding hint (schema only): an over-long phrase is filtered, not a failed answer.
Phrase = Annotated[str, WithJsonSchema({"type": "string", "maxLength": 60})]


class AnalyzerAnswer(BaseModel):
    nouns: list[Phrase] = Field(max_length=12)
    phrases: list[Phrase] = Field(max_length=12)


class AnalyzerConfig(ChatStageConfig):
    prompt: str = "analyzer.v1"
    max_phrases: int = Field(6, ge=1, description="phrases kept per clip, nouns first")
    max_items_asked: int = Field(4, ge=1, description="nouns and phrases the prompt asks for, each")
    max_words: int = Field(8, ge=1, description="longer phrases are dropped")
    max_chars: int = Field(60, ge=3)


class CaptionAnalyzer(ChatStage):
    name = "analyzer"
    config_model = AnalyzerConfig
    reads = ("clips",)
    optional_reads = ("captions",)
    writes = ("phrases",)
    version = "1"
    config: AnalyzerConfig

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        asks = []
        motion = batch.by_clip("captions")
        for clip in batch.clips:
            caption = clip_caption(clip, motion.get(clip.clip_id, []))
            if not caption:
                out.reject(self.name, clip.clip_id, "no_caption", "the clip has no caption to analyse", clip.clip_id)
                continue
            if caption != (clip.caption or "").strip():
                out.counters["caption_from_motion_caption"] += 1
            messages = self.prompt.messages(caption=caption, max_items=self.config.max_items_asked)
            asks.append(Ask(clip.clip_id, clip.clip_id, self.request(messages, AnalyzerAnswer)))
        for ask, result in self.ask(asks, out):
            phrases = self.select(result.parsed)
            if not phrases:
                out.reject(self.name, ask.item_id, "no_phrases", f"nothing usable in {result.text[:200]!r}",
                           ask.clip_id)
                continue
            for position, (kind, text) in enumerate(phrases):
                lineage = self.lineage(result if position == 0 else None)
                out.add("phrases", PhraseRow.build(
                    lineage, phrase_id=stable_id("phrase", ask.clip_id, kind, text.lower()),
                    clip_id=ask.clip_id, text=text, kind=kind,
                ))
        return out

    def select(self, answer: AnalyzerAnswer) -> list[tuple[str, str]]:
        """Normalised, valid, deduplicated (kind, text) pairs, nouns first, capped."""
        chosen: list[tuple[str, str]] = []
        seen: set[str] = set()
        candidates = [("noun", n.lower()) for n in answer.nouns] + [("referring", p) for p in answer.phrases]
        for kind, raw in candidates:
            text = normalise(raw)
            if not text or len(text) > self.config.max_chars or len(text.split()) > self.config.max_words:
                continue
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            chosen.append((kind, text))
        return chosen[: self.config.max_phrases]


def clip_caption(clip, captions: list) -> str:
    """The clip's own caption, else its clip-level motion caption (by caption id, for stability)."""
    if (clip.caption or "").strip():
        return clip.caption.strip()
    motion = sorted((c for c in captions if c.object_id is None and c.kind == "motion"), key=lambda c: c.caption_id)
    return motion[0].text.strip() if motion else ""


def normalise(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" .,;:!?\"'`").strip()
