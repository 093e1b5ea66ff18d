"""Template MCQs for virtual clips, in the six MotionBench categories, from the scene metadata.

Reads `clips` and the ground-truth `objects`; writes `mcqs` with source "template", and a
`preferences` pair for each question whose ground-truth answer `agents.preference_pairs` can
change in one motion fact. Questions only
name objects the ground truth saw in the clip's sampled frames (all objects when the clip has no
ground-truth rows). Which categories a scene can support, and what is skipped, is documented in
`agents.virtual.questions`. Four-option answers are placed by the shard's letter rotation
(`agents.answer_letters`). An unreadable scene is a rejection.

Clips that are not virtual (real footage) get one measured question: a camera-motion (CM) question
whose answer is the clip's camera-motion estimate (`ClipRow.camera_motion`, optical flow fitted by
curation or ingest, `agents.curation.filters.camera_motion`). It needs no model, so a folder of
videos gets questions even where no caption model writes usable captions; `camera_questions: false`
turns it off.
"""

from __future__ import annotations

import random
from typing import ClassVar

from pydantic import Field, field_validator

from agents.answer_letters import LETTERS, balance_letters, shard_start
from agents.base import Batch, Stage, StageConfig, StageOutput
from agents.curation.filters import CAMERA_WORDS
from agents.ground_truth import SOURCE, ground_truth_object_id
from agents.preference_pairs import preference_pair
from agents.virtual.questions import TEMPLATE_VERSION, TemplateQuestion, template_questions
from agents.virtual.scene import SceneSpec, scene_from_metadata
from schemas import ClipRow, Lineage, McqCategory, McqRow, PreferenceRow, stable_id
from schemas.enums import MOTION_CATEGORIES


class TemplateWriterConfig(StageConfig):
    seed: int = Field(0, description="seeds distractor choice and option order")
    categories: list[McqCategory] = Field(
        default_factory=lambda: list(MOTION_CATEGORIES), description="MotionBench categories to write"
    )
    camera_questions: bool = Field(
        True, description="a CM question on clips that are not virtual, answered by their camera-motion estimate"
    )

    @field_validator("categories")
    @classmethod
    def _motion_only(cls, categories: list[McqCategory]) -> list[McqCategory]:
        wrong = [str(c) for c in categories if c not in MOTION_CATEGORIES]
        if wrong:
            raise ValueError(f"template questions cover MR, LM, CM, MO, AO, RC only, not {wrong}")
        return categories


class TemplateQuestionWriter(Stage[TemplateWriterConfig]):
    name: ClassVar[str] = "template_writer"
    config_model: ClassVar[type[StageConfig]] = TemplateWriterConfig
    reads: ClassVar[tuple[str, ...]] = ("clips", "objects")
    writes: ClassVar[tuple[str, ...]] = ("mcqs", "preferences")
    # 2: every question has four options; 3: letters by the shard rotation, preference pairs;
    # 4: measured camera questions on real footage
    version: ClassVar[str] = "4"

    def process_batch(self, batch: Batch) -> StageOutput:
        out = StageOutput()
        objects = batch.by_clip("objects")
        lineage = Lineage(agent=self.name, model="template", model_revision=TEMPLATE_VERSION,
                          prompt_version=TEMPLATE_VERSION)
        measured = Lineage(agent=self.name, model="camera_motion_estimate", model_revision=MEASURED_VERSION,
                           prompt_version=MEASURED_VERSION)
        for clip in batch.clips:
            if clip.source != SOURCE:
                question = self._measured_camera(clip)
                if question is not None:
                    out.add("mcqs", self._row(clip, question, measured))
                    out.counters["mcq_CM_measured"] += 1
                continue
            try:
                spec = scene_from_metadata(clip.metadata)
            except ValueError as err:
                out.reject(self.name, clip.clip_id, "invalid_metadata", str(err), clip_id=clip.clip_id)
                continue
            visible = _visible(spec, clip, objects.get(clip.clip_id, []))
            categories = [str(c) for c in self.config.categories]
            for question in template_questions(spec, self.config.seed, clip.clip_id, visible, categories):
                out.add("mcqs", self._row(clip, question, lineage))
                out.counters[f"mcq_{question.category}"] += 1
        out.rows["mcqs"] = balance_letters(out.rows["mcqs"], shard_start(batch.clips))
        for question in out.rows["mcqs"]:
            pair = preference_pair(question.category, question.options, question.answer)
            if pair:
                out.add("preferences", PreferenceRow.build(
                    lineage, pair_id=stable_id("pair", question.question_id), clip_id=question.clip_id,
                    question_id=question.question_id, question=question.question, chosen=pair[0],
                    rejected=pair[1], error_type=pair[2]))
        return out

    def _measured_camera(self, clip: ClipRow) -> TemplateQuestion | None:
        if not self.config.camera_questions or "CM" not in [str(c) for c in self.config.categories]:
            return None
        return measured_camera_question(clip.camera_motion, self.config.seed, clip.clip_id)

    def _row(self, clip: ClipRow, q: TemplateQuestion, lineage: Lineage) -> McqRow:
        return McqRow.build(
            lineage,
            question_id=stable_id("mcq", clip.clip_id, q.category, q.question, lineage.model_revision,
                                  self.config.seed),
            clip_id=clip.clip_id,
            object_ids=[ground_truth_object_id(clip.clip_id, i) for i in q.object_indices],
            category=q.category, question=q.question, options=q.options, answer=q.answer,
            source="template", evidence=q.evidence,
        )


def _visible(spec: SceneSpec, clip: ClipRow, rows: list) -> set[int] | None:
    """Indices of the objects the ground truth found in the sampled frames; None = no ground truth."""
    ids = {ground_truth_object_id(clip.clip_id, o.index): o.index for o in spec.objects}
    found = {ids[r.object_id] for r in rows if r.source == SOURCE and r.object_id in ids}
    return found if any(r.source == SOURCE for r in rows) else None


MEASURED_VERSION = "measured-camera.v1"
# The estimate's labels (agents.curation.filters.camera_motion) as answer options.
CAMERA_ANSWERS = {label: words.removeprefix("the camera ") for label, words in CAMERA_WORDS.items()}


def measured_camera_question(label: str | None, seed: int, clip_key: str) -> TemplateQuestion | None:
    """A four-option CM question answered by a camera-motion estimate; None without an estimate."""
    correct = CAMERA_ANSWERS.get(label or "")
    if correct is None:
        return None
    rng = random.Random(int(stable_id("measured-camera", MEASURED_VERSION, seed, clip_key), 16))
    options = [correct, *rng.sample(sorted(set(CAMERA_ANSWERS.values()) - {correct}), 3)]
    rng.shuffle(options)
    return TemplateQuestion(category="CM", question="How does the camera move during the video?", options=options,
                            answer=LETTERS[options.index(correct)], evidence=f"measured camera motion: {label}")
