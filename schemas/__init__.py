"""Row models, Arrow schemas and enums of the dataset contract.

This package is the bottom layer: it imports nothing from the rest of the project.
"""

from schemas.enums import CaptionKind, McqCategory, Reason, Verdict
from schemas.masks import Rle, decode_mask, encode_mask, encode_masks, mask_area, mask_areas, mask_box
from schemas.rows import (
    SCHEMA_VERSION,
    CaptionRow,
    ClipRow,
    Lineage,
    McqCheckRow,
    McqRow,
    ObjectRow,
    PhraseRow,
    PreferenceRow,
    RejectionRow,
    ReviewRow,
    Row,
    SftRow,
)
from schemas.tables import TABLES, arrow_schema, rejection, row_model, stable_id, to_arrow, validate_rows

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "CaptionKind",
    "CaptionRow",
    "ClipRow",
    "Lineage",
    "McqCategory",
    "McqCheckRow",
    "McqRow",
    "ObjectRow",
    "PhraseRow",
    "PreferenceRow",
    "Reason",
    "RejectionRow",
    "ReviewRow",
    "Rle",
    "Row",
    "SftRow",
    "Verdict",
    "arrow_schema",
    "decode_mask",
    "encode_mask",
    "encode_masks",
    "mask_area",
    "mask_areas",
    "mask_box",
    "rejection",
    "row_model",
    "stable_id",
    "to_arrow",
    "validate_rows",
]
