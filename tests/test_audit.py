"""The audit: each check's pass/warn/fail on crafted datasets, the CLI's modes, partial and live datasets."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from engine import audit
from engine.compact import compact
from engine.run import main as cli
from engine.store import DatasetStore
from schemas import (
    CaptionRow,
    McqRow,
    ObjectRow,
    PreferenceRow,
    RejectionRow,
    ReviewRow,
    mask_area,
    stable_id,
)
from tests.helpers_audit import (
    CATEGORIES,
    LINEAGE,
    DatasetRows,
    add_clip,
    add_mcq,
    add_object,
    healthy_dataset,
    square_masks,
    write_mcq_checks,
)


def statuses(root, names=None) -> dict[str, str]:
    return {r.name: r.status for r in audit.run_audit(root, audit.load_checks(names=names))}


def one(root, name: str, examples: bool = False) -> audit.CheckResult:
    return audit.run_audit(root, audit.load_checks(names=[name]), examples=examples)[0]


@pytest.fixture
def healthy(tmp_path) -> DatasetRows:
    return healthy_dataset(tmp_path / "ds")


def test_every_check_passes_on_a_healthy_dataset(healthy):
    healthy.write()
    found = statuses(healthy.root)
    assert found.pop("blind_filter") == "n/a"  # no mcq_checks table yet
    assert found.pop("expected_tables") == "n/a"  # no run.json says what was expected
    assert set(found.values()) == {"pass"}, found
    assert len(found) >= 12


def test_checks_files_have_parseable_headers():
    checks = audit.load_checks()
    for check in checks:
        assert check.path.name == f"{check.name}.sql"
        assert check.measures and (check.warn or check.fail) and "metric" in check.sections
        assert check.metric in check.sections["metric"]


def _clip_without_objects(data: DatasetRows, count: int) -> None:
    for index in range(10, 10 + count):
        add_clip(data, index, [])


@pytest.mark.parametrize("count, expected", [(1, "warn"), (5, "fail")])
def test_clips_without_objects(healthy, count, expected):
    _clip_without_objects(healthy, count)
    healthy.write()
    result = one(healthy.root, "clips_without_objects", examples=True)
    assert result.status == expected
    assert result.value == pytest.approx(count / (4 + count))
    assert len(result.examples.rows) == count


def test_mask_quality_flags_empty_tiny_and_flickering_objects(healthy):
    clip_id = healthy.clips[0].clip_id
    flicker = square_masks(10, 10, 24, 2, 0)
    flicker[5::2] = square_masks(10, 10, 6, 2, 0)[5::2]  # area jumps 16x every other frame
    tiny = square_masks(40, 40, 2, 1, 0)  # 4 px of 12288
    add_object(healthy, clip_id, "flickering blob", flicker)
    healthy.write()
    assert one(healthy.root, "mask_quality").status == "warn"  # 1 of 9 objects

    add_object(healthy, clip_id, "empty thing", np.zeros_like(flicker))
    add_object(healthy, clip_id, "speck", tiny)
    healthy.write()
    result = one(healthy.root, "mask_quality", examples=True)
    assert result.status == "fail"
    assert result.value == pytest.approx(3 / 11)
    flags = {row["label"]: (row["empty"], row["tiny"], row["huge"], row["flicker"]) for row in result.examples.records()}
    assert flags == {
        "empty thing": (True, False, False, False),
        "speck": (False, True, False, False),
        "flickering blob": (False, False, False, True),
    }


def test_mask_quality_compares_consecutive_frames_in_frame_order(healthy):
    """Masks stored out of frame order: frames 0, 1, 2 have areas 576, 0, 36, so no two consecutive
    non-empty frames (no flicker), though the stored order 576, 36 would look like a 16x jump."""
    clip_id = healthy.clips[0].clip_id
    masks = square_masks(10, 10, 24, 0, 0, frames=3)
    masks[1] = square_masks(10, 10, 6, 0, 0, frames=1)[0]
    masks[2] = 0
    row = add_object(healthy, clip_id, "shuffled", masks)
    healthy.tables["objects"][-1] = row.model_copy(update={"frame_indices": [0, 2, 1]})
    healthy.write()
    result = one(healthy.root, "mask_quality", examples=True)
    assert result.status == "pass" and result.examples is None  # nothing flagged
    healthy.tables["objects"][-1] = row  # the same areas in frame order 0, 1, 2: 576 then 36
    healthy.write()
    flags = {r["label"]: r["flicker"] for r in one(healthy.root, "mask_quality", examples=True).examples.records()}
    assert flags["shuffled"] is True


def test_mask_quality_flags_masks_covering_most_of_the_frame(healthy):
    clip_id = healthy.clips[0].clip_id
    background = np.ones((12, 96, 128), bool)
    background[:, :20, :20] = False  # 97% of the frame: the segmenter took the background
    add_object(healthy, clip_id, "everything", background)
    healthy.write()
    result = one(healthy.root, "mask_quality", examples=True)
    assert (result.status, result.value) == ("warn", pytest.approx(1 / 9))
    assert [(r["label"], r["huge"]) for r in result.examples.records()] == [("everything", True)]
    assert result.note == ""  # no run.json naming random-weight models: nothing excuses it


def _write_without_areas(data: DatasetRows, monkeypatch) -> None:
    """Commit the rows as a writer did before objects had an `areas` column."""
    with monkeypatch.context() as patch:
        patch.setattr(ObjectRow, "ARROW", ObjectRow.ARROW.remove(ObjectRow.ARROW.get_field_index("areas")))
        data.write()
    assert "areas" not in pq.read_schema(DatasetStore(data.root).table_version("objects").files[0]).names


def test_mask_quality_reads_objects_written_before_the_areas_column(healthy, monkeypatch):
    clip_id = healthy.clips[0].clip_id
    flicker = square_masks(10, 10, 24, 2, 0)
    flicker[5::2] = square_masks(10, 10, 6, 2, 0)[5::2]
    add_object(healthy, clip_id, "flickering blob", flicker)
    healthy.write()
    carried = one(healthy.root, "mask_quality", examples=True)
    _write_without_areas(healthy, monkeypatch)
    con = DatasetStore(healthy.root).duckdb()
    assert con.execute("SELECT count(*), count(areas) FROM objects").fetchone() == (9, 0)  # typed nulls
    decoded = one(healthy.root, "mask_quality", examples=True)
    assert (decoded.status, decoded.value) == (carried.status, carried.value) == ("warn", pytest.approx(1 / 9))
    assert decoded.examples.records() == carried.examples.records()

    speck = square_masks(40, 40, 2, 1, 0)  # a later shard, with areas, beside the old file
    newer = DatasetRows(healthy.root)
    newer.add("objects", add_object(DatasetRows(healthy.root), clip_id, "speck", speck))
    newer.write(stage="test", shard="1")
    mixed = one(healthy.root, "mask_quality", examples=True)
    assert mixed.value == pytest.approx(2 / 10)
    assert {r["label"] for r in mixed.examples.records()} == {"flickering blob", "speck"}
    assert DatasetStore(healthy.root).read_table("objects").column("areas").null_count == 9
    compact(DatasetStore(healthy.root), target_bytes=1 << 30)  # old and new rows in one part
    assert [Path(f).name[:5] for f in DatasetStore(healthy.root).table_version("objects").files] == ["part-"]
    assert one(healthy.root, "mask_quality").value == pytest.approx(2 / 10)
    assert DatasetStore(healthy.root).read_table("objects").column("areas").null_count == 9


def test_mask_area_udf_matches_pycocotools_and_numpy(healthy):
    healthy.write()
    db = audit.AuditDatabase(healthy.root)
    try:
        rows = db.query("SELECT object_id, list_transform(masks, lambda m: mask_area(m)) AS areas FROM objects").rows
    finally:
        db.close()
    by_id = {o.object_id: o for o in healthy.tables["objects"]}
    for object_id, areas in rows:
        expected = [mask_area(m) for m in by_id[object_id].masks]
        assert areas == expected and areas[0] == 24 * 24


def test_review_rejection_rate(healthy):
    objects = healthy.tables["objects"]
    healthy.tables["reviews"] = [
        ReviewRow.build(LINEAGE, review_id=stable_id("r", o.object_id), clip_id=o.clip_id, object_id=o.object_id,
                        verdict="reject" if i < 3 else "accept", score=0.5, reason="caption_wrong")
        for i, o in enumerate(objects)
    ]
    healthy.write()
    result = one(healthy.root, "review_rejection_rate", examples=True)
    assert (result.status, result.value) == ("warn", pytest.approx(3 / 8))
    assert {r["model"] for r in result.summary.records()} == {"gpt-4o-mini"}
    assert len(result.examples.rows) == 3


def test_caption_lengths(healthy):
    clip_id = healthy.clips[0].clip_id
    for n in range(5):  # detailed captions of one or two words: suspicious
        healthy.add("captions", CaptionRow.build(LINEAGE, caption_id=stable_id("terse", n), clip_id=clip_id,
                                                 kind="object_detailed", text="red  square" if n else "x", source="annotator"))
    for n in range(3):  # short captions are short by design and do not count
        healthy.add("captions", CaptionRow.build(LINEAGE, caption_id=stable_id("short", n), clip_id=clip_id,
                                                 kind="object_short", text="red  square" if n else "x", source="annotator"))
    healthy.write()
    result = one(healthy.root, "caption_lengths")
    assert (result.status, result.value) == ("fail", pytest.approx(5 / 17))
    short = next(r for r in result.summary.records() if r["kind"] == "object_short")
    assert (short["min_words"], short["max_words"]) == (1, 2)


def test_mcq_categories_and_letters(healthy):
    healthy.tables["mcqs"] = [
        add_mcq(DatasetRows(healthy.root), c.clip_id, "MR", "A", f"Which way does thing {k} move?", k)
        for c in healthy.clips for k in range(5)
    ]
    healthy.write()
    found = statuses(healthy.root, ["mcq_categories", "mcq_answer_letters"])
    assert found == {"mcq_categories": "fail", "mcq_answer_letters": "fail"}
    total = len(healthy.tables["mcqs"])  # every answer A: 75 points off 25%, less one question of slack
    assert one(healthy.root, "mcq_answer_letters").value == pytest.approx((0.75 * total - 1) / total * 100)


def test_answer_letters_one_question_of_slack_under_40(healthy):
    mcqs = healthy.tables["mcqs"]  # 24 four-option questions, 6 per letter
    first = next(n for n, q in enumerate(mcqs) if q.answer == "B")
    mcqs[first] = mcqs[first].model_copy(update={"answer": "A"})  # 7 on A: within the slack
    healthy.write()
    assert (one(healthy.root, "mcq_answer_letters").status, one(healthy.root, "mcq_answer_letters").value) == (
        "pass", 0.0)
    second = next(n for n, q in enumerate(mcqs) if q.answer == "C")
    mcqs[second] = mcqs[second].model_copy(update={"answer": "A"})  # 8 on A: one beyond it
    healthy.write()
    result = one(healthy.root, "mcq_answer_letters")
    assert (result.status, result.value) == ("fail", pytest.approx(100 / 24))


def test_duplicate_questions(healthy):
    clip_id = healthy.clips[0].clip_id
    add_mcq(healthy, clip_id, "MR", "B", "  question MR about   CLIP 0? ", 100)
    healthy.write()
    result = one(healthy.root, "duplicate_questions", examples=True)
    assert (result.status, result.value) == ("warn", pytest.approx(1 / 25))
    assert result.examples.records()[0]["copies"] == 2


def test_blind_filter_reads_the_mcq_checks_table_when_present(healthy):
    healthy.write()
    mcqs = healthy.tables["mcqs"]
    rows = [{"question_id": m.question_id, "clip_id": m.clip_id, "check": "blind",
             "outcome": "drop" if i < 6 else "pass", "detail": ""} for i, m in enumerate(mcqs)]
    rows.append({"question_id": mcqs[0].question_id, "clip_id": mcqs[0].clip_id, "check": "option_balance",
                 "outcome": "flag", "detail": ""})
    write_mcq_checks(healthy.root, rows)
    result = one(healthy.root, "blind_filter", examples=True)
    assert (result.status, result.value) == ("warn", pytest.approx(6 / 24))
    assert len(result.examples.rows) == 6 and result.examples.records()[0]["question"]


def test_preference_pairs_identical(healthy):
    clip_id = healthy.clips[0].clip_id
    healthy.add("preferences", PreferenceRow.build(
        LINEAGE, pair_id=stable_id("same"), clip_id=clip_id, question="Where?", chosen="Left.", rejected=" left. ",
        error_type="wrong_direction"))
    healthy.write()
    result = one(healthy.root, "preference_pairs")
    assert (result.status, result.value) == ("fail", 1)


def test_rows_without_lineage(healthy):
    mcqs = healthy.tables["mcqs"]
    mcqs[0] = mcqs[0].model_copy(update={"prompt_version": ""})
    healthy.tables["reviews"][0] = healthy.tables["reviews"][0].model_copy(update={"model_revision": " "})
    healthy.write()
    result = one(healthy.root, "lineage", examples=True)
    assert (result.status, result.value) == ("fail", 2)
    assert {r["table"] for r in result.examples.records()} == {"mcqs", "reviews"}


def test_token_cost_uses_the_price_table(healthy):
    expensive = LINEAGE.model_copy(update={"model": "gpt-4o", "prompt_tokens": 10_000_000, "completion_tokens": 5_000_000})
    healthy.tables["mcqs"] = [McqRow.build(expensive, **m.model_dump(exclude=set(type(LINEAGE).model_fields)))
                              for m in healthy.tables["mcqs"][:2]]
    healthy.write()
    result = one(healthy.root, "token_cost")
    per_mcq = (10 * 2.5 + 5 * 10.0)  # 10M prompt, 5M completion tokens at gpt-4o prices
    cheap = 20 * (1000 * 0.15 + 200 * 0.6) / 1e6  # captions (8), reviews (8), preferences (4) on gpt-4o-mini
    assert result.value == pytest.approx(2 * per_mcq + cheap)
    assert result.status == "warn"
    local = next(r for r in result.summary.records() if r["model"] == "renderer")
    assert local["cost_usd"] == 0


def test_invalid_rows_fail_above_one_percent(healthy):
    healthy.add("rejections", RejectionRow(rejection_id=stable_id("bad"), item_id="q1", stage="questions",
                                           reason="invalid_row", detail="mcqs.answer: bad letter"))
    healthy.write()
    result = one(healthy.root, "rejection_reasons")
    assert (result.status, result.value) == ("fail", pytest.approx(1 / 62))  # 61 rows + the rejection


def test_motion_categories_flag_a_thin_category(healthy):
    healthy.write()
    result = one(healthy.root, "motion_categories")
    assert (result.status, result.value) == ("pass", pytest.approx(1 / 6))
    assert {r["category"]: r["questions"] for r in result.summary.records()} == dict.fromkeys(CATEGORIES, 4)

    mcqs = healthy.tables["mcqs"]
    rc = [n for n, q in enumerate(mcqs) if q.category == "RC"]
    for n in rc[1:]:  # RC keeps 1 of 24 questions: 4%
        mcqs[n] = mcqs[n].model_copy(update={"category": "MR"})
    healthy.tables["mcqs"] = [q for q in mcqs if q.category != "AO"]  # AO: none at all
    healthy.write()
    result = one(healthy.root, "motion_categories", examples=True)
    assert (result.status, result.value) == ("warn", 0)
    assert result.note == "thin: AO 0/20, RC 1/20"
    assert [r["category"] for r in result.examples.records()] == ["AO", "RC"]


def test_partial_dataset_gives_na_not_errors(tmp_path):
    data = DatasetRows(tmp_path / "ds")
    add_clip(data, 0, [])
    data.tables = {"clips": data.tables["clips"]}  # only clips: no objects, captions, mcqs...
    data.write()
    found = statuses(data.root)
    assert "error" not in found.values()
    assert found["rows_per_table"] == "pass" and found["lineage"] == "pass"
    for name in ("clips_without_objects", "mask_quality", "mcq_categories", "duplicate_questions",
                 "blind_filter", "preference_pairs", "review_rejection_rate", "caption_lengths"):
        assert found[name] == "n/a", name


def test_empty_dataset_fails_rows_per_table(tmp_path):
    (tmp_path / "empty").mkdir()
    found = statuses(tmp_path / "empty")
    assert found["rows_per_table"] == "fail"
    assert "error" not in found.values()


def test_strict_exit_code(healthy, capsys):
    healthy.write()
    assert cli(["audit", "--dataset", str(healthy.root), "--strict"]) == 0
    out = capsys.readouterr().out
    assert "rows_per_table" in out and "mcq_answer_letters" in out and "truncated_video" in out
    healthy.add("preferences", PreferenceRow.build(
        LINEAGE, pair_id=stable_id("same"), clip_id=healthy.clips[0].clip_id, question="Q?", chosen="a", rejected="a",
        error_type="none"))
    healthy.write()
    assert cli(["audit", "--dataset", str(healthy.root)]) == 0
    assert cli(["audit", "--dataset", str(healthy.root), "--strict"]) == 1


def test_json_and_csv_output(healthy, capsys):
    healthy.write()
    assert cli(["audit", "--dataset", str(healthy.root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["mcq_categories"]["status"] == "pass"
    assert {r["category"] for r in by_name["mcq_categories"]["summary"]} == {"MR", "LM", "CM", "MO", "AO", "RC"}
    assert cli(["audit", "--dataset", str(healthy.root), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["check"]: r["status"] for r in rows}["blind_filter"] == "n/a"


def test_ad_hoc_sql(healthy, capsys):
    healthy.write()
    query = "SELECT category, count(*) AS n FROM mcqs GROUP BY category ORDER BY category"
    assert cli(["audit", "--dataset", str(healthy.root), "--sql", query, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {"category": "AO", "n": 4}
    assert cli(["audit", "--dataset", str(healthy.root), "--sql", query, "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "category,n" and lines[1] == "AO,4" and len(lines) == 7
    assert cli(["audit", "--dataset", str(healthy.root), "--sql", "SELECT count(*) AS n FROM lineage"]) == 0
    assert "60" in capsys.readouterr().out  # every row with lineage columns: 4+8+12+8+24+4
    assert cli(["audit", "--dataset", str(healthy.root), "--sql", "SELECT * FROM no_such_table"]) == 2
    assert "the query failed" in capsys.readouterr().err


def test_missing_dataset_is_a_user_error(tmp_path, capsys):
    assert cli(["audit", "--dataset", str(tmp_path / "nope")]) == 2
    assert "no dataset at" in capsys.readouterr().err


def test_shell_prints_views_without_the_cli(healthy, capsys, monkeypatch):
    healthy.write()
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cli(["audit", "--dataset", str(healthy.root), "--shell"]) == 0
    out = capsys.readouterr().out
    first, _, statements = out.partition("\n")
    assert "duckdb CLI" in first
    con = duckdb.connect()
    con.execute(statements)  # the printed statements work as pasted
    assert con.execute("SELECT count(*) FROM mcqs").fetchall() == [(24,)]
    assert con.execute("SELECT count(*) FROM sft").fetchall() == [(0,)]
    assert con.execute("SELECT sum(rows) FROM table_rows").fetchall() == [(61,)]
    assert con.execute("SELECT stage, clips FROM stage_commits").fetchall() == [("test", 0)]
    # every built-in check runs in the shell too, helper tables (mcq_category_counts) included
    for name in ("stage_errors", "expected_tables", "mcq_categories", "motion_categories", "lineage", "token_cost"):
        for section in ("setup", "metric"):
            if section in audit.load_checks(names=[name])[0].sections:
                con.execute(audit.load_checks(names=[name])[0].sections[section])


def test_shared_helper_tables_are_built_once_per_snapshot(healthy):
    healthy.write()
    db = audit.AuditDatabase(healthy.root)
    try:
        counts = "SELECT sum(questions) FROM mcq_category_counts"
        assert db.query(counts).rows == [(24,)]
        db.con.execute("INSERT INTO mcq_category_counts VALUES ('MR', 1, 1)")  # kept: built once
        assert db.query(counts).rows == [(25,)]
        add_mcq(healthy, healthy.clips[0].clip_id, "MR", "B", "One more question?", 100)
        healthy.write()
        db.refresh()  # a new snapshot builds it again, from the new rows
        assert db.query(counts).rows == [(25,)]
        assert db.query("SELECT questions FROM mcq_category_counts WHERE category = 'MR'").rows == [(5,)]
    finally:
        db.close()


def test_user_checks_folder_adds_and_overrides(healthy, tmp_path):
    healthy.write()
    extra = tmp_path / "checks"
    extra.mkdir()
    (extra / "few_mcqs.sql").write_text(
        "-- check: few_mcqs\n-- measures: MCQs per clip\n-- requires: mcqs\n-- warn: per_clip < 10\n"
        "-- [metric]\nSELECT count(*) / count(DISTINCT clip_id) AS per_clip FROM mcqs;\n")
    results = {r.name: r for r in audit.run_audit(healthy.root, audit.load_checks([extra]))}
    assert (results["few_mcqs"].status, results["few_mcqs"].value) == ("warn", 6)
    (extra / "broken.sql").write_text("-- check: broken\n-- warn: x >> 1\n-- [metric]\nSELECT 1 AS x;\n")
    with pytest.raises(audit.UserError, match="not of the form"):
        audit.load_checks([extra])


def test_broken_check_sql_is_an_error_status_not_a_crash(healthy, tmp_path):
    healthy.write()
    extra = tmp_path / "checks"
    extra.mkdir()
    (extra / "typo.sql").write_text("-- check: typo\n-- fail: n > 0\n-- [metric]\nSELEC count(*) AS n FROM mcqs;\n")
    results = {r.name: r for r in audit.run_audit(healthy.root, audit.load_checks([extra]))}
    assert results["typo"].status == "error" and "Parser" in results["typo"].note
    assert results["rows_per_table"].status == "pass"


def test_audit_while_a_run_is_writing(healthy):
    """A writer keeps committing (new shards and rewrites of the same shard); every audit sees whole shards."""
    healthy.write()
    clip_id = healthy.clips[0].clip_id
    store = DatasetStore(healthy.root)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        try:
            for n in range(400):
                if stop.is_set():
                    return
                rows = [add_mcq(DatasetRows(healthy.root), clip_id, "MR", "ABCD"[k % 4], f"Live {n} {k}?", k)
                        for k in range(8)]
                store.commit(store.stage_shard("live", f"s{n % 5}", {"mcqs": rows}), {})
        except BaseException as err:  # surfaced by the main thread
            errors.append(err)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(8):
            results = audit.run_audit(healthy.root)
            assert "error" not in {r.status for r in results}, [(r.name, r.note) for r in results if r.status == "error"]
            rows = {(r["table"], r["source"]): r["rows"] for r in
                    next(r for r in results if r.name == "rows_per_table").summary.records()}
            assert (rows[("mcqs", "template")] - 24) % 8 == 0  # whole shards only
    finally:
        stop.set()
        thread.join()
    assert not errors


def test_audit_leaves_a_writers_staging_alone_and_cleans_its_snapshot(healthy):
    healthy.write()
    in_flight = healthy.root / "_staging" / "questions-s1-1234abcd"
    in_flight.mkdir(parents=True)
    (in_flight / "mcqs.parquet").write_bytes(b"half written")
    assert statuses(healthy.root)["rows_per_table"] == "pass"
    assert (in_flight / "mcqs.parquet").read_bytes() == b"half written"
    assert not (healthy.root / audit.SNAPSHOTS).exists()


# ----- --strict on real builds: what the run's stages should have written -----
def _strict(root, capsys) -> tuple[int, dict[str, audit.CheckResult]]:
    code = cli(["audit", "--dataset", str(root), "--strict"])
    capsys.readouterr()
    return code, {r.name: r for r in audit.run_audit(root)}


def test_an_empty_table_a_stage_should_have_filled_fails_instead_of_na(healthy):
    healthy.tables.pop("preferences")
    healthy.write()
    assert one(healthy.root, "preference_pairs").status == "n/a"  # no run.json: nothing was promised
    (healthy.root / "run.json").write_text(json.dumps({"stages": {"ingest": {}, "question_writer": {}}}))
    result = one(healthy.root, "preference_pairs")
    assert (result.status, result.note) == ("fail", "no rows in preferences, which question_writer should have written")
    tables = one(healthy.root, "expected_tables", examples=True)
    assert (tables.status, tables.value, tables.note) == ("fail", 2, "empty: preferences, sft")
    assert {r["table"]: r["written_by"] for r in tables.examples.records()} == {
        "preferences": "question_writer", "sft": "question_writer"}


def test_random_weights_excuse_only_tables_they_must_leave_empty(healthy):
    healthy.tables.pop("preferences")
    healthy.tables.pop("reviews")
    healthy.write()
    tiny = {"chat": {"backend": "local", "model": "tiny:qwen2"}}
    stages = {"ingest": {"config": {}}, "question_writer": {"config": tiny}, "reviewer": {"config": tiny}}
    (healthy.root / "run.json").write_text(json.dumps({"stages": stages}))
    pairs = one(healthy.root, "preference_pairs")
    assert (pairs.status, pairs.note) == ("fail", "expected with random-weight models: a random-weight question "
                                                  "writer grounds no question in its caption, so no preference pair can be made")
    assert one(healthy.root, "review_rejection_rate").note == "no rows in reviews, which reviewer should have written"
    tables = one(healthy.root, "expected_tables")
    assert (tables.status, tables.note) == ("fail", "empty: preferences, reviews, sft")  # not all excused

    stages["question_writer"]["config"] = {"chat": {"backend": "openai", "model": "gpt-4.1"}}  # a real model
    (healthy.root / "run.json").write_text(json.dumps({"stages": stages}))
    assert one(healthy.root, "preference_pairs").note == (
        "no rows in preferences, which question_writer should have written")


def test_strict_fails_on_captionless_videos(tmp_path, capsys):
    from agents.video import write_video
    from tests.helpers_footage import FPS, object_segment

    videos = tmp_path / "videos"
    videos.mkdir()
    for n in range(3):
        write_video(videos / f"v{n}.mp4", object_segment(n, 48, (200, 100, 50)), FPS)
    root = tmp_path / "ds"
    from engine.config import STAGE_CLASSES

    stages = ",".join(s for s in STAGE_CLASSES if s != "motion_captioner")  # nothing writes a caption for them
    # and no measured camera question: a dataset with no question at all
    assert cli(["build-motionvid-qa", "--dataset", str(root), "--source", str(videos), "--executor", "local",
                "--stages", stages, "--set", "template_writer.camera_questions=false"]) == 0
    code, results = _strict(root, capsys)
    assert code == 1
    assert results["rows_per_table"].status == "pass"
    # random weights caption the clips (motion captioner) but write no valid question
    assert results["expected_tables"].status == "fail"
    assert "mcqs" in set(results["expected_tables"].note.split(": ")[1].split(", "))
    for name in ("mcq_categories", "mcq_answer_letters"):
        assert results[name].status == "fail" and "should have written" in results[name].note, name
    assert "n/a" not in {r.status for name, r in results.items() if name != "blind_filter"} - {"pass"}


def test_strict_fails_when_every_model_stage_errored(tmp_path, capsys, monkeypatch):
    from tests.fakes.openai_server import Fail, FakeOpenAIServer

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    root = tmp_path / "ds"
    with FakeOpenAIServer(lambda body: Fail(500)) as server:
        flags = []
        for stage in ("motion_captioner", "analyzer", "annotator", "reviewer", "refiner", "question_writer",
                      "mcq_filters"):
            for key, value in {"backend": "openai", "model": "fake-gpt", "base_url": server.base_url,
                               "max_retries": 0, "backoff_initial_s": 0.01, "backoff_max_s": 0.02}.items():
                flags += ["--set", f"{stage}.chat.{key}={value}"]
        assert cli(["build-motionvid-qa", "--dataset", str(root), "--source", "virtual:3", "--executor", "local",
                    *flags]) == 0
    code, results = _strict(root, capsys)
    assert code == 1
    errors = results["stage_errors"]
    assert (errors.status, errors.value) == ("fail", 1.0)
    for stage in ("analyzer", "annotator", "question_writer"):
        assert f"{stage} 3/3 clips (api_error)" in errors.note
    assert results["expected_tables"].status == "fail" and "reviews" in results["expected_tables"].note
    assert results["review_rejection_rate"].status == "fail"


@pytest.mark.slow
def test_demo_fails_only_where_random_weights_must(tmp_path, capsys):
    root = tmp_path / "demo"
    assert cli(["build-motionvid-qa", "--dataset", str(root), "--source", "virtual:6", "--executor", "local"]) == 0
    code, results = _strict(root, capsys)
    failed = {name: r.note for name, r in results.items() if r.status in ("fail", "error")}
    assert code == 1 and "caption_lengths" in failed, failed
    assert failed["caption_lengths"] == ("expected with random-weight models: "
                                         "a random-weight captioner writes a few noise tokens, not sentences")
    # nothing fails that random weights do not explain, each in one line
    assert all(note.startswith("expected with random-weight models: ") and "\n" not in note
               for note in failed.values()), failed
    for name in ("stage_errors", "rows_per_table", "lineage", "rejection_reasons"):
        assert results[name].status == "pass", (name, results[name].note)
    assert results["motion_categories"].status in ("pass", "warn")


@pytest.mark.parametrize("columns", [60, 100, 240])
def test_audit_output_fits_the_terminal(healthy, capsys, monkeypatch, columns):
    healthy.tables["mcqs"] = [q for q in healthy.tables["mcqs"] if q.category != "AO"]  # a warn with a note
    healthy.write()
    monkeypatch.setenv("COLUMNS", str(columns))
    assert cli(["audit", "--dataset", str(healthy.root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns
    assert any("thin: AO 0/20" in line for line in lines)  # a note is never cut short
    wrapped = [line for line in lines if line.startswith("│ ") and line.split("│")[1].strip() == ""]
    assert not wrapped, wrapped[:3]  # no table row wraps into a second line: a narrow layout instead
    narrow = any(line.startswith("motion_categories ") for line in lines)
    assert narrow == (columns < 200)


def test_mask_area_function_takes_long_vectors():
    import numpy as np
    import pyarrow as pa

    from engine.audit import _mask_area_arrow
    from schemas import encode_masks

    stack = np.zeros((600, 24, 32), bool)
    for k in range(600):
        stack[k, : 1 + k % 20, : 1 + k % 30] = True
    rles = [{"size": list(r.size), "counts": r.counts} for r in encode_masks(stack)]
    vector = pa.array(rles[:300] + [None] + rles[300:], pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())]))
    areas = _mask_area_arrow(vector).to_pylist()
    expected = [int(m.sum()) for m in stack]
    assert areas == expected[:300] + [None] + expected[300:]
