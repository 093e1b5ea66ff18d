"""Real files as they come: display rotation, variable frame rate, the camera-motion estimate."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from agents.base import Batch
from agents.ingest import Ingest
from agents.video import probe, read_frames
from engine.sources import iter_source
from tests.helpers_footage import write_footage_folder


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    folder = tmp_path_factory.mktemp("footage")
    return folder, write_footage_folder(folder)


@pytest.fixture(scope="module")
def clips(footage, tmp_path_factory):
    folder, _ = footage
    out = Ingest().process_batch(Batch(root=tmp_path_factory.mktemp("ds"), items=list(iter_source(str(folder)))))
    assert not out.rejections, out.rejections
    return {c.source_key.removeprefix("file:"): c for c in out.rows["clips"]}


def test_rotated_video_decodes_upright(footage, clips):
    folder, facts = footage
    info = probe(folder / "rotated.mp4")
    assert (info.width, info.height, info.rotation) == (96, 128, -90)
    clip = clips["rotated.mp4"]
    assert (clip.width, clip.height) == (96, 128) and json.loads(clip.metadata)["rotation"] == -90
    frame = read_frames(folder / "rotated.mp4", [0])[0]
    assert frame.shape == (128, 96, 3)
    assert np.abs(frame.astype(int) - facts["rotated.mp4"]["first_upright"]).mean() < 6


def test_variable_frame_rate_is_sampled_by_time(footage, clips):
    _, facts = footage
    times = np.array(facts["vfr.mp4"]["times"])
    clip = clips["vfr.mp4"]
    assert json.loads(clip.metadata)["variable_frame_rate"] is True
    picked = times[clip.frame_indices]
    targets = np.linspace(0, times[-1], len(picked))
    assert np.abs(picked - targets).max() <= 0.14  # each pick is the frame nearest its time
    by_count = times[np.linspace(0, len(times) - 1, len(picked)).round().astype(int)]
    assert np.abs(picked - targets).mean() < np.abs(by_count - targets).mean()
    assert clip.fps == pytest.approx(len(times) / clip.duration)


def test_camera_motion_is_estimated_without_curation(clips):
    assert clips["pan.mp4"].camera_motion == "pan_right"
    assert clips["still.mp4"].camera_motion == "static"


def _ingest(tmp_path, source: str):
    out = Ingest().process_batch(Batch(root=tmp_path / "ds", items=list(iter_source(source))))
    return out, {r.item_id: (r.reason, r.detail) for r in out.rejections}


def test_bad_utf8_lines_and_names_are_rejections_and_good_rows_go_in(footage, tmp_path):
    folder, _ = footage
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_bytes(b"".join([
        json.dumps({"video_path": str(folder / "still.mp4")}).encode() + b"\n",
        b'{"video_path": "caf\xe9.mp4", "caption": "latin-1 bytes"}\n',
        b"not json at all\n",
        json.dumps({"video_path": str(folder / "pan.mp4"), "caption": "a pan"}).encode() + b"\n",
    ]))
    out, rejected = _ingest(tmp_path, str(manifest))
    assert sorted(c.source_key.split(":")[1] for c in out.rows["clips"]) == ["1", "4"]
    assert rejected["manifest:2:<invalid>"][0] == "invalid_utf8" and "line 2" in rejected["manifest:2:<invalid>"][1]
    assert rejected["manifest:3:<invalid>"][0] == "invalid_manifest_row"

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "still.mp4").write_bytes((folder / "still.mp4").read_bytes())
    (odd.joinpath(bytes.fromhex("6361666520e92e6d7034").decode("utf-8", "surrogateescape"))).write_bytes(
        (folder / "pan.mp4").read_bytes())
    out, rejected = _ingest(tmp_path, str(odd))
    assert [c.source_key for c in out.rows["clips"]] == ["file:still.mp4"]
    [(key, (reason, detail))] = rejected.items()
    assert (key, reason) == ("file:cafe \\xe9.mp4", "invalid_utf8") and "not UTF-8" in detail


def test_remote_paths_read_through_fsspec_or_name_the_missing_extra(footage, tmp_path, monkeypatch):
    import functools
    import http.server
    import threading

    import fsspec  # noqa: F401  (its registry module below)

    # as on an install without the s3 extra (`make setup` installs it)
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)
    folder, _ = footage
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        manifest = tmp_path / "remote.jsonl"
        rows = [{"video_path": f"{base}/pan.mp4"}, {"video_path": f"{base}/gone.mp4"},
                {"video_path": "s3://bucket/clip.mp4"}]
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        out, rejected = _ingest(tmp_path, str(manifest))
    finally:
        server.shutdown()
    [clip] = out.rows["clips"]
    assert clip.video_path.startswith("media/remote/") and json.loads(clip.metadata)["remote_url"] == rows[0]["video_path"]
    assert clip.camera_motion == "pan_right" and (tmp_path / "ds" / clip.video_path).exists()
    reasons = {key.split(":", 2)[1]: value for key, value in rejected.items()}
    assert reasons["2"][0] in {"source_missing", "remote_unreachable"}
    assert reasons["3"][0] == "missing_extra" and "s3fs" in reasons["3"][1]


@pytest.mark.parametrize("kind", ["folder", "manifest"])
def test_an_empty_source_ends_the_run_in_one_sentence(tmp_path, capsys, kind):
    from engine.run import main as cli

    source = tmp_path / "empty"
    if kind == "folder":
        source.mkdir()
        (source / "notes.txt").write_text("no videos here")
    else:
        source = tmp_path / "empty.jsonl"
        source.write_text("\n")
    code = cli(["build-motionvid-qa", "--dataset", str(tmp_path / "ds"), "--source", str(source),
                "--executor", "local"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "nothing to ingest" in err
