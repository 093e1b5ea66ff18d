import json

import pytest

from agents.base import Batch
from agents.ingest import Ingest, sampling_plan
from agents.video import VideoInfo
from engine.run import main as cli
from engine.sources import iter_source
from engine.store import DatasetStore
from tests.helpers_media import write_bad_files, write_good_clip


@pytest.fixture()
def messy_folder(tmp_path):
    folder = tmp_path / "videos"
    expected = write_bad_files(folder)
    write_good_clip(folder / "good_a.mp4", seed=1)
    (folder / "nested").mkdir()
    write_good_clip(folder / "nested" / "good_b.mp4", seed=2)
    (folder / "notes.txt").write_text("not a video suffix: ignored by the folder source")
    return folder, expected


def test_every_bad_file_gets_its_own_reason_and_good_clips_are_in(messy_folder, tmp_path):
    folder, expected = messy_folder
    items = list(iter_source(str(folder)))
    assert len(items) == 7
    out = Ingest().process_batch(Batch(root=tmp_path, items=items))
    reasons = {r.item_id.removeprefix("file:"): r.reason for r in out.rejections}
    assert reasons == expected
    clips = out.rows["clips"]
    assert sorted(c.source_key for c in clips) == ["file:good_a.mp4", "file:nested/good_b.mp4"]
    clip = clips[0]
    assert (clip.width, clip.height, clip.num_frames, clip.fps) == (96, 64, 24, 12.0)
    assert clip.frame_indices[0] == 0 and clip.frame_indices[-1] == 23


def test_clip_ids_are_content_hashes(tmp_path):
    a = write_good_clip(tmp_path / "a.mp4", seed=3)
    b = tmp_path / "copy_of_a.mp4"
    b.write_bytes(a.read_bytes())
    c = write_good_clip(tmp_path / "c.mp4", seed=4)
    out = Ingest().process_batch(Batch(root=tmp_path, items=list(iter_source(str(tmp_path)))))
    ids = {row.source_key: row.clip_id for row in out.rows["clips"]}
    assert sorted(ids) == ["file:a.mp4", "file:c.mp4"] and ids["file:a.mp4"] != ids["file:c.mp4"]
    (repeat,) = out.rejections  # the copy is the same clip: one row, and a rejection naming the first
    assert (repeat.item_id, repeat.reason, repeat.clip_id) == ("file:copy_of_a.mp4", "duplicate_clip", ids["file:a.mp4"])
    assert "file:a.mp4" in repeat.detail and c.exists()


def test_sampling_plan_is_even_and_inside_the_clip():
    plan = sampling_plan(VideoInfo(100, 10.0, 8, 8, 10.0), 5)
    assert plan == [0, 25, 50, 74, 99] or plan == [0, 25, 50, 75, 99]
    assert sampling_plan(VideoInfo(3, 10.0, 8, 8, 0.3), 16) == [0, 1, 2]


def test_manifest_jsonl_with_captions_and_missing_rows(tmp_path):
    write_good_clip(tmp_path / "v1.mp4", seed=5)
    manifest = tmp_path / "m.jsonl"
    rows = [{"video_path": "v1.mp4", "caption": "a red square slides right", "split": "train", "shot": 3},
            {"video_path": "missing.mp4"}, {"caption": "no path"}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    items = list(iter_source(str(manifest)))
    out = Ingest().process_batch(Batch(root=tmp_path / "ds", items=items))
    (clip,) = out.rows["clips"]
    assert clip.caption == "a red square slides right" and clip.source == "manifest"
    assert json.loads(clip.metadata) == {"split": "train", "shot": 3}
    assert sorted(r.reason for r in out.rejections) == ["invalid_manifest_row", "invalid_manifest_row", "source_missing"]


def test_manifest_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_good_clip(tmp_path / "v1.mp4", seed=6)
    pq.write_table(pa.table({"video_path": [f"file://{tmp_path}/v1.mp4"], "caption": ["x"]}), tmp_path / "m.parquet")
    out = Ingest().process_batch(Batch(root=tmp_path, items=list(iter_source(str(tmp_path / "m.parquet")))))
    assert [c.caption for c in out.rows["clips"]] == ["x"]


def test_cli_run_on_messy_folder_completes(messy_folder, tmp_path, capsys):
    folder, expected = messy_folder
    dataset = tmp_path / "ds"
    code = cli(["build-motionvid-qa", "--dataset", str(dataset), "--source", str(folder),
                "--stages", "ingest", "--executor", "local", "--shard-size", "3"])
    assert code == 0
    con = DatasetStore(dataset).duckdb()
    assert con.execute("SELECT count(*) FROM clips").fetchall()[0][0] == 2
    rejected = dict(con.execute("SELECT replace(item_id, 'file:', ''), reason FROM rejections").fetchall())
    assert rejected == expected
    assert "rejections:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source", "/nonexistent/videos"], "does not exist"),
        (["--source", "virtual:0"], "positive number"),
        (["--source", "virtual:x"], "virtual:N"),
        (["--bogus-option"], "unrecognized arguments"),
        (["--stages", "ingest,nonsense"], "unknown stage"),
    ],
)
def test_user_errors_are_one_sentence_without_traceback(tmp_path, capsys, argv, message):
    try:
        code = cli(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--executor", "local", *argv])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_dataset_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "f"
    target.write_text("x")
    assert cli(["build-motionvid-qa", "--dataset", str(target), "--source", "virtual:1"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_manifest_span_counts_frames_from_start(tmp_path):
    import numpy as np

    from agents.video import write_video

    frames = [np.full((32, 32, 3), 8 * i, np.uint8) for i in range(30)]  # frame i has brightness 8i
    write_video(tmp_path / "long.mp4", frames, fps=10)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video_path": "long.mp4", "start": 1.0, "end": 2.5}) + "\n")
    out = Ingest({"num_samples": 4}).process_batch(Batch(root=tmp_path, items=list(iter_source(str(manifest)))))
    (clip,) = out.rows["clips"]
    assert (clip.num_frames, clip.start, clip.end) == (15, 1.0, 2.5)
    got = Batch(root=tmp_path).read_frames(clip, [0, 14])
    assert abs(int(got[0].mean()) - 80) <= 4 and abs(int(got[1].mean()) - 8 * 24) <= 4


def test_hanging_or_crashing_probe_becomes_a_rejection_not_a_hang(tmp_path):
    write_good_clip(tmp_path / "a.mp4", seed=1)
    items = list(iter_source(str(tmp_path)))
    for entry, reason in (("tests.helpers_footage:hanging_decoder", "decode_timeout"),
                          ("tests.helpers_footage:crashing_decoder", "decoder_crashed")):
        stage = Ingest({"probe_timeout_s": 2})
        stage.probe_entry = entry
        out = stage.process_batch(Batch(root=tmp_path, items=items))
        stage.teardown()
        assert [r.reason for r in out.rejections] == [reason]
        assert out.rejections[0].retryable == (reason == "decode_timeout")
