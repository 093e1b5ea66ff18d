import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pycocotools import mask as coco
from pydantic import ValidationError

from schemas import (
    SCHEMA_VERSION,
    TABLES,
    ClipRow,
    McqRow,
    ObjectRow,
    RejectionRow,
    decode_mask,
    encode_masks,
    mask_area,
    mask_box,
    stable_id,
    to_arrow,
    validate_rows,
)

LINEAGE = dict(agent="test", model="m", model_revision="r", prompt_version="p")


def _clip(**over):
    row = dict(clip_id="c" * 16, source_key="k", video_path="v.mp4", num_frames=10, fps=5.0, width=8,
               height=6, duration=2.0, source="folder", frame_indices=[0, 5, 9], **LINEAGE)
    row.update(over)
    return row


def _object(masks):
    rles = encode_masks(masks)
    return ObjectRow(object_id="o" * 16, clip_id="c" * 16, label="red circle", frame_indices=list(range(len(rles))),
                     masks=rles, boxes=[mask_box(r) for r in rles], score=0.9, source="segmentor", **LINEAGE)


def test_every_table_has_matching_pydantic_and_arrow_fields():
    for table, model in TABLES.items():
        assert set(model.model_fields) == set(model.ARROW.names), table
        assert model.ARROW.metadata[b"schema_version"] == SCHEMA_VERSION.encode()
        assert model.ARROW.metadata[b"table"] == table.encode()


def test_rle_is_pycocotools_compatible():
    masks = np.zeros((3, 6, 8), bool)
    masks[0, 1:4, 2:5] = True
    masks[2, 0, 0] = True
    rles = encode_masks(masks)
    assert all(isinstance(r.counts, str) for r in rles)
    for rle, mask in zip(rles, masks, strict=True):
        assert rle.size == [6, 8]
        again = coco.decode({"size": rle.size, "counts": rle.counts.encode()})
        assert (again.astype(bool) == mask).all()
        assert (decode_mask(rle) == mask).all()
        assert mask_area(rle) == mask.sum()
    assert mask_box(rles[0]) == [2.0, 1.0, 5.0, 4.0]


def test_arrow_round_trip_through_parquet(tmp_path):
    masks = np.zeros((2, 6, 8), bool)
    masks[:, 2:4, 2:6] = True
    obj = _object(masks)
    table = to_arrow("objects", [obj])
    assert table.schema.equals(ObjectRow.ARROW, check_metadata=True)
    pq.write_table(table, tmp_path / "o.parquet")
    back = pq.read_table(tmp_path / "o.parquet")
    assert back.schema.metadata[b"schema_version"] == SCHEMA_VERSION.encode()
    again = ObjectRow.model_validate(back.to_pylist()[0])
    assert again == obj
    assert (decode_mask(again.masks[1]) == masks[1]).all()


def test_arrow_schema_is_explicit_even_for_empty_tables():
    for table in TABLES:
        empty = to_arrow(table, [])
        assert empty.num_rows == 0 and empty.schema.equals(TABLES[table].ARROW)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(frame_indices=[0, 12]), "outside the clip"),
        (dict(num_frames=1), "greater than or equal to 2"),
        (dict(fps=0), "greater than 0"),
        (dict(extra_column=1), "Extra inputs"),
    ],
)
def test_invalid_clip_rows_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        ClipRow.model_validate(_clip(**bad))


def test_mcq_rules():
    base = dict(question_id="q" * 16, clip_id="c" * 16, category="MR", question="What moves?",
                options=["left", "right", "up", "down"], answer="B", source="template", **LINEAGE)
    assert McqRow(**base).answer == "B"
    for bad in (dict(answer="E"), dict(options=["a", "a", "b", "c"]), dict(options=["a", "b"]),
                dict(category="XX"), dict(options=["a", "b", "c"], answer="D"), dict(source="human")):
        with pytest.raises(ValidationError):
            McqRow(**{**base, **bad})


def test_object_masks_boxes_and_frames_must_align():
    masks = np.ones((2, 4, 4), bool)
    obj = _object(masks).model_dump()
    obj["boxes"] = obj["boxes"][:1]
    with pytest.raises(ValidationError, match="2 frame indices"):
        ObjectRow.model_validate(obj)


def test_object_rows_carry_the_area_of_each_mask():
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :2, :3] = True
    masks[2] = True
    row = _object(masks)
    assert row.areas == [6, 0, 64] == [mask_area(m) for m in row.masks]
    assert ObjectRow.model_validate(row.model_dump()).areas == [6, 0, 64]  # read back: kept, not recomputed
    with pytest.raises(ValidationError, match="3 masks but 2 areas"):
        ObjectRow.model_validate({**row.model_dump(), "areas": [6, 0]})
    assert ObjectRow.ARROW.field("areas").nullable  # files written before the column read it as null


def test_validate_rows_turns_invalid_rows_into_rejections():
    rows = [_clip(), _clip(clip_id="d" * 16, fps=-1)]
    valid, rejected = validate_rows("clips", rows, stage="ingest")
    assert [r.clip_id for r in valid] == ["c" * 16]
    assert len(rejected) == 1
    r = rejected[0]
    assert (r.item_id, r.stage, r.reason) == ("d" * 16, "ingest", "invalid_row")
    assert "fps" in r.detail


def test_reason_codes_are_snake_case():
    with pytest.raises(ValidationError):
        RejectionRow(rejection_id="x" * 16, item_id="i", stage="s", reason="Bad Reason")


def test_stable_id_is_deterministic():
    assert stable_id("a", 1, None) == stable_id("a", 1, None)
    assert stable_id("a", 1) != stable_id("a", 2)
    assert len(stable_id("x")) == 16


def test_arrow_types_are_the_contract():
    s = ObjectRow.ARROW
    assert s.field("masks").type == pa.list_(pa.struct([pa.field("size", pa.list_(pa.int32())),
                                                           pa.field("counts", pa.string())]))
    assert s.field("frame_indices").type == pa.list_(pa.int32())
    assert s.field("boxes").type == pa.list_(pa.list_(pa.float32()))


def test_arrow_schemas_are_derived_from_the_models():
    import pyarrow as pa

    from schemas import TABLES
    from schemas.rows import Lineage

    for table, model in TABLES.items():
        names = model.ARROW.names
        assert set(names) == set(model.model_fields) and model.ARROW.metadata[b"table"] == table.encode()
        lineage = [n for n in Lineage.model_fields if n in model.model_fields]
        assert names[len(names) - len(lineage):] == lineage  # lineage last, declared once on Lineage
    objects = TABLES["objects"].ARROW
    assert objects.field("frame_indices").type == pa.list_(pa.int32())
    assert objects.field("boxes").type == pa.list_(pa.list_(pa.float32()))
    assert not objects.field("score").nullable and TABLES["mcqs"].ARROW.field("caption_id").nullable
