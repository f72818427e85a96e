"""The C-STORE receiver with a pynetdicom SCU in-process: negotiation, allow-lists, statuses,
the spool it writes, TLS, and (slow) the whole chain into a served process."""

from __future__ import annotations

import errno
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydicom import dcmread
from pydicom.uid import (
    MPEG2MPML,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    VideoPhotographicImageStorage,
    VLEndoscopicImageStorage,
    generate_uid,
)

from app.db import migrate
from app.dicom import scp as scp_mod
from app.dicom.scp import allowed_networks, ip_allowed
from app.dicom.spool import Spool
from app.main import create_app
from tests.app.conftest import create_keys
from tests.app.dicom import factory
from tests.app.dicom.receiver import (
    make_pki,
    phi_found,
    receiver_settings,
    running,
    scu,
    spool_files,
    tls_settings,
    wire,
)
from tests.app.server import REPO, free_port, server_env, start_server, stop_server, wait_ready
from tests.timing import scaled

VLE_JPEG = (VLEndoscopicImageStorage, JPEGBaseline8Bit)
VLE_NATIVE = (VLEndoscopicImageStorage, ExplicitVRLittleEndian)


def _jpeg(seed: int = 0, **kw: Any) -> Any:
    photo = factory.synthetic_photo(seed)
    return wire(factory.vl_endoscopic(photo, transfer_syntax=JPEGBaseline8Bit, **kw))


def _native(seed: int = 0, **kw: Any) -> Any:
    photo = factory.synthetic_photo(seed)
    return wire(factory.vl_endoscopic(photo, transfer_syntax=ExplicitVRLittleEndian, **kw))


def _rejection(assoc: Any) -> tuple[int, int, int]:
    rj = assoc.acceptor.primitive
    return rj.result, rj.result_source, rj.diagnostic


def test_echo_and_store_spool_deidentified_instances(tmp_path: Path) -> None:
    woken: list[int] = []
    settings = receiver_settings(tmp_path)
    with running(settings, on_stored=lambda: woken.append(1)) as rx:
        host, port = rx.address
        sent = [_jpeg(1), _native(2)]
        assoc = scu(VLE_JPEG, VLE_NATIVE).associate(host, port, ae_title="ENDOSEEK")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        statuses = [assoc.send_c_store(ds).Status for ds in sent]
        assoc.release()
    assert statuses == [0x0000, 0x0000] and woken == [1, 1]
    files = spool_files(settings.dicom_spool_dir)
    assert len(files) == 2
    spool = Spool(settings.dicom_spool_dir)
    by_uid = {}
    for entry in spool.pending():
        item = spool.read(entry)
        assert item.meta["source"] == "ENDOSCU"  # the calling AE title (no dicom_source set)
        assert phi_found(entry.path.read_bytes()) == []
        ds = dcmread(__import__("io").BytesIO(item.data))
        assert ds.PatientIdentityRemoved == "YES" and not ds.get("PatientName")
        by_uid[item.meta["identity"]["sop_instance_uid"]] = (item.meta["identity"], ds)
    for original in sent:
        ident, stored = by_uid[original.SOPInstanceUID]
        assert ident["study_uid"] == original.StudyInstanceUID
        assert ident["kind"] == "upper_gi"  # from "Gastroscopy", read before de-identification
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert stored.PixelData == original.PixelData


def test_the_same_instance_again_is_success_and_spools_nothing_new(tmp_path: Path) -> None:
    settings = receiver_settings(tmp_path, dicom_source="site-a")
    ds = _jpeg(3)
    with running(settings) as rx:
        for _ in range(2):  # two associations, as a sender retrying after a lost answer
            assoc = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
            assert [assoc.send_c_store(ds).Status for _ in range(2)] == [0, 0]
            assoc.release()
    (entry,) = Spool(settings.dicom_spool_dir).pending()
    assert Spool(settings.dicom_spool_dir).read(entry).meta["source"] == "site-a"


