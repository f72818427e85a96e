"""Hostile connections to the receiver: garbage, PDUs claiming gigabytes, idle and stalled
sockets up to and past the limits. Each ends in a closed connection or an aborted association,
and an allowed caller's C-ECHO still succeeds (at once, or once the short timeouts expire)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from pydicom.uid import JPEGBaseline8Bit, VLEndoscopicImageStorage

from app.dicom.scp import DicomReceiver
from tests.app.dicom.receiver import receiver_settings, running, scu, spool_files, tls_settings
from tests.timing import scaled

VLE_JPEG = (VLEndoscopicImageStorage, JPEGBaseline8Bit)
ACSE_S = 1.0  # the receiver's timeouts in these tests (small, so expiry is part of the test)
NETWORK_S = 2.0


@pytest.fixture
def rx(tmp_path: Path) -> Iterator[DicomReceiver]:
    settings = receiver_settings(
        tmp_path,
        dicom_max_associations=3,
        dicom_acse_timeout_s=ACSE_S,
        dicom_network_timeout_s=NETWORK_S,
        dicom_dimse_timeout_s=NETWORK_S,
    )
    with running(settings) as receiver:
        yield receiver


def echo_ok(rx: DicomReceiver) -> bool:
    assoc = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
    if not assoc.is_established:
        return False
    ok = assoc.send_c_echo().Status == 0x0000
    assoc.release()
    return ok


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Did the peer close `sock` (EOF or reset) within `seconds`? Reads and drops any data."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def connect(rx: DicomReceiver) -> socket.socket:
    return socket.create_connection(rx.address, timeout=scaled(5))


def test_random_bytes_are_dropped(rx: DicomReceiver) -> None:
    rng = __import__("random").Random(15)
    for first in (0x00, 0x2A, 0x01, 0x04, 0x07):  # unknown PDU types, then real ones
        with connect(rx) as sock:
            body = bytes(rng.getrandbits(8) for _ in range(2000))
            sock.sendall(bytes([first, 0]) + struct.pack(">L", len(body)) + body)
            assert closed_within(sock, scaled(NETWORK_S + 3)), hex(first)
    assert echo_ok(rx)
    assert spool_files(rx.settings.dicom_spool_dir) == []


@pytest.mark.parametrize("pdu_type", [0x01, 0x04], ids=["associate-rq", "p-data"])
def test_a_pdu_claiming_four_gigabytes_is_refused_at_its_header(
    rx: DicomReceiver, pdu_type: int
) -> None:
    with connect(rx) as sock:
        sock.sendall(bytes([pdu_type, 0]) + struct.pack(">L", 0xFFFFFFF0) + b"\0" * 4096)
        start = time.monotonic()
        assert closed_within(sock, scaled(NETWORK_S + 3))
        # the cap closed it, not a timeout: well under the network timeout on an idle box
        assert time.monotonic() - start < scaled(NETWORK_S)
    assert echo_ok(rx)


def test_a_huge_p_data_inside_an_association_aborts_it(rx: DicomReceiver) -> None:
    assoc = scu(VLE_JPEG).associate(*rx.address, ae_title="ENDOSEEK")
    assert assoc.is_established
    raw = assoc.dul.socket.socket  # the established association's own TCP stream
    raw.sendall(b"\x04\x00" + struct.pack(">L", 0xFFFFFFF0) + b"\0" * 4096)
    deadline = time.monotonic() + scaled(NETWORK_S + 5)
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not assoc.is_established and assoc.is_aborted
    assert echo_ok(rx)


def test_idle_sockets_up_to_the_association_limit_do_not_block_a_caller(
    rx: DicomReceiver,
) -> None:
    limit = rx.settings.dicom_max_associations
    with ExitStack() as stack:
        idle = [stack.enter_context(connect(rx)) for _ in range(limit)]
        assert echo_ok(rx)  # at once: silent sockets are not associations
        assert all(closed_within(s, scaled(ACSE_S + 5)) for s in idle)  # the ACSE timeout


def test_idle_sockets_past_the_connection_limit_expire(rx: DicomReceiver) -> None:
    cap = 2 * rx.settings.dicom_max_associations
    with ExitStack() as stack:
        idle = [stack.enter_context(connect(rx)) for _ in range(cap)]
        deadline = time.monotonic() + scaled(1)
        while len(rx.server.active_associations) < cap and time.monotonic() < deadline:
            time.sleep(0.01)  # type: ignore[union-attr]
        extra = stack.enter_context(connect(rx))
        assert closed_within(extra, scaled(ACSE_S / 2))  # over the cap: closed at accept
        assert all(closed_within(s, scaled(ACSE_S + 5)) for s in idle)
    deadline = time.monotonic() + scaled(ACSE_S + 5)
    while not echo_ok(rx):
        assert time.monotonic() < deadline, "C-ECHO still refused after the idle sockets expired"
        time.sleep(0.1)


def test_a_stalled_association_request_is_closed_after_the_network_timeout(
    rx: DicomReceiver,
) -> None:
    with connect(rx) as sock:
        sock.sendall(b"\x01\x00" + struct.pack(">L", 400) + b"\0" * 100)  # 300 bytes never come
        assert closed_within(sock, scaled(NETWORK_S + ACSE_S + 5))
    assert echo_ok(rx)


def test_a_storm_of_garbage_connections_leaves_no_threads_behind(rx: DicomReceiver) -> None:
    before = threading.active_count()

    def garbage(i: int) -> None:
        try:
            with connect(rx) as sock:
                sock.sendall(os.urandom(64 + i))
                closed_within(sock, scaled(NETWORK_S + 3))
        except OSError:
            pass  # refused over the connection cap: that is fine too

    workers = [threading.Thread(target=garbage, args=(i,)) for i in range(40)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=scaled(30))
    deadline = time.monotonic() + scaled(NETWORK_S + ACSE_S + 5)
    while not echo_ok(rx):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    deadline = time.monotonic() + scaled(10)
    while threading.active_count() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before + 2


def test_an_instance_over_the_size_limit_aborts_its_association(tmp_path: Path) -> None:
    """pynetdicom gathers a data set in memory: past stow_max_part_bytes it is not read on."""
    from pydicom.uid import ExplicitVRLittleEndian

    from tests.app.dicom import factory
    from tests.app.dicom.receiver import wire

    settings = receiver_settings(tmp_path, stow_max_part_bytes=100_000)
    photo = factory.synthetic_photo(1)  # 320 x 256 RGB: 245,760 bytes native, ~40 kB as JPEG
    big = wire(factory.vl_endoscopic(photo, transfer_syntax=ExplicitVRLittleEndian))
    small = wire(factory.vl_endoscopic(photo, transfer_syntax=JPEGBaseline8Bit))
    with running(settings) as rx:
        ae = scu(VLE_JPEG, (VLEndoscopicImageStorage, ExplicitVRLittleEndian))
        assoc = ae.associate(*rx.address, ae_title="ENDOSEEK")
        assert assoc.send_c_store(small).Status == 0
        status = assoc.send_c_store(big)
        assert "Status" not in status  # no answer: the connection went
        deadline = time.monotonic() + scaled(10)
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not assoc.is_established
        assert echo_ok(rx)
    assert len(spool_files(settings.dicom_spool_dir)) == 1


def test_silent_sockets_do_not_stall_the_tls_handshake_of_others(tmp_path: Path) -> None:
    """The TLS handshake runs in the connection's thread: a socket that never starts one (or
    stalls inside it) holds neither the accept loop nor other callers."""
    import ssl

    settings, pki = tls_settings(
        tmp_path, client_certs=False, dicom_network_timeout_s=NETWORK_S, dicom_acse_timeout_s=ACSE_S
    )
    client = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with running(settings) as rx, ExitStack() as stack:
        silent = [stack.enter_context(connect(rx)) for _ in range(3)]
        half = stack.enter_context(connect(rx))
        half.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
        start = time.monotonic()
        assoc = scu(VLE_JPEG).associate(
            *rx.address, ae_title="ENDOSEEK", tls_args=(client, "127.0.0.1")
        )
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()
        assert time.monotonic() - start < scaled(NETWORK_S)  # not after the stalled ones
        assert all(closed_within(s, scaled(NETWORK_S + 5)) for s in [*silent, half])
