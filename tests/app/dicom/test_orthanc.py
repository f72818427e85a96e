"""Orthanc (Debian `orthanc` + `orthanc-dicomweb`) as the PACS in front of EndoSeek, on loopback.

A study is uploaded to Orthanc over its REST API, then routed to EndoSeek the way a PACS does:
through the DICOMweb plugin's STOW-RS client (`/dicom-web/servers/endoseek/stow`, a `Servers`
entry with EndoSeek's URL and an Authorization header), and by C-STORE (`/modalities/endoseek/
store`, a `DicomModalities` entry for EndoSeek's receiver). Orthanc reads EndoSeek's PS3.18
response: a study with an instance EndoSeek refuses is reported as partly stored.

Orthanc's own DICOM server stays off (it only sends) and its HTTP server refuses remote
clients; its storage lives in tmp_path. Skipped when Orthanc is missing, failed with CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pydicom.uid import CTImageStorage, JPEGBaseline8Bit, generate_uid

from tests.app.dicom.factory import synthetic_photo, to_bytes, vl_endoscopic
from tests.app.dicom.stow_client import Served, instance, phi_hits, served_endoseek
from tests.app.server import free_port, stop_server
from tests.timing import scaled

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CALLING_AET = "PACS"  # Orthanc's AE title when it sends C-STORE: the procedure's source


def _require_orthanc() -> None:
    missing = [str(p) for p in (ORTHANC, DICOMWEB_PLUGIN) if not p.exists()]
    if not missing:
        return
    why = f"Orthanc or its DICOMweb plugin missing: {', '.join(missing)} (Debian orthanc, "
    why += "orthanc-dicomweb; scripts/ensure-test-tools.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(reason=why)


@dataclass
class Orthanc:
    base: str
    log: Path

    def upload(self, data: bytes) -> str:
        """Store a Part 10 file in Orthanc; its Orthanc study id."""
        r = httpx.post(f"{self.base}/instances", content=data, timeout=scaled(30))
        assert r.status_code == 200, r.text
        return r.json()["ParentStudy"]


@contextmanager
def _orthanc(work: Path, endoseek: Served, dicom_port: int) -> Iterator[Orthanc]:
    work.mkdir()
    port = free_port()
    config = {
        "Name": "endoseek-test-pacs",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "storage"),
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,  # Orthanc only sends here
        "DicomAet": CALLING_AET,
        "DicomModalities": {"endoseek": ["ENDOSEEK", "127.0.0.1", dicom_port]},
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": False,
            "Servers": {
                "endoseek": {"Url": f"{endoseek.base}/dicomweb/", "HttpHeaders": endoseek.ingest}
            },
        },
    }
    (work / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = work / "orthanc.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(ORTHANC), str(work / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + scaled(60)
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/system", timeout=scaled(5)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Orthanc did not start"
            time.sleep(0.1)  # poll interval, bounded by the deadline
        yield Orthanc(base, log)
    finally:
        stop_server(proc, timeout_s=30)


@dataclass
class Peers:
    endoseek: Served
    orthanc: Orthanc


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """EndoSeek (HTTP and its C-STORE receiver beside it) and Orthanc pointing at both."""
    _require_orthanc()
    root = tmp_path_factory.mktemp("orthanc")
    dicom_port = free_port()
    env = {
        "ENDOSEEK_DICOM_LISTEN": "true",
        "ENDOSEEK_DICOM_HOST": "127.0.0.1",
        "ENDOSEEK_DICOM_PORT": str(dicom_port),
    }
    with served_endoseek(root / "endoseek", **env) as endoseek:
        with _orthanc(root / "pacs", endoseek, dicom_port) as orthanc:
            yield Peers(endoseek, orthanc)


def _study(orthanc: Orthanc, study_uid: str, photos: list[Path], synthetic: int) -> str:
    """Real photos as JPEG Baseline VL Endoscopic, plus native synthetic ones; Orthanc's id."""
    ids = set()
    for path in photos:
        with Image.open(path) as img:
            ds = vl_endoscopic(img, transfer_syntax=JPEGBaseline8Bit, study_uid=study_uid)
        ids.add(orthanc.upload(to_bytes(ds)))
    for i in range(synthetic):
        ids.add(orthanc.upload(instance(200 + i, study_uid=study_uid, jpeg=False)[0]))
    (study_id,) = ids
    return study_id


def _source(endoseek: Served, study_uid: str) -> str:
    with httpx.Client(base_url=endoseek.base, headers=endoseek.reader) as c:
        (proc,) = c.get("/v1/procedures", params={"external_id": study_uid}).json()["items"]
    return proc["source"]


def test_orthanc_forwards_a_study_by_stow_rs(peers: Peers, hyperkvasir_paths: list[Path]) -> None:
    study = generate_uid()
    study_id = _study(peers.orthanc, study, hyperkvasir_paths[:2], synthetic=1)
    r = httpx.post(
        f"{peers.orthanc.base}/dicom-web/servers/endoseek/stow",
        json={"Resources": [study_id]},
        timeout=scaled(120),
    )
    assert r.status_code == 200, r.text
    assert peers.endoseek.photos(study) == 3
    assert _source(peers.endoseek, study) == "dicomweb"


def test_orthanc_reads_a_partial_failure(peers: Peers) -> None:
    """EndoSeek answers 202 with a FailedSOPSequence; Orthanc counts what was stored."""
    study = generate_uid()
    study_id = _study(peers.orthanc, study, [], synthetic=2)
    ct = vl_endoscopic(synthetic_photo(210), sop_class=CTImageStorage, study_uid=study)
    assert peers.orthanc.upload(to_bytes(ct)) == study_id
    r = httpx.post(
        f"{peers.orthanc.base}/dicom-web/servers/endoseek/stow",
        json={"Resources": [study_id]},
        timeout=scaled(120),
    )
    assert r.status_code != 200  # Orthanc reports the study as not fully sent
    assert "2 instances out of 3" in peers.orthanc.log.read_text()
    assert peers.endoseek.photos(study) == 2


def test_orthanc_forwards_a_study_by_c_store(peers: Peers, hyperkvasir_paths: list[Path]) -> None:
    study = generate_uid()
    study_id = _study(peers.orthanc, study, hyperkvasir_paths[2:4], synthetic=1)
    r = httpx.post(
        f"{peers.orthanc.base}/modalities/endoseek/store",
        json={"Resources": [study_id], "Synchronous": True},
        timeout=scaled(120),
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + scaled(60)  # the spool is ingested asynchronously
    while peers.endoseek.photos(study) < 3:
        assert time.monotonic() < deadline, "C-STORE instances not ingested in time"
        time.sleep(0.2)  # poll interval, bounded by the deadline
    assert _source(peers.endoseek, study) == CALLING_AET


def test_no_patient_attribute_reached_endoseek(peers: Peers) -> None:
    """Runs last in the module: every instance Orthanc forwarded carried the factory's PHI."""
    assert phi_hits([peers.endoseek.root]) == []
