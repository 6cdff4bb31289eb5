"""bench/gpu_check.py runs end to end (its --tiny size, on the CPU) and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--tiny", "--data", str(ROOT / "sample_data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["steps"] == 8 and report["tokens_per_second"] > 0
    assert report["packing"]["enabled"] and report["packing"]["check_max_abs_diff"] < 1e-4
    assert "tokens/s" in r.stdout