def test_other_sop_classes_and_transfer_syntaxes_are_refused_at_negotiation(
    tmp_path: Path,
) -> None:
    with running(receiver_settings(tmp_path)) as rx:
        ae = scu(
            (CTImageStorage, ExplicitVRLittleEndian),
            (VideoPhotographicImageStorage, MPEG2MPML),
            (VLEndoscopicImageStorage, MPEG2MPML),
            (VLEndoscopicImageStorage, DeflatedExplicitVRLittleEndian),
            (SecondaryCaptureImageStorage, ImplicitVRLittleEndian),
        )
        assoc = ae.associate(*rx.address, ae_title="ENDOSEEK")
        assert assoc.is_established
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in
                    assoc.accepted_contexts}  # fmt: skip
        refused = {str(cx.abstract_syntax): cx.result for cx in assoc.rejected_contexts}
        assoc.release()
    assert (SecondaryCaptureImageStorage, ImplicitVRLittleEndian) in accepted
    assert refused[CTImageStorage] == 0x03  # abstract syntax not supported
    assert refused[VideoPhotographicImageStorage] == 0x03
    assert refused[VLEndoscopicImageStorage] == 0x04  # transfer syntaxes not supported
    assert spool_files(tmp_path / "spool") == []


def test_a_data_set_that_does_not_match_its_request_or_class_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynetdicom import _config

    settings = receiver_settings(tmp_path)
    # the file meta (hence the C-STORE's Affected SOP Instance UID) names another instance
    swapped = _native(4)
    swapped.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "swapped.dcm"
    swapped.save_as(path, enforce_file_format=False)  # keeps the meta as set
    truncated = _native(5)
    truncated.PixelData = truncated.PixelData[:-300]
    no_pixels = _native(6)
    del no_pixels.PixelData
    with running(settings) as rx:
        assoc = scu(VLE_NATIVE).associate(*rx.address, ae_title="ENDOSEEK")
        with monkeypatch.context() as m:  # send the file as is: UIDs from its meta
            m.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
            from_file = assoc.send_c_store(path)
        others = [assoc.send_c_store(ds) for ds in (truncated, no_pixels)]
        assoc.release()
    assert from_file.Status == 0xA900 and from_file.ErrorComment == "dataset_mismatch"
    assert [s.Status for s in others] == [0xA900, 0xA900]
    assert [s.ErrorComment for s in others] == ["pixel_data_mismatch", "no_pixel_data"]
    assert spool_files(settings.dicom_spool_dir) == []


def test_calling_and_called_ae_titles_are_checked(tmp_path: Path) -> None:
    settings = receiver_settings(tmp_path, dicom_allowed_aets=["ENDO1", "ENDO2"])
    with running(settings) as rx:
        stranger = scu(VLE_JPEG, ae_title="STRANGER").associate(*rx.address, ae_title="ENDOSEEK")
        assert stranger.is_rejected and _rejection(stranger) == (0x01, 0x01, 0x03)
        wrong_called = scu(VLE_JPEG, ae_title="ENDO1").associate(*rx.address, ae_title="PACS")
        assert wrong_called.is_rejected and _rejection(wrong_called) == (0x01, 0x01, 0x07)
        known = scu(VLE_JPEG, ae_title="ENDO2").associate(*rx.address, ae_title="ENDOSEEK")
        assert known.is_established and known.send_c_echo().Status == 0
        known.release()
    relaxed = receiver_settings(tmp_path / "b", dicom_require_called_aet=False)
    with running(relaxed) as rx:
        anyone = scu(VLE_JPEG, ae_title="ANYONE").associate(*rx.address, ae_title="WHATEVER")
        assert anyone.is_established
        anyone.release()


