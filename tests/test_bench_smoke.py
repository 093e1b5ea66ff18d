"""Every benchmark under bench/ runs in its smoke mode (tiny sizes, seconds) and ends with its JSON
line, so a benchmark cannot rot unnoticed when the code it measures moves on."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
EXPECTED = {  # script -> keys its final JSON line must have
    "audit.py": {"ratio", "audit_s", "scan_s", "statuses"},
    "chat.py": {"ratio", "baseline", "continuous"},
    "gpu.py": {"device", "results"},
    "ingest.py": {"ratio_curation_to_decode", "clips"},
    "pipeline.py": {"ratio_vs_sequential", "api_concurrency_efficiency", "api_concurrency_efficiency_fed",
                    "running_cluster"},
    "vision.py": {"rows", "device"},
}


def test_every_bench_script_has_a_smoke_run():
    # scale.py prints a table, not a JSON line: tests/test_bench_scale.py runs its smoke mode
    scripts = {p.name for p in BENCH.glob("*.py")
               if not p.name.startswith("_") and p.name not in ("baseline_chat.py", "scale.py")}
    assert scripts == set(EXPECTED)
    for name in scripts:
        assert "--smoke" in (BENCH / name).read_text(), name


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(set(EXPECTED) - {"pipeline.py"}))
def test_bench_smoke(script, tmp_path):
    final = _run(script, tmp_path)
    assert EXPECTED[script] <= set(final), final


@pytest.mark.slow
@pytest.mark.ray
def test_pipeline_bench_smoke(tmp_path):
    final = _run("pipeline.py", tmp_path, "--work", str(tmp_path / "work"))
    assert EXPECTED["pipeline.py"] <= set(final), final


def _run(script: str, tmp_path: Path, *extra: str) -> dict:
    env = os.environ | {"PYTHONPATH": str(BENCH.parent), "VDE_CACHE": os.environ.get("VDE_CACHE", str(tmp_path / "cache"))}
    out = subprocess.run([sys.executable, str(BENCH / script), "--smoke", *extra], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
