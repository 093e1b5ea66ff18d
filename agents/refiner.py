"""Refiner: accepted object captions -> a refined detailed caption and a refined short caption.

Reads `captions` and `reviews`, writes `captions` (kinds `refined_detailed`, `refined_short`).
Only objects whose review says accept are refined; rejected objects were already recorded by the
Reviewer (review row + `review_rejected`) and are skipped here without a second rejection.
An accepted object without its annotator captions is rejected `no_caption`; answer failures as
in agents.chat_stage. Real profiles run it through the OpenAI-compatible backend (GPT-4o class);
the tiny profile uses the tiny local model, whose captions are noise.
Example: detailed "A red red square moves right, right." -> "A red square moves to the right."
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents.backends.chat import ChatModelConfig
from agents.base import Batch, StageOutput
from agents.chat_stage import Ask, ChatStage, ChatStageConfig
from schemas import CaptionRow, stable_id


class RefinerAnswer(BaseModel):
    detailed: str = Field(min_length=1, max_length=600)
    short: str = Field(min_length=1, max_length=120)


class RefinerConfig(ChatStageConfig):
    prompt: str = "refiner.v1"
    chat: ChatModelConfig = Field(default_factory=lambda: ChatModelConfig(backend="openai", model="gpt-4.1"))


class CaptionRefiner(ChatStage):
    name = "refiner"
    config_model = RefinerConfig
    reads = ("captions", "reviews")
    writes = ("captions",)
    version = "1"
    config: RefinerConfig

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        by_object: dict[str, dict[str, CaptionRow]] = {}
        for row in batch.rows("captions"):
            if row.object_id and row.kind in ("object_detailed", "object_short"):
                by_object.setdefault(row.object_id, {})[row.kind] = row
        asks = []
        for review in batch.rows("reviews"):
            if review.verdict != "accept":
                continue
            found = by_object.get(review.object_id, {})
            if not found:
                out.reject(self.name, review.object_id, "no_caption", "accepted object has no caption", review.clip_id)
                continue
            detailed = found.get("object_detailed") or found["object_short"]
            short = found.get("object_short") or detailed
            messages = self.prompt.messages(detailed=detailed.text, short=short.text)
            asks.append(Ask(review.object_id, review.clip_id, self.request(messages, RefinerAnswer), review))
        for ask, result in self.ask(asks, out):
            review = ask.context
            texts = (("refined_detailed", result.parsed.detailed), ("refined_short", result.parsed.short))
            for position, (kind, text) in enumerate(texts):
                out.add("captions", CaptionRow.build(
                    self.lineage(result if position == 0 else None),
                    caption_id=stable_id("caption", review.object_id, kind), clip_id=review.clip_id,
                    object_id=review.object_id, kind=kind, text=text.strip() or "-", source=self.name,
                ))
        return out
