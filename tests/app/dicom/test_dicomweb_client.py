"""STOW-RS against a real `endoseek serve` on loopback: dicomweb-client's `store_instances`
(quoted boundary; Content-Length, and chunked transfer above its chunk_size), the study route,
and raw sockets for what a client library never sends (a stalled body, a chunked body over
the STOW limit). The server's log, database and files hold no patient attribute afterwards."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.app.dicom.factory import synthetic_photo, vl_endoscopic
from tests.app.dicom.stow_client import (
    Served,
    content_type,
    instance,
    multipart,
    phi_hits,
    served_endoseek,
)
from tests.timing import scaled

IDLE_S = 2.0  # the server's body idle timeout (scaled), short for the stall test
STOW_MAX = 2_000_000  # the server's STOW body limit: above every dicomweb-client body here


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = {
        "ENDOSEEK_BODY_IDLE_TIMEOUT_S": str(scaled(IDLE_S)),
        "ENDOSEEK_STOW_MAX_REQUEST_BYTES": str(STOW_MAX),
    }
    with served_endoseek(tmp_path_factory.mktemp("dicomweb"), **env) as s:
        yield s


def _client(served: Served, chunk_size: int = 10**6) -> tuple[DICOMwebClient, list[dict]]:
    """dicomweb-client on a session that records the headers of each request it sent."""
    session = requests.Session()
    sent: list[dict] = []
    session.hooks["response"].append(lambda r, *a, **k: sent.append(dict(r.request.headers)))
    client = DICOMwebClient(
        f"{served.base}/dicomweb", session=session, headers=served.ingest, chunk_size=chunk_size
    )
    return client, sent


def _datasets(study_uid: str, n: int, jpeg: bool) -> list:
    return [
        vl_endoscopic(
            synthetic_photo(100 + i),
            study_uid=study_uid,
            **({} if not jpeg else {"transfer_syntax": "1.2.840.10008.1.2.4.50"}),
        )
        for i in range(n)
    ]


def test_store_instances_with_content_length(served: Served) -> None:
    study = generate_uid()
    client, sent = _client(served)
    datasets = _datasets(study, 2, jpeg=True)
    result = client.store_instances(datasets)
    assert "Transfer-Encoding" not in sent[-1] and "Content-Length" in sent[-1]
    assert '"' in sent[-1]["Content-Type"].split("boundary=")[1]  # the quoted boundary
    assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [
        d.SOPInstanceUID for d in datasets
    ]
    assert "FailedSOPSequence" not in result
    assert served.photos(study) == 2


def test_store_instances_chunked(served: Served) -> None:
    """Above chunk_size the client switches to chunked transfer (Orthanc once stored nothing
    for such requests: dicomweb-client#42)."""
    study = generate_uid()
    client, sent = _client(served, chunk_size=16 * 1024)
    datasets = _datasets(study, 4, jpeg=False)  # native 320 x 256: 245 kB each
    result = client.store_instances(datasets)
    assert sent[-1].get("Transfer-Encoding") == "chunked"
    assert len(result.ReferencedSOPSequence) == 4
    assert served.photos(study) == 4


def test_study_route(served: Served) -> None:
    study = generate_uid()
    client, _ = _client(served)
    mine = _datasets(study, 1, jpeg=True)
    result = client.store_instances(mine, study_instance_uid=study)
    assert result.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == mine[0].SOPInstanceUID
    other = _datasets(generate_uid(), 1, jpeg=True)
    with pytest.raises(requests.HTTPError) as err:
        client.store_instances(other, study_instance_uid=study)
    assert err.value.response.status_code == 409
    failed = err.value.response.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0xA900]


def _raw(served: Served, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=scaled(30))
    sock.sendall(
        (
            f"POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {served.ingest['Authorization']}\r\n"
            f"Content-Type: {content_type()}\r\n{head}\r\n"
        ).encode()
    )
    return sock


def _response(sock: socket.socket) -> bytes:
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_a_stalled_stow_body_gets_408(served: Served) -> None:
    data, _, _ = instance(120)
    body = multipart([("application/dicom", data)])
    with _raw(served, f"Content-Length: {len(body)}\r\n") as sock:
        sock.sendall(body[: len(body) // 2])
        started = time.monotonic()
        got = _response(sock)
        took = time.monotonic() - started
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert b"connection: close" in got.lower()
    assert took < scaled(IDLE_S) + scaled(20)


def test_a_chunked_body_over_the_stow_limit_gets_413(served: Served) -> None:
    data, _, _ = instance(121, jpeg=False)
    body = multipart([("application/dicom", data)] * (STOW_MAX // len(data) + 2))
    assert len(body) > STOW_MAX
    with _raw(served, "Transfer-Encoding: chunked\r\n") as sock:
        for i in range(0, len(body), 32 * 1024):
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered: stop sending (a write to a closed socket resets)
            piece = body[i : i + 32 * 1024]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            sock.sendall(b"0\r\n\r\n")
        got = _response(sock)
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    assert b"payload_too_large" in got


def test_no_patient_attribute_in_the_servers_log_database_or_files(served: Served) -> None:
    """Runs last in the module: every instance sent above carried the factory's PHI."""
    kept = list((served.root / "storage" / "dicom").rglob("*.dcm"))
    assert kept, "originals are kept here, so the sweep covers them"
    assert dcmread(kept[0]).get("PatientName", "") in ("", None)
    assert phi_hits([served.root]) == []
