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
    """Known rejection reason codes. The column is a free snake_case string so stages may add
    codes of their own; these are the ones the engine itself emits."""

    # ingest
    source_missing = "source_missing"
    empty_file = "empty_file"
    not_a_video = "not_a_video"
    no_video_stream = "no_video_stream"
    truncated_video = "truncated_video"
    too_few_frames = "too_few_frames"
    decode_error = "decode_error"
    decode_timeout = "decode_timeout"
    duplicate_clip = "duplicate_clip"
    invalid_utf8 = "invalid_utf8"  # a manifest line or a file name that is not UTF-8
    invalid_manifest_row = "invalid_manifest_row"
    missing_extra = "missing_extra"  # a remote video path whose filesystem package is not installed
    remote_unreachable = "remote_unreachable"
    # any stage
    invalid_row = "invalid_row"
    stage_error = "stage_error"
    parse_failed = "parse_failed"
    api_error = "api_error"
    # question writer: the six motion categories, four options each
    unknown_category = "unknown_category"
    category_not_asked = "category_not_asked"
    duplicate_category = "duplicate_category"
    missing_category = "missing_category"
    wrong_option_count = "wrong_option_count"
    # segmentor / reviewer
    batch_pending = "batch_pending"
    no_objects_found = "no_objects_found"
    review_rejected = "review_rejected"


# Reasons worth trying again on the next run: the input may be fine, the world was not. A
# `parse_failed` answer from a sampled endpoint is retryable too: the backend marks the row itself.
RETRYABLE_REASONS = frozenset({Reason.decode_timeout, Reason.stage_error, Reason.api_error, Reason.batch_pending,
                               Reason.remote_unreachable})
