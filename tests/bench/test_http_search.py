"""bench/http_search.py still runs end to end at a tiny size (no speed asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]
# backend | workers (processes) | **requests/s** (1 s median) | p50 | p99 | errors = 0
ROW = (
    r"^\| {backend}.* \| {workers} \({procs}\) \| \*\*\d+\.\d\*\* \(\d+\) "
    r"\| [\d.]+ ms \| [\d.]+ ms \| 0 \|"
)


def _run(tmp_path: Path, *args: str) -> str:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Service\n\n### Reading (by hand)\n\nkept\n")
    tiny = ["--vectors", "2000", "--model", "baseline", "--warmup", "1", "--duration", "2"]
    cmd = [sys.executable, "bench/http_search.py", *tiny, *args, "--write-docs", str(doc)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=scaled(600)
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return doc.read_text()


@pytest.mark.slow
def test_faiss_one_worker_is_measured_and_two_are_refused(tmp_path: Path) -> None:
    text = _run(tmp_path, "--configs", "faiss-1", "--pool", "50")
    assert "### Search over HTTP: workers and backends" in text
    assert "### Reading (by hand)\n\nkept" in text  # the other subsections stay
    assert re.search(ROW.format(backend="FAISS", workers=1, procs=1), text, re.M)
    assert re.search(r"^\| FAISS .* \| 2 \| refused by design \(exit 2\)", text, re.M)
    assert "Machine: " in text and "load average" in text
