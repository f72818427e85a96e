"""Property-based fuzzing of every operation in the service's own OpenAPI document.

schemathesis generates valid and invalid requests from the schema; the in-process ASGI app
runs on a real database (a tmp SQLite file, then a fresh PostgreSQL database) and tmp storage
with the real baseline model; every request carries a valid admin key. Checks: no server
error, status codes, content types and bodies conform to the schema. Examples per operation
are bounded to keep the run near a minute on two cores: FUZZ_EXAMPLES on SQLite and
FUZZ_EXAMPLES_PG on PostgreSQL (the second backend re-checks the database layer; the request
generation itself is the same).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from tests.app.conftest import create_keys, jpeg_bytes, make_settings

pytestmark = pytest.mark.slow
FUZZ_EXAMPLES = int(os.environ.get("ENDOSEEK_FUZZ_EXAMPLES", "100"))
FUZZ_EXAMPLES_PG = int(os.environ.get("ENDOSEEK_FUZZ_EXAMPLES_PG", "40"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
_HEADERS: dict[str, str] = {}
# Operations that render a document (a PDF report, a PNG plot) cost ~1 s of CPU per valid case;
# their parameters are the same as the JSON summary's, which gets the full example count.
RENDERING_SUFFIXES = (".pdf", ".png")
RENDERING_EXAMPLES = 20
# The quality dashboard judges every procedure of the range per request; its four operations
# share one parameter set, so a smaller count each still covers it.
DASHBOARD_PREFIX = "/v1/quality/"
DASHBOARD_EXAMPLES = 50


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, backend_url: str):
    """(schema, examples per operation) on each backend (conftest.backend_url)."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    url = backend_url
    keys = create_keys(url)
    _HEADERS.clear()
    _HEADERS.update(keys["admin"])
    # seed one procedure with one photo (through a separate app instance: a runtime is
    # started once) so that id-based operations can hit real rows
    from fastapi.testclient import TestClient
    from PIL import Image

    with TestClient(create_app(make_settings(root, url), with_ui=False)) as c:
        pid = c.post(
            "/v1/procedures", json={"source": "fuzz", "external_id": "1"}, headers=keys["ingest"]
        ).json()["id"]
        photo = jpeg_bytes(Image.new("RGB", (32, 32), (120, 40, 40)))
        r = c.post(
            f"/v1/procedures/{pid}/images",
            files={"files": ("a.jpg", photo)},
            headers=keys["ingest"],
        )
        assert r.status_code == 201, r.text
    app = create_app(make_settings(root, url), with_ui=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema, FUZZ_EXAMPLES if url.startswith("sqlite") else FUZZ_EXAMPLES_PG


def test_api_conforms_and_never_errors(api_schema) -> None:
    """Every operation, FUZZ_EXAMPLES (FUZZ_EXAMPLES_PG) generated cases each (the pytest
    plugin's lazy loader does not support this pytest, so the operations are walked here)."""
    schema, examples = api_schema
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15
    failures = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=(
                min(examples, RENDERING_EXAMPLES)
                if op.path.endswith(RENDERING_SUFFIXES)
                else min(examples, DASHBOARD_EXAMPLES)
                if op.path.startswith(DASHBOARD_PREFIX)
                else examples
            ),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:
            case.call_and_validate(headers=_HEADERS, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every failing operation
            failures.append(f"{op.method.upper()} {op.path}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
