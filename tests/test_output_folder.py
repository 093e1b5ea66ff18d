"""`--to` of export and report: no writing through a symlink that leads out of the folder."""

from __future__ import annotations

import pytest

from engine.errors import UserError
from engine.export import export
from engine.output_folder import open_output_folder, output_path
from engine.run import main as cli
from tests.helpers_dataset import write_dataset


def test_output_path_refuses_links_leading_out(tmp_path):
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    open_output_folder(out)
    (out / "inner").mkdir()
    (out / "to_inner").symlink_to(out / "inner")
    assert output_path(out, "to_inner/a.json") == out / "to_inner" / "a.json"  # a link that stays inside
    (out / "escape").symlink_to(outside)
    (out / "file.json").symlink_to(outside / "victim.json")
    for name in ("escape/a.json", "file.json", "escape"):
        with pytest.raises(UserError, match="symlink leading out"):
            output_path(out, name)
    with pytest.raises(UserError, match="outside"):
        output_path(out, "../x.json")


def test_to_itself_a_symlink_or_a_file_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UserError, match="is a symlink"):
        open_output_folder(tmp_path / "link")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        open_output_folder(tmp_path / "file")


def test_export_and_report_refuse_and_leave_the_target_untouched(tmp_path, capsys):
    fx = write_dataset(tmp_path / "ds")
    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dpo.jsonl").symlink_to(victim)
    with pytest.raises(UserError, match="symlink leading out"):
        export(fx.root, "dpo", out, media="none")
    assert victim.read_text() == "keep me"
    assert cli(["export", "--dataset", str(fx.root), "--format", "dpo", "--to", str(out), "--media", "none"]) == 2
    assert "symlink" in capsys.readouterr().err
    (out / "media_link").symlink_to(tmp_path)  # export --to a link
    assert cli(["export", "--dataset", str(fx.root), "--format", "dpo", "--to", str(out / "media_link")]) == 2
    report = tmp_path / "report"
    report.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (report / "plots").symlink_to(elsewhere)
    assert cli(["report", "--dataset", str(fx.root), "--to", str(report)]) == 2
    assert "symlink" in capsys.readouterr().err and list(elsewhere.iterdir()) == []
