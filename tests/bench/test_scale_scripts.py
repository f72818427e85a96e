"""The scale-out benchmarks run end to end at toy size (no timing asserted): the GPU check's
plan and CPU smoke mode (bench/gpu_check.sh, bench/archive.py), and re-index Ray vs local."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_check.sh"
STEPS = ["env", "deps", "congruence", "bf16", "archive"]


def _check(tmp_path: Path, *args: str, limit_s: float) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=scaled(limit_s))  # fmt: skip


def test_gpu_check_parses_and_plans_every_step(tmp_path: Path) -> None:
    syntax = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    out = _check(tmp_path, "--dry-run", limit_s=60)
    assert out.returncode == 0, out.stderr
    planned = re.findall(r"^\| (\w+) \| planned \|", (tmp_path / "gpu_check.md").read_text(), re.M)
    assert planned == [*STEPS, "compiled"]
    assert not (tmp_path / "archive.json").exists()  # a plan runs nothing
    assert _check(tmp_path, "--bogus", limit_s=30).returncode == 2


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_step_and_writes_figures(tmp_path: Path) -> None:
    out = _check(tmp_path, "--cpu-smoke", limit_s=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["step"] for s in report["steps"]] == STEPS and report["failed"] is False
    status = {s["step"]: s["status"] for s in report["steps"]}
    assert status["archive"] == status["env"] == status["deps"] == "ok"
    assert {status["congruence"], status["bf16"]} <= {"ok", "skipped"}  # skipped without CUDA
    figures = json.loads((tmp_path / "archive.json").read_text())
    assert set(figures["rates"]) == {"model", "pil", "nvjpeg"}
    assert all(rate > 0 for rate in figures["rates"].values())
    assert figures["photos"] == 16 and 0.9 < figures["cosine_pil_vs_nvjpeg"]["mean"] <= 1.0001
    assert "target 2,700: " in (tmp_path / "gpu_check.md").read_text()
