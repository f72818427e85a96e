"""Start-up cost: which heavy packages each entry point imports, seen from a clean interpreter.

`endoseek --help` and the verbs that need no model must not import torch (~3 s); serving the
shipped baseline must not import timm, peft, transformers, torchvision, scikit-learn,
matplotlib or pytorch-metric-learning (several seconds more, for branches it does not have).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.cli.lazy import LazyVerb, lazy_group
from app.cli.main import VERBS
from app.cli.main import app as cli
from tests.timing import scaled

REPO = Path(__file__).resolve().parents[2]
MODEL_FREE_FORBIDDEN = {"torch", "timm", "torchvision", "sklearn", "matplotlib", "faiss"}
SERVE_FORBIDDEN = {
    "timm",
    "peft",
    "transformers",
    "torchvision",
    "sklearn",
    "matplotlib",
    "pytorch_metric_learning",
}

# runs `endoseek ARGS...` in this interpreter, then lists the top-level packages it imported
CLI_DRIVER = """
import json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["endoseek", *args]
code = 0
try:
    from app.cli.main import main
    main()
except SystemExit as exc:
    code = exc.code or 0
finally:
    with open(out, "w") as f:
        json.dump(sorted({m.split(".")[0] for m in sys.modules}), f)
sys.exit(code)
"""

# builds the app as `endoseek serve` does, on an empty migrated SQLite DB, until /ready is 200
SERVE_DRIVER = """
import json, sys
from fastapi.testclient import TestClient
import app.cli.main
from app.db.migrate import upgrade
from app.main import create_app
from app.settings import get_settings
settings = get_settings()
settings.ensure_dirs()
upgrade(settings.database_url)
with TestClient(create_app(settings)) as client:
    ready = client.get("/ready").status_code
with open(sys.argv[1], "w") as f:
    json.dump({"ready": ready, "bundle": settings.bundle,
               "modules": sorted({m.split(".")[0] for m in sys.modules})}, f)
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = os.environ | {
        "ENDOSEEK_DATABASE_URL": f"sqlite:///{tmp_path / 'boundary.db'}",
        "ENDOSEEK_STORAGE_DIR": str(tmp_path / "storage"),
        "ENDOSEEK_INDEX_DIR": str(tmp_path / "index"),
        "ENDOSEEK_INDEX_DEVICE": "cpu",
        "ENDOSEEK_LOG_LEVEL": "WARNING",
    }
    env.pop("ENDOSEEK_BUNDLE", None)  # the shipped baseline
    return env


def _run(driver: str, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, object]:
    out = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    proc = subprocess.run(
        [sys.executable, "-c", driver, str(out), *args],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=scaled(300),
    )
    assert out.exists(), proc.stderr
    return proc, json.loads(out.read_text())


def test_help_lists_every_verb_without_importing_torch(tmp_path: Path) -> None:
    proc, modules = _run(CLI_DRIVER, tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert not MODEL_FREE_FORBIDDEN & set(modules)
    assert not {"app.settings", "sqlalchemy", "pydantic_settings"} & set(modules)
    for name in ("serve", "migrate", *(verb.name for verb in VERBS)):
        assert f" {name} " in proc.stdout, name
    for verb in VERBS:  # the first words of each help line (rich wraps long ones)
        assert " ".join(verb.help.split()[:3]) in proc.stdout, verb.name


@pytest.mark.parametrize("verb", [["migrate"], ["keys", "list"], ["jobs", "list", "--json"]])
def test_model_free_verbs_do_not_import_torch(tmp_path: Path, verb: list[str]) -> None:
    if verb[0] != "migrate":
        proc, _ = _run(CLI_DRIVER, tmp_path, "migrate")
        assert proc.returncode == 0, proc.stderr
    proc, modules = _run(CLI_DRIVER, tmp_path, *verb)
    assert proc.returncode == 0, proc.stderr
    assert not MODEL_FREE_FORBIDDEN & set(modules), verb
    if verb[0] == "jobs":
        assert json.loads(proc.stdout) == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dicom_listen_receives_without_the_model_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """The receiver starts fast (no torch), stores an instance, and a signal ends it cleanly."""
    from pydicom.uid import JPEGBaseline8Bit, VLEndoscopicImageStorage

    from tests.app.dicom import factory
    from tests.app.dicom.receiver import scu, spool_files, wire
    from tests.app.server import free_port

    port = free_port()
    out = tmp_path / "modules.json"
    env = _env(tmp_path) | {
        "ENDOSEEK_DICOM_PORT": str(port),
        "ENDOSEEK_DICOM_SPOOL_DIR": str(tmp_path / "spool"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_DRIVER, str(out), "dicom-listen"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the receiver listens (or the process dies)
        assert f"ENDOSEEK at 127.0.0.1:{port}" in first, first + proc.stdout.read()
        ds = wire(
            factory.vl_endoscopic(factory.synthetic_photo(), transfer_syntax=JPEGBaseline8Bit)
        )
        assoc = scu((VLEndoscopicImageStorage, JPEGBaseline8Bit)).associate(
            "127.0.0.1", port, ae_title="ENDOSEEK"
        )
        assert assoc.send_c_store(ds).Status == 0
        assoc.release()
        proc.send_signal(stop)
        rest, _ = proc.communicate(timeout=scaled(60))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "DICOM receiver stopped" in rest
    assert len(spool_files(tmp_path / "spool")) == 1
    assert not MODEL_FREE_FORBIDDEN & set(json.loads(out.read_text()))


def test_serving_the_baseline_imports_no_unused_model_libraries(tmp_path: Path) -> None:
    proc, seen = _run(SERVE_DRIVER, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert seen["ready"] == 200 and seen["bundle"].endswith("baseline-colour-texture")
    assert "torch" in seen["modules"]  # the baseline does run on torch: the check is live
    assert not SERVE_FORBIDDEN & set(seen["modules"])


def test_declared_help_matches_each_verb() -> None:
    """VERBS repeats each verb's help so `--help` needs no import; it must not drift."""
    for verb in VERBS:
        loaded = verb.load()
        assert (loaded.help or "").strip().splitlines()[0] == verb.help, verb.name


def test_unknown_and_unavailable_verbs_fail_with_a_message() -> None:
    runner = CliRunner()
    typo = runner.invoke(cli, ["job", "list"])
    assert typo.exit_code == 2 and "Did you mean 'jobs'" in typo.output
    broken = LazyVerb("ghost", "app.cli.no_such_module:app", "Never importable.")
    ghostly = typer.Typer(cls=lazy_group([broken]))
    ghostly.callback()(lambda: None)
    assert "Never importable." in runner.invoke(ghostly, ["--help"]).output
    result = runner.invoke(ghostly, ["ghost", "--any", "thing"])
    assert result.exit_code == 1 and "`ghost` is unavailable here" in result.output
    assert "No module named 'app.cli.no_such_module'" in result.output
