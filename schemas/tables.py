"""The table registry: name -> row model, Arrow conversion, validation, stable ids."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import pyarrow as pa
from pydantic import ValidationError

from schemas.rows import (
    CaptionRow,
    ClipRow,
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

TABLES: dict[str, type[Row]] = {
    m.TABLE: m
    for m in (ClipRow, PhraseRow, ObjectRow, CaptionRow, ReviewRow, McqRow, SftRow, PreferenceRow, McqCheckRow, RejectionRow)
}


def row_model(table: str) -> type[Row]:
    try:
        return TABLES[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; tables are {', '.join(TABLES)}") from None


def arrow_schema(table: str) -> pa.Schema:
    return row_model(table).ARROW


def to_arrow(table: str, rows: Iterable[Row | dict]) -> pa.Table:
    """Rows (already validated) to an Arrow table with the table's explicit schema."""
    records = [r.to_record() if isinstance(r, Row) else r for r in rows]
    return pa.Table.from_pylist(records, schema=arrow_schema(table))


def validate_rows(table: str, rows: Iterable[Row | dict], stage: str) -> tuple[list[Row], list[RejectionRow]]:
    """Validate rows for `table`; every invalid row becomes a rejection instead of a table row."""
    model = row_model(table)
    valid: list[Row] = []
    rejected: list[RejectionRow] = []
    for position, row in enumerate(rows):
        record = row.to_record() if isinstance(row, Row) else row
        try:
            valid.append(model.model_validate(record))
        except ValidationError as err:
            item = str(record.get(model.KEY) or record.get("clip_id") or f"{table}#{position}")
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or table
            clip_id = record.get("clip_id") if isinstance(record.get("clip_id"), str) else None
            rejected.append(rejection(stage, item, "invalid_row", f"{table}.{where}: {first['msg']}", clip_id))
    return valid, rejected


def rejection(stage: str, item_id: str, reason: str, detail: str = "", clip_id: str | None = None,
              retryable: bool | None = None) -> RejectionRow:
    """A rejection row with its deterministic id; retryable by default when the reason is."""
    from schemas.enums import RETRYABLE_REASONS

    return RejectionRow(
        rejection_id=stable_id("rejection", stage, item_id, reason),
        item_id=item_id,
        clip_id=clip_id,
        stage=stage,
        reason=reason,
        detail=detail[:500],
        retryable=reason in RETRYABLE_REASONS if retryable is None else retryable,
    )


def stable_id(*parts: object, length: int = 16) -> str:
    """A deterministic id from content: the same parts give the same id, run after run."""
    text = json.dumps([p if isinstance(p, (str, int, float, bool, type(None))) else str(p) for p in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:length]
