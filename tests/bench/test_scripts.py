"""The service and re-index benchmarks still run end to end (tiny sizes; no timing asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.dicom.receiver import tool
from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], tmp_path: Path) -> str:
    doc = tmp_path / "benchmarks.md"
    cmd = [sys.executable, *args, "--write-docs", str(doc)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=scaled(600)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return doc.read_text()


@pytest.mark.slow
def test_service_benchmark_reports_every_target(tmp_path: Path) -> None:
    text = _run(
        ["bench/ingest.py", "--models", "baseline", "--uploads", "2", "--rounds", "1",
         "--concurrency", "2", "--per-client", "2", "--vectors", "300", "--queries", "3",
         "--search-model", "baseline"],
        tmp_path,
    )  # fmt: skip
    assert "## Service" in text
    assert re.search(r"\*\*\d+\.\d\dx\*\* \| <= 1\.25x", text)  # ingest / forward
    assert re.search(r"\*\*\d+\.\d\dx\*\* \| >= 0\.7x", text)  # uploaders / model
    assert re.search(r"\| 300 x 848 \| flat \|.*\*\*\+?-?\d+\.\d\d ms\*\*", text)


@pytest.mark.slow
def test_reindex_benchmark_reports_paired_rounds(tmp_path: Path) -> None:
    text = _run(
        ["bench/reindex.py", "--model", "baseline", "--photos", "16", "--size", "96",
         "--batch", "8", "--rounds", "2"],
        tmp_path,
    )  # fmt: skip
    assert "### target model: baseline" in text
    assert len(re.findall(r"^\| [12] \| \d+\.\d \|", text, re.M)) == 2
    assert re.search(r"median of 2 paired rounds: \*\*\d+\.\d\dx\*\*", text)
    assert "job status completed" in text


@pytest.mark.slow
def test_startup_benchmark_times_every_process(tmp_path: Path) -> None:
    text = _run(["bench/startup.py", "--runs", "1", "--warmup", "0"], tmp_path)
    assert "## Start-up" in text and "/usr/bin/time -f %e" in text
    for label in ("--help", "migrate", "keys list", "jobs list", "serve -> /ready 200"):
        row = rf"^\| `endoseek {re.escape(label)}` \| < \d+ s \| \*\*\d+\.\d\d\*\* \((met|MISSED)\)"
        assert re.search(row, text, re.M), label


@pytest.mark.slow
def test_stow_benchmark_pairs_stow_with_rest(tmp_path: Path) -> None:
    text = _run(["bench/stow.py", "--rounds", "1", "--photos", "2"], tmp_path)
    assert "## DICOM" in text and "### STOW-RS vs REST upload" in text
    rows = re.findall(
        r"^\| [12] \| .*\*\*\d+\.\d\dx\*\* \((met|MISSED)\) \| >= 0\.8x \|$", text, re.M
    )
    assert len(rows) == 2


@pytest.mark.slow
def test_dicom_receive_benchmark_pairs_storescp_with_the_receiver(tmp_path: Path) -> None:
    for name in ("storescu", "storescp"):
        tool(name)  # DCMTK: skipped locally when missing, a failure in CI
    text = _run(
        ["bench/dicom_receive.py", "--rounds", "1", "--files", "2", "--latency", "1"], tmp_path
    )
    assert "## DICOM" in text and "### C-STORE receiver" in text
    for setup in ("as packaged", "`TCP_NODELAY=1`"):
        row = rf"^\| {re.escape(setup)} \| \d+\.\d .*\*\*\d+\.\d\dx\*\* \((met|MISSED)\) \|"
        assert re.search(row + r" >= 0\.5x \|$", text, re.M), setup
    assert len(re.findall(r"\| \*\*\d+ ms\*\* \(max \d+\) \|$", text, re.M)) == 2


@pytest.mark.slow
def test_video_benchmark_reports_every_figure(tmp_path: Path) -> None:
    text = _run(
        ["bench/video.py", "--minutes", "0.5", "--size", "1280x720", "--rounds", "1",
         "--model-frames", "16", "--cache", str(tmp_path / "cache")],
        tmp_path,
    )  # fmt: skip
    assert "## Video" in text and "SYNTHETIC colonoscopy, 0.5 min, 1280x720" in text
    ratio = r"^\| pipeline / slower .*\*\*\d+\.\d{3}x\*\* \((met|MISSED)\) \| >= 0\.8x \|$"
    assert re.search(ratio, text, re.M)
    assert re.search(r"^\| upload -> job done .*\*\*\d+ s\*\* \((met|MISSED)\)", text, re.M)
    assert re.search(
        r"^\| peak RSS .*\*\*\d+\.\d\d GiB\*\* \((met|MISSED)\) \| <= 1\.5 GB \|$", text, re.M
    )
    assert re.search(
        r"^\| stored per procedure-minute, without the original .*\*\*\d+\.\d\d MB\*\*", text, re.M
    )
    assert re.search(r"frames sampled, \d+ kept", text)
