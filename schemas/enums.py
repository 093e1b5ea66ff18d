"""Closed vocabularies of the dataset contract."""

from enum import StrEnum


class McqCategory(StrEnum):
    """MotionBench's six motion categories, then VideoRefer's object-QA types."""

    MR = "MR"  # motion recognition
    LM = "LM"  # location-related motion
    CM = "CM"  # camera motion
    MO = "MO"  # motion-related objects
    AO = "AO"  # action order
    RC = "RC"  # repetition count
    basic = "basic"
    reasoning = "reasoning"
    future = "future"


MOTION_CATEGORIES = (
    McqCategory.MR,
    McqCategory.LM,
    McqCategory.CM,
    McqCategory.MO,
    McqCategory.AO,
    McqCategory.RC,
)


class CaptionKind(StrEnum):
    motion = "motion"  # clip-level motion caption (ground truth, manifest or refined)
    clip = "clip"  # clip-level raw caption from a manifest
    object_detailed = "object_detailed"  # Annotator, per object
    object_short = "object_short"
    refined_detailed = "refined_detailed"  # Refiner, per accepted object
    refined_short = "refined_short"


class Verdict(StrEnum):
    accept = "accept"
    reject = "reject"


class Reason(StrEnum):
    """Every rejection reason code the engine emits (tests/test_reasons.py finds each literal in
    the code and checks it is here). The column stays a free snake_case string, so a stage added
    outside this project may write codes of its own."""

    # reading a source: files, manifests, probing and decoding
    source_missing = "source_missing"
    empty_file = "empty_file"
    not_a_video = "not_a_video"
    no_video_stream = "no_video_stream"
    truncated_video = "truncated_video"
    too_few_frames = "too_few_frames"
    decode_error = "decode_error"
    decode_timeout = "decode_timeout"
    decoder_crashed = "decoder_crashed"
    frame_out_of_clip = "frame_out_of_clip"
    invalid_utf8 = "invalid_utf8"  # a manifest line or a file name that is not UTF-8
    invalid_manifest_row = "invalid_manifest_row"
    missing_extra = "missing_extra"  # a remote video path whose filesystem package is not installed
    remote_unreachable = "remote_unreachable"
    # ingest: one clip per content, curation filters
    duplicate_clip = "duplicate_clip"
    near_duplicate = "near_duplicate"
    too_small = "too_small"
    low_fps = "low_fps"
    too_short = "too_short"
    too_long = "too_long"
    black_frames = "black_frames"
    letterboxed = "letterboxed"
    static_clip = "static_clip"
    # any stage
    invalid_row = "invalid_row"
    invalid_metadata = "invalid_metadata"
    stage_error = "stage_error"
    # model answers (agents.chat_stage and the chat backends)
    parse_failed = "parse_failed"
    api_error = "api_error"
    api_rejected = "api_rejected"
    generation_failed = "generation_failed"
    batch_pending = "batch_pending"
    # what a stage needs from upstream
    clip_missing = "clip_missing"
    no_caption = "no_caption"
    no_phrases = "no_phrases"
    no_motion_caption = "no_motion_caption"
    no_usable_items = "no_usable_items"
    # segmentor, annotator, reviewer
    no_objects_found = "no_objects_found"
    segmentation_failed = "segmentation_failed"
    bad_mask = "bad_mask"
    mask_size_mismatch = "mask_size_mismatch"
    empty_mask = "empty_mask"
    review_rejected = "review_rejected"
    # question writer: the six motion categories, four options each, answers grounded in the caption
    unknown_category = "unknown_category"
    category_not_asked = "category_not_asked"
    duplicate_category = "duplicate_category"
    missing_category = "missing_category"
    wrong_option_count = "wrong_option_count"
    answer_out_of_range = "answer_out_of_range"
    duplicate_options = "duplicate_options"
    ungrounded_answer = "ungrounded_answer"
    no_object_reference = "no_object_reference"
    unknown_object = "unknown_object"

    @property
    def retryable(self) -> bool:
        return self in RETRYABLE_REASONS


# Reasons worth trying again on the next run: the input may be fine, the world was not. A
# `parse_failed` answer from a sampled endpoint is retryable too: the backend marks the row itself.
RETRYABLE_REASONS = frozenset({Reason.decode_timeout, Reason.stage_error, Reason.api_error, Reason.batch_pending,
                               Reason.remote_unreachable})
