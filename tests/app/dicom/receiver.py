"""Helpers of the C-STORE receiver tests: an in-process receiver, an SCU, wire-ready instances."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from app.dicom.scp import DicomReceiver, quiet_pynetdicom
from app.dicom.spool import Spool
from app.settings import Settings
from tests.app.dicom import factory


def receiver_settings(tmp_path: Path, **kw: Any) -> Settings:
    """Receiver settings under tmp_path, port 0 (the OS picks; no race with other tests)."""
    base: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'endoseek.db'}",
        "storage_dir": tmp_path / "storage",
        "index_dir": tmp_path / "index",
        "dicom_spool_dir": tmp_path / "spool",
        "dicom_acse_timeout_s": 5.0,
        "dicom_dimse_timeout_s": 10.0,
        "dicom_network_timeout_s": 10.0,
    }
    port = kw.pop("dicom_port", 0)
    base.update(kw)
    settings = Settings(_env_file=None, **base)  # type: ignore[arg-type]
    return settings.model_copy(update={"dicom_port": port})


@contextmanager
def running(settings: Settings, **kw: Any) -> Iterator[DicomReceiver]:
    """A started receiver; shut down at exit."""
    quiet_pynetdicom()
    receiver = DicomReceiver(settings, **kw)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.shutdown(grace_s=2.0)


def wire(ds: Dataset) -> Dataset:
    """The instance as a sender holds it after reading its file (the factory's dataset lacks the
    undefined length of encapsulated pixel data until it is written)."""
    out = dcmread(io.BytesIO(factory.to_bytes(ds)))
    return out


def scu(*contexts: tuple[str, str], ae_title: str = "ENDOSCU", echo: bool = True) -> AE:
    """An SCU proposing each (SOP class, transfer syntax) as its own presentation context."""
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    if echo:
        ae.add_requested_context(Verification)
    return ae


def spool_files(spool_dir: Path) -> list[Path]:
    return sorted(Spool(spool_dir).root.glob("*.spool"))


def phi_found(data: bytes) -> list[str]:
    """Which factory patient values occur in `data` (also their DICOM-padded/caret forms)."""
    hits = []
    for keyword, value in factory.PHI.items():
        probes = {value, value.replace("^", " "), *value.split("^")}
        probes = {p for p in probes if len(p) >= 4}
        if any(p.encode() in data for p in probes):
            hits.append(keyword)
    return hits


def tool(name: str) -> str:
    """Path of a DCMTK (or other) tool: skipped where missing, a failure when CI=true."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (scripts/ensure-test-tools.sh installs dcmtk)")
        pytest.skip(reason=f"{name} not installed (apt-get install dcmtk)")
    return path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def make_pki(tmp_path: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    d = tmp_path / "pki"
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        ext = d / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext.name,
                 "-out", f"{name}.crt", cwd=d)  # fmt: skip
    return d


def tls_settings(tmp_path: Path, *, client_certs: bool = True, **kw: Any) -> tuple[Settings, Path]:
    """Receiver settings with TLS (make_pki's server certificate; with `client_certs`, callers
    must show a certificate of its CA), and the PKI folder."""
    pki = make_pki(tmp_path)
    tls: dict[str, Any] = {
        "dicom_tls_cert": pki / "server.crt",
        "dicom_tls_key": pki / "server.key",
    }
    if client_certs:
        tls["dicom_tls_ca"] = pki / "ca.crt"
    return receiver_settings(tmp_path, **tls, **kw), pki