def test_ip_allow_list(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nets = allowed_networks(["10.0.0.0/8", "192.168.1.7", "fd00::/8"])
    assert ip_allowed("10.2.3.4", nets) and ip_allowed("192.168.1.7", nets)
    assert ip_allowed("::ffff:10.9.9.9", nets) and ip_allowed("fd12::1", nets)
    assert not ip_allowed("192.168.1.8", nets) and not ip_allowed("127.0.0.1", nets)
    assert not ip_allowed("not-an-ip", nets) and ip_allowed("127.0.0.1", [])
    with pytest.raises(ValueError, match="10.0.0.300"):
        allowed_networks(["10.0.0.300"])

    caplog.set_level(logging.INFO, logger="app.dicom.scp")
    with running(receiver_settings(tmp_path, dicom_allowed_ips=["10.0.0.0/8"])) as rx:
        start = time.monotonic()
        assoc = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
        assert not assoc.is_established  # closed at accept: not even an A-ASSOCIATE-RJ
        assert time.monotonic() - start < scaled(5)  # not a timeout
    assert "not in dicom_allowed_ips" in caplog.text
    with running(receiver_settings(tmp_path / "b", dicom_allowed_ips=["127.0.0.0/8"])) as rx:
        assoc = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
        assert assoc.is_established
        assoc.release()


def test_association_limit_answers_a_transient_rejection(tmp_path: Path) -> None:
    with running(receiver_settings(tmp_path, dicom_max_associations=2)) as rx:
        first = [scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK") for _ in range(2)]
        assert all(a.is_established for a in first)
        third = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
        assert third.is_rejected and _rejection(third) == (0x02, 0x03, 0x02)
        first[0].release()
        deadline = time.monotonic() + scaled(10)
        while True:  # the released association's thread ends a moment after the release
            again = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
            if again.is_established or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert again.is_established and again.send_c_echo().Status == 0
        again.release()
        first[1].release()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_spool_write_failure_answers_out_of_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def full(self: Spool, data: bytes, meta: Any) -> Any:
        raise OSError(code, "no")

    monkeypatch.setattr(Spool, "put", full)
    with running(receiver_settings(tmp_path)) as rx:
        assoc = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
        status = assoc.send_c_store(_jpeg(7))
        assoc.release()
    assert status.Status == 0xA700


def test_any_other_failure_answers_cannot_understand_and_logs_only_its_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ds: Any) -> None:
        raise RuntimeError(f"boom {ds.PatientName}")  # a message quoting patient data

    monkeypatch.setattr(scp_mod, "deidentify", broken)
    caplog.set_level(logging.DEBUG)
    with running(receiver_settings(tmp_path)) as rx:
        assoc = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
        status = assoc.send_c_store(_jpeg(8))
        assoc.release()
    assert status.Status == 0xC000
    assert "C-STORE failed: RuntimeError" in caplog.text
    assert phi_found(caplog.text.encode()) == []


def test_logs_name_the_association_and_never_patient_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running(receiver_settings(tmp_path)) as rx:
        assoc = scu(VLE_JPEG, VLE_NATIVE, ae_title="ENDO7").associate(
            *rx.address, ae_title="ENDOSEEK"
        )
        jpeg = _jpeg(9)
        for ds in (jpeg, jpeg, _native(10)):
            assoc.send_c_store(ds)
        bad = _native(11)
        bad.PixelData = b"\0"
        assoc.send_c_store(bad)
        assoc.release()
        deadline = time.monotonic() + scaled(10)
        while "released" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    assert "association from 'ENDO7' at 127.0.0.1 released: 2 stored, 1 already spooled, " \
           "1 refused" in caplog.text  # fmt: skip
    assert phi_found(caplog.text.encode()) == []


# --- TLS ------------------------------------------------------------------------------------


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    import ssl

    settings, pki = tls_settings(tmp_path)

    def client(with_cert: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
        if with_cert:
            ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
        return ctx

    with running(settings) as rx:
        host, port = rx.address
        ok = scu(VLE_JPEG).associate(host, port, ae_title="ENDOSEEK", tls_args=(client(True), host))
        assert ok.is_established
        assert ok.send_c_store(_jpeg(12)).Status == 0
        ok.release()
        anonymous = scu(VLE_JPEG).associate(host, port, ae_title="ENDOSEEK",
                                            tls_args=(client(False), host))  # fmt: skip
        assert not anonymous.is_established
        plain = scu(VLE_JPEG).associate(host, port, ae_title="ENDOSEEK")
        assert not plain.is_established
        again = scu(VLE_JPEG).associate(host, port, ae_title="ENDOSEEK",
                                        tls_args=(client(True), host))  # fmt: skip
        assert again.is_established and again.send_c_echo().Status == 0
        again.release()
    assert len(spool_files(settings.dicom_spool_dir)) == 1


def test_tls_settings_must_come_in_pairs(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with pytest.raises(ValueError, match="together"):
        scp_mod.tls_context(receiver_settings(tmp_path, dicom_tls_cert=pki / "server.crt"))


# --- end to end: into the served process --------------------------------------------------


def _procedure_images(client: Any, headers: dict, source: str, study_uid: str) -> list[dict]:
    r = client.get("/v1/procedures", params={"source": source, "external_id": study_uid},
                   headers=headers["search"])  # fmt: skip
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    if not items:
        return []
    r = client.get(f"/v1/procedures/{items[0]['id']}/images", headers=headers["search"])
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _poll(fetch: Any, want: int, deadline_s: float) -> list[dict]:
    deadline = time.monotonic() + scaled(deadline_s)
    got: list[dict] = []
    while time.monotonic() < deadline:
        got = fetch()
        if len(got) >= want:
            return got
        time.sleep(0.1)
    return got


@pytest.mark.slow
def test_receiver_beside_serve_stores_photos_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'endoseek.db'}"
    migrate.upgrade(url)
    headers = create_keys(url)
    port = free_port()
    settings = receiver_settings(
        tmp_path, database_url=url, dicom_listen=True, dicom_port=port, index_device="cpu",
        batch_max_wait_ms=2.0, snapshot_interval_s=3600.0, dicom_spool_poll_s=60.0,
    )  # fmt: skip
    study = generate_uid()
    sent = [_jpeg(20, study_uid=study), _native(21, study_uid=study)]
    with TestClient(create_app(settings, with_ui=False)) as client:
        assoc = scu(VLE_JPEG, VLE_NATIVE).associate("127.0.0.1", port, ae_title="ENDOSEEK")
        assert [assoc.send_c_store(ds).Status for ds in sent] == [0, 0]
        # the in-process receiver wakes the worker: no wait for the 60 s poll
        images = _poll(lambda: _procedure_images(client, headers, "ENDOSCU", study), 2, 60)
        assert len(images) == 2
        assert assoc.send_c_store(sent[0]).Status == 0  # again: success, nothing new
        assoc.release()
        worker = client.app.state.spool_worker  # type: ignore[attr-defined]
        deadline = time.monotonic() + scaled(30)
        while worker.spool.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.spool.pending() == [] and worker.spool.failed_entries() == []
        assert len(_procedure_images(client, headers, "ENDOSCU", study)) == 2


@pytest.mark.slow
def test_sigkill_after_success_loses_nothing(tmp_path: Path) -> None:
    """`dicom-listen` answers Success and dies at once (SIGKILL); `serve` then ingests it."""
    url = f"sqlite:///{tmp_path / 'endoseek.db'}"
    migrate.upgrade(url)
    headers = create_keys(url)
    dicom_port, http_port = free_port(), free_port()
    env = server_env(tmp_path, url, http_port, ENDOSEEK_DICOM_SPOOL_DIR=str(tmp_path / "spool"),
                     ENDOSEEK_DICOM_PORT=str(dicom_port), ENDOSEEK_LOG_LEVEL="INFO",
                     ENDOSEEK_DICOM_SPOOL_POLL_S="0.2")  # fmt: skip
    listen_log, serve_log = tmp_path / "listen.log", tmp_path / "serve.log"
    listener = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "dicom-listen"], cwd=REPO, env=env,
        stdout=listen_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    study = generate_uid()
    ds = _jpeg(30, study_uid=study)
    try:
        deadline = time.monotonic() + scaled(60)
        while f":{dicom_port}" not in listen_log.read_text() and time.monotonic() < deadline:
            assert listener.poll() is None, listen_log.read_text()
            time.sleep(0.05)
        assoc = scu(VLE_JPEG).associate("127.0.0.1", dicom_port, ae_title="ENDOSEEK")
        assert assoc.send_c_store(ds).Status == 0
        listener.send_signal(signal.SIGKILL)  # before the release: nothing after Success
        listener.wait(timeout=scaled(30))
        assoc.abort()
    finally:
        if listener.poll() is None:
            listener.kill()
    assert len(spool_files(tmp_path / "spool")) == 1
    server = start_server(env, serve_log)
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_ready(base, server)
        with httpx.Client(base_url=base, timeout=scaled(30)) as client:
            images = _poll(lambda: _procedure_images(client, headers, "ENDOSCU", study), 1, 60)
        assert len(images) == 1
    finally:
        stop_server(server)
    assert spool_files(tmp_path / "spool") == []
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frames = conn.execute(sa.text("select sop_instance_uid, study_uid from dicom_frames"))
        assert frames.all() == [(ds.SOPInstanceUID, study)]
    engine.dispose()
    # nothing patient-identifying in the spool, the database, the storage or either log
    for path in [tmp_path / "endoseek.db", listen_log, serve_log,
                 *(tmp_path / "spool").rglob("*"), *(tmp_path / "storage").rglob("*")]:  # fmt: skip
        if path.is_file():
            assert phi_found(path.read_bytes()) == [], path
