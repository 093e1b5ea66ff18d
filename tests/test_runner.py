"""The runner's hand-over of staged rows to a later stage in the same process."""

from __future__ import annotations

from engine.runner import WRITTEN, read_rows
from engine.store import DatasetStore
from schemas import CaptionRow, Lineage, ObjectRow, encode_masks, row_model, stable_id, to_arrow

LINEAGE = Lineage(agent="test", model="m")


def _captions(text: str) -> list[CaptionRow]:
    return [CaptionRow.build(LINEAGE, caption_id=stable_id("c", str(i)), clip_id="clip00001", kind="clip",
                             text=f"{text} {i}", source="test") for i in range(3)]


def _stage(store: DatasetStore, table: str, rows: list, remember: bool) -> str:
    """Stage and commit one (stage, shard) the way the runner does; its committed location."""
    arrow = to_arrow(table, rows)
    staged = store.stage_arrow("writer", "s1", {table: arrow})
    if remember:
        WRITTEN.remember(staged.files[table], rows, arrow)
    return store.commit(staged, {})["files"][table]


def _from_file(store: DatasetStore, location: str, table: str) -> list:
    model = row_model(table)
    return [model.model_validate(r) for r in store.read_location(location, table).to_pylist()]


def test_rows_this_process_staged_come_from_memory_and_equal_the_file(tmp_path):
    store = DatasetStore(tmp_path / "ds")
    rows = _captions("first")
    location = _stage(store, "captions", rows, remember=True)
    got = read_rows(store.root, location, "captions")
    assert all(a is b for a, b in zip(got, rows, strict=True))  # no re-read
    assert got == _from_file(store, location, "captions")


def test_a_rewritten_file_is_read_again(tmp_path):
    store = DatasetStore(tmp_path / "ds")
    _stage(store, "captions", _captions("first"), remember=True)
    location = _stage(store, "captions", _captions("second"), remember=False)  # another process wrote it
    assert [r.text for r in read_rows(store.root, location, "captions")] == ["second 0", "second 1", "second 2"]


def test_float32_columns_read_as_the_file_gives_them(tmp_path):
    import numpy as np

    store = DatasetStore(tmp_path / "ds")
    mask = np.zeros((1, 8, 8), dtype=bool)
    mask[0, 2:5, 2:5] = True
    row = ObjectRow.build(LINEAGE, object_id="object0001", clip_id="clip00001", label="cube", frame_indices=[0],
                          masks=encode_masks(mask), boxes=[[0.1, 0.2, 4.3, 4.7]], score=0.5, source="test")
    location = _stage(store, "objects", [row], remember=True)
    got = read_rows(store.root, location, "objects")
    assert got == _from_file(store, location, "objects")
    assert got[0].boxes != row.boxes  # rounded to float32 by the file, and so by the hand-over


def test_a_file_another_process_wrote_is_validated_once_per_process(tmp_path, monkeypatch):
    """Stages sharing an actor read the same upstream file (the reviewer and the question writer
    both read objects): the second read gets the rows the first validated; a rewrite reads again."""
    store = DatasetStore(tmp_path / "ds")
    location = _stage(store, "captions", _captions("first"), remember=False)
    import engine.runner as runner

    reads, original = [], runner.read_location

    def counting(root, where, table):
        reads.append(where)
        return original(root, where, table)

    monkeypatch.setattr(runner, "read_location", counting)
    first = read_rows(store.root, location, "captions")
    second = read_rows(store.root, location, "captions")
    assert reads == [location] and all(a is b for a, b in zip(first, second, strict=True))
    assert first == _from_file(store, location, "captions")

    location = _stage(store, "captions", _captions("second"), remember=False)
    assert [r.text for r in read_rows(store.root, location, "captions")] == ["second 0", "second 1", "second 2"]
    assert reads == [location, location]


def test_the_hand_over_keeps_a_bounded_number_of_bytes(tmp_path):
    """Large shards (masks of long clips) are dropped oldest first once the byte budget is spent;
    a file larger than the whole budget is never kept; a dropped file is simply read again."""
    from engine.runner import WrittenShards

    files = []
    for i in range(4):
        path = tmp_path / f"f{i}.parquet"
        path.write_bytes(b"x" * (i + 1))
        files.append(path)
    kept = WrittenShards(limit=10, max_bytes=1000)
    for path in files[:3]:
        kept.keep(path, [path.name], 400)
    assert [kept.get(p) for p in files[:3]] == [None, ["f1.parquet"], ["f2.parquet"]] and kept.bytes == 800
    kept.keep(files[3], ["f3.parquet"], 1001)
    assert kept.get(files[3]) is None and kept.bytes == 800
    kept.keep(files[1], ["f1 again"], 100)  # the same file again replaces its entry and its bytes
    assert kept.get(files[1]) == ["f1 again"] and kept.bytes == 500
