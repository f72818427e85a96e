"""docker-compose.yml validated by Debian's docker-compose without a Docker engine.

Each test copies .env.example to a temporary project directory as `.env`, as an operator does,
and points docker-compose at the repository's compose file from there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.timing import scaled

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"


@pytest.fixture(scope="module")
def compose_bin() -> str:
    """Path of docker-compose (scripts/ensure-test-tools.sh installs it)."""
    found = shutil.which("docker-compose")
    if found is None:
        message = "docker-compose not installed: run scripts/ensure-test-tools.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(reason=message)
    return found


def _compose(
    compose_bin: str, project: Path, *args: str, env_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run docker-compose on the repo's compose file with `project` as project directory."""
    (project / ".env").write_text(
        ENV_EXAMPLE.read_text() if env_text is None else env_text, encoding="utf-8"
    )
    # The caller's COMPOSE_*/POSTGRES_* variables would override .env; keep them out.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPOSE_", "POSTGRES_", "ENDOSEEK_"))
    }
    return subprocess.run(
        [compose_bin, "-f", str(COMPOSE_FILE), "--project-directory", str(project), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=scaled(120),
        check=False,
    )


def _config(compose_bin: str, project: Path, *args: str) -> dict:
    result = _compose(compose_bin, project, *args, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_is_valid(compose_bin: str, tmp_path: Path) -> None:
    result = _compose(compose_bin, tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_config_is_valid_with_gpu_profile(compose_bin: str, tmp_path: Path) -> None:
    result = _compose(compose_bin, tmp_path, "--profile", "gpu", "config", "-q")
    assert result.returncode == 0, result.stderr
    gpu_env = ENV_EXAMPLE.read_text().replace("COMPOSE_PROFILES=cpu", "COMPOSE_PROFILES=gpu")
    assert gpu_env != ENV_EXAMPLE.read_text(), ".env.example should set COMPOSE_PROFILES=cpu"
    result = _compose(compose_bin, tmp_path, "config", "-q", env_text=gpu_env)
    assert result.returncode == 0, result.stderr


def test_compose_requires_a_database_password(compose_bin: str, tmp_path: Path) -> None:
    env_text = re.sub(r"(?m)^POSTGRES_PASSWORD=.*$", "", ENV_EXAMPLE.read_text())
    result = _compose(compose_bin, tmp_path, "config", "-q", env_text=env_text)
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_db_has_volume_and_healthcheck(compose_bin: str, tmp_path: Path) -> None:
    db = _config(compose_bin, tmp_path)["services"]["db"]
    assert "profiles" not in db
    assert any(v.endswith(":/var/lib/postgresql/data:rw") for v in db["volumes"]), db["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


@pytest.mark.parametrize(("service", "profile"), [("app", "cpu"), ("app-gpu", "gpu")])
def test_app_services_wait_for_db_and_keep_data_in_volumes(
    compose_bin: str, tmp_path: Path, service: str, profile: str
) -> None:
    config = _config(compose_bin, tmp_path)
    app = config["services"][service]
    assert app["profiles"] == [profile]
    assert app["depends_on"] == {"db": {"condition": "service_healthy"}}
    mounts = {v.split(":")[1]: v.split(":")[0] for v in app["volumes"]}
    for target in ("/data/storage", "/data/index", "/data/bundles"):
        assert mounts.get(target) in config["volumes"], f"{target} is not a named volume"
    env = app["environment"]
    assert env["ENDOSEEK_DATABASE_URL"] == (
        "postgresql+psycopg://endoseek:change-me@db:5432/endoseek"
    )
    assert env["ENDOSEEK_STORAGE_DIR"] == "/data/storage"
    assert env["ENDOSEEK_INDEX_DIR"] == "/data/index"
    assert app["build"]["args"]["ACCELERATOR"] == ("cuda" if profile == "gpu" else "cpu")


def test_gpu_service_reserves_an_nvidia_device(compose_bin: str, tmp_path: Path) -> None:
    services = _config(compose_bin, tmp_path, "--profile", "gpu")["services"]
    devices = services["app-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["app"]


def test_every_compose_variable_has_a_default_or_an_example() -> None:
    text = COMPOSE_FILE.read_text()
    example = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line
    }
    # ${NAME}, ${NAME:-default}, ${NAME:?error}; $$NAME is the container's own variable.
    for name, operator in re.findall(r"(?<!\$)\$\{(\w+)(:[-?])?", text):
        if operator != ":-":
            assert name in example, f"{name} is used without a default and not in .env.example"
