"""bench/scale.py in smoke mode: every figure is measured and printed (no timing is asserted)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_scale_benchmark_smoke_prints_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--smoke", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for figure in ("files_after", "bytes_per_row", "audit_s", "plan_s", "resume_s", "cache_lookup_s"):
        assert figure in out
    assert "at 1M" in out
    lines = [line.split() for line in out.splitlines() if line.strip() and line.split()[0] in ("16", "48")]
    # every (stage, shard) commit wrote one rejections file before compaction; one part per table after
    assert [(int(r[0]), int(r[1]) == int(r[2]), int(r[3])) for r in lines[:2]] == [(16, True, 1), (48, True, 1)]
    assert "Delta Lake vs this store" in out or "deltalake is not installed" in out
