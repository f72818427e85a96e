"""Helpers of the STOW-RS tests: instances with patient attributes, multipart/related bodies,
a real `endoseek serve`, and the PHI sweep over every file and log a test run leaves behind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from app.db import migrate
from tests.app.conftest import create_keys
from tests.app.dicom.factory import PHI, synthetic_photo, to_bytes, vl_endoscopic
from tests.app.server import free_port, server_env, start_server, stop_server, wait_ready
from tests.timing import scaled

BOUNDARY = "stow-test-9f1c0e"
STOW_TYPE = 'multipart/related; type="application/dicom"; boundary="{b}"'


def instance(
    seed: int,
    *,
    study_uid: str | None = None,
    jpeg: bool = True,
    size: tuple[int, int] = (320, 256),
) -> tuple[bytes, str, str]:
    """A VL Endoscopic Part 10 file with PHI: (bytes, SOP Class UID, SOP Instance UID)."""
    ds = vl_endoscopic(
        synthetic_photo(seed, size),
        transfer_syntax=JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian,
        study_uid=study_uid,
    )
    return to_bytes(ds), str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def multipart(
    parts: list[tuple[str | None, bytes]],
    boundary: str = BOUNDARY,
    *,
    close: bool = True,
    leading_crlf: bool = False,
) -> bytes:
    """A multipart/related body; a part's content type None sends the part without one."""
    out = [b"\r\n"] if leading_crlf else []
    for ctype, data in parts:
        out.append(f"--{boundary}\r\n".encode())
        if ctype is not None:
            out.append(f"Content-Type: {ctype}\r\n".encode())
        out.append(b"\r\n" + data + b"\r\n")
    if close:
        out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def content_type(boundary: str = BOUNDARY, *, quoted: bool = True) -> str:
    if quoted:
        return STOW_TYPE.format(b=boundary)
    return f"multipart/related; type=application/dicom; boundary={boundary}"


def phi_hits(paths: list[Path], texts: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Where any PHI value of the factory occurs: files under `paths` (recursively) and texts."""
    needles = [v.encode() for v in PHI.values()]
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            hits += [f"{path}: {n!r}" for n in needles if n in data]
    for i, text in enumerate(texts):
        hits += [f"text {i}: {n!r}" for n in needles if n in text.encode()]
    return hits


@dataclass
class Served:
    """A real `endoseek serve` on loopback (see `served_endoseek`)."""

    base: str
    port: int
    ingest: dict[str, str]  # Authorization header, scope ingest
    reader: dict[str, str]  # scope search
    root: Path

    def photos(self, study_uid: str) -> int:
        """How many photos EndoSeek holds for the study, through its own REST API."""
        with httpx.Client(base_url=self.base, headers=self.reader, timeout=scaled(30)) as c:
            found = c.get("/v1/procedures", params={"external_id": study_uid}).json()["items"]
            if not found:
                return 0
            (proc,) = found
            return len(c.get(f"/v1/procedures/{proc['id']}/images").json()["items"])


@contextmanager
def served_endoseek(root: Path, **env: str) -> Iterator[Served]:
    """`endoseek serve` on a fresh SQLite database under `root`, logging at INFO into
    root/server.log (the PHI sweep reads it), de-identified originals kept under storage."""
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'endoseek.db'}"
    migrate.upgrade(url)
    keys = create_keys(url)
    port = free_port()
    extra = {
        "ENDOSEEK_LOG_LEVEL": "INFO",
        "ENDOSEEK_DICOM_SPOOL_DIR": str(root / "spool"),
        "ENDOSEEK_DICOM_KEEP_ORIGINALS": "true",
        **env,
    }
    proc = start_server(server_env(root, url, port, **extra), root / "server.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, proc)
        yield Served(base, port, keys["ingest"], keys["search"], root)
    finally:
        stop_server(proc)
