"""The C-STORE receiver (Storage SCP, pynetdicom 3): check, de-identify, spool, then Success.

Who may talk to it, in the order a connection meets the checks:
1. TCP accept: a peer address outside `dicom_allowed_ips` (addresses or CIDR networks; empty =
   anyone) is closed at once, before a byte of it is read; so is any connection beyond
   2 x `dicom_max_associations` open connections (idle sockets cannot pile up threads).
2. A-ASSOCIATE-RQ (pynetdicom's ACSE): a wrong called AE title (`dicom_require_called_aet`) or
   a calling AE title outside `dicom_allowed_aets` is answered A-ASSOCIATE-RJ (permanent); over
   `dicom_max_associations` associations in negotiation or established, A-ASSOCIATE-RJ
   (transient, local limit exceeded). Connections that send nothing are closed after the
   ACSE timeout and do not count against the association limit.
3. Presentation contexts: Verification, the still-image classes of conformance.py with its
   transfer syntaxes and Video Endoscopic with the video ones; anything else is refused there
   (abstract/transfer syntax not supported).
Every read of a PDU is capped (`_pdu_cap`): a header claiming gigabytes aborts the association
instead of growing a buffer; so does a data set over `stow_max_part_bytes` (the largest instance
either path takes); every socket has the network timeout.

C-STORE statuses: 0x0000 only after the de-identified instance is fsynced in the spool (also for
an instance already spooled; a video only once its bitstream probed well, video.py); a
DicomRejected's own status (0xA900 data set does not match the SOP class, 0x0122 SOP class not
supported, 0xC000 cannot understand); 0xA700 out of resources
when the spool cannot be written (disk full, I/O error: the sender should retry); 0xC000 for
any other failure. Logs carry AE titles, addresses, codes and counts, never attribute values.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from app.dicom.conformance import (
    STILL_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    VIDEO_SOP_CLASSES,
    VIDEO_TRANSFER_SYNTAXES,
)
from app.dicom.deid import deidentify, to_part10
from app.dicom.errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    DicomRejected,
)
from app.dicom.header import instance_from_dataset
from app.dicom.identity import with_calling_aet
from app.dicom.spool import Spool, spool_meta
from app.dicom.video import checked_stream, is_video
from app.settings import Settings

log = logging.getLogger(__name__)

SUCCESS = 0x0000
# A-ASSOCIATE-RJ (result, source, diagnostic): transient, service provider (presentation),
# local limit exceeded (PS3.8 9.3.4)
REJECT_LIMIT = (0x02, 0x03, 0x02)
MIN_PDU_CAP = 1 << 20  # an A-ASSOCIATE-RQ with every context a sender may offer fits
UNLIMITED_PDU_CAP = 1 << 28  # dicom_max_pdu = 0 (no limit announced): still bounded


def _pdu_cap(max_pdu: int) -> int:
    """Largest PDU body read from a peer: our announced P-DATA maximum (>= 1 MiB, which also
    covers association requests and peers that overshoot a small maximum a little)."""
    return max(max_pdu, MIN_PDU_CAP) if max_pdu else UNLIMITED_PDU_CAP


def allowed_networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`dicom_allowed_ips` as networks (a bare address is a /32 or /128); ValueError names the
    bad entry, so a typo stops the receiver at start rather than letting everyone in."""
    nets = []
    for raw in entries:
        try:
            nets.append(ipaddress.ip_network(raw.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"dicom_allowed_ips: not an address or network: {raw!r}") from exc
    return nets


def ip_allowed(address: str, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Is `address` (IPv4, IPv6 or IPv4-mapped IPv6) inside one of `nets`? Empty: yes."""
    if not nets:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in nets)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """Server TLS from dicom_tls_cert/key (both or neither); with dicom_tls_ca, callers must
    present a certificate that CA signed. TLS 1.2 at least."""
    cert, key = settings.dicom_tls_cert, settings.dicom_tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ValueError("dicom_tls_cert and dicom_tls_key must be set together")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if settings.dicom_tls_ca is not None:
        ctx.load_verify_locations(cafile=str(settings.dicom_tls_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _CappedSocket(AssociationSocket):
    """pynetdicom's socket with two caps. The DUL reads a PDU as recv(6) for the header, then
    recv(length) with the length the peer claims: refusing a larger length here refuses the PDU
    (the DUL sees a closed transport and aborts the association). P-DATA bodies are also summed
    per data set (until the PDV flagged "last fragment"), since pynetdicom gathers a C-STORE's
    data set in memory: one instance may not exceed `dataset_cap` bytes."""

    pdu_cap: int = MIN_PDU_CAP
    dataset_cap: int = 1 << 26
    _pdu_type: int | None = None  # None: the next read is a PDU header
    _dataset_bytes: int = 0

    def recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.pdu_cap:
            raise ConnectionAbortedError(f"PDU of {nr_bytes} bytes over the cap")
        data = super().recv(nr_bytes)
        if self._pdu_type is None:  # reads alternate: header (6 bytes), body
            self._pdu_type = data[0] if data else 0
        else:
            if self._pdu_type == 0x04:
                self._count_pdvs(data)
            self._pdu_type = None
        return data

    def _count_pdvs(self, body: bytearray) -> None:
        """PDV items: 4-byte length, context id, control header (bit 0 command, bit 1 last)."""
        at = 0
        while at + 6 <= len(body):
            (length,) = struct.unpack_from(">L", body, at)
            control = body[at + 5]
            if not control & 0x01:  # a data set fragment
                self._dataset_bytes += max(length - 2, 0)
                if self._dataset_bytes > self.dataset_cap:
                    raise ConnectionAbortedError("data set over the instance size limit")
                if control & 0x02:
                    self._dataset_bytes = 0
            at += 4 + length


class _Handler(RequestHandler):
    """Per connection (its own thread): TLS handshake here, not in the accept loop; cap reads."""

    server: _Server

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            with self.server.lock:
                self.server.handshaking += 1  # counted as open connections meanwhile
            try:
                self.request.do_handshake()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                log.warning(
                    "TLS handshake with %s failed (%s)", self.client_address[0], type(exc).__name__
                )
                self.server.shutdown_request(self.request)
                return
            finally:
                with self.server.lock:
                    self.server.handshaking -= 1
        super().handle()

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        sock = assoc.dul.socket
        sock.__class__ = _CappedSocket  # same object and state, only recv() is capped
        sock.pdu_cap = self.server.pdu_cap
        sock.dataset_cap = self.server.dataset_cap
        return assoc


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server plus the connection-level checks (see module docstring)."""

    daemon_threads = True
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    max_connections: int = 20
    pdu_cap: int = MIN_PDU_CAP
    dataset_cap: int = 1 << 26
    handshaking: int = 0  # TLS connections not yet handed to an association
    lock: threading.Lock  # guards `handshaking`; set by DicomReceiver.start before serving

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        client.settimeout(self.ae.network_timeout)  # no read or write blocks forever
        if self.ssl_context:  # handshake later, in the connection's own thread
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        host = str(client_address[0])
        if not ip_allowed(host, self.nets):
            log.warning("connection from %s refused: address not in dicom_allowed_ips", host)
            return False
        open_now = len(self.active_associations) + self.handshaking
        if open_now >= self.max_connections:
            log.warning(
                "connection from %s refused: %d connections open (limit %d)",
                host,
                open_now,
                self.max_connections,
            )
            return False
        return True

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket (pynetdicom's version also unlists the
        server from its AE, which this one, started by DicomReceiver, was never listed in)."""
        socketserver.TCPServer.shutdown(self)
        self.server_close()


@dataclass
class _Counts:
    calling_aet: str
    address: str
    stored: int = 0
    again: int = 0  # already spooled (same bytes)
    refused: int = 0


class DicomReceiver:
    """The Storage SCP on settings.dicom_host:dicom_port, spooling into settings' spool.

    `on_stored` runs after each new spool file (the serving process wakes its spool worker).
    `start()` does not block; `shutdown()` stops accepting, lets running associations finish
    for `grace_s`, then aborts the rest.
    """

    def __init__(
        self,
        settings: Settings,
        spool: Spool | None = None,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.spool = spool or Spool(settings.dicom_spool_dir)
        self.on_stored = on_stored
        self.nets = allowed_networks(settings.dicom_allowed_ips)
        self.ssl_context = tls_context(settings)
        self.ae = self._build_ae()
        self.server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._admitted: set[Any] = set()
        self._counts: dict[Any, _Counts] = {}

    def _build_ae(self) -> AE:
        s = self.settings
        ae = AE(ae_title=s.dicom_ae_title)
        ae.require_called_aet = s.dicom_require_called_aet
        ae.require_calling_aet = [t.strip() for t in s.dicom_allowed_aets if t.strip()]
        # pynetdicom would count idle connections as associations: the limit is ours (below)
        ae.maximum_associations = 1_000_000
        ae.acse_timeout = s.dicom_acse_timeout_s
        ae.dimse_timeout = s.dicom_dimse_timeout_s
        ae.network_timeout = s.dicom_network_timeout_s
        ae.maximum_pdu_size = s.dicom_max_pdu
        ae.add_supported_context(Verification)
        for uid in STILL_SOP_CLASSES:
            ae.add_supported_context(uid, list(TRANSFER_SYNTAXES))
        for uid in VIDEO_SOP_CLASSES:
            ae.add_supported_context(uid, list(VIDEO_TRANSFER_SYNTAXES))
        return ae

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) listened on; the port is the real one when settings asked for 0."""
        assert self.server is not None, "not started"
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Bind and serve in a background thread; returns the address."""
        s = self.settings
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_finished),
            (evt.EVT_ABORTED, self._on_finished),
        ]
        server = self.ae.make_server(
            (s.dicom_host, s.dicom_port),
            ssl_context=self.ssl_context,
            evt_handlers=handlers,
            server_class=_Server,
            request_handler=_Handler,
        )
        server.nets = self.nets
        server.lock = threading.Lock()
        server.max_connections = 2 * s.dicom_max_associations
        server.pdu_cap = _pdu_cap(s.dicom_max_pdu)
        server.dataset_cap = s.stow_max_part_bytes  # the largest instance, by either path
        self.server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dicom-scp"
        )
        self._thread.daemon = True
        self._thread.start()
        self.spool.sweep_tmp()
        host, port = self.address
        log.info("DICOM receiver %s listening on %s:%d", s.dicom_ae_title, host, port)
        return host, port

    def shutdown(self, grace_s: float = 10.0) -> None:
        """Stop accepting, wait up to `grace_s` for open associations, abort the rest."""
        if self.server is None:
            return
        self.server.shutdown()
        deadline = time.monotonic() + grace_s
        while self.server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)  # associations end on their own: a sender releasing
        for assoc in self.server.active_associations:
            assoc.abort()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.server = None

    # --- association events -------------------------------------------------------------

    def _on_requested(self, event: Event) -> None:
        """Admit at most dicom_max_associations negotiating or established associations."""
        assoc = event.assoc
        limit = self.settings.dicom_max_associations
        with self._lock:
            live = {
                a
                for a in self._admitted
                if a.is_alive() and not (a.is_released or a.is_aborted or a.is_rejected)
            }
            self._admitted = live
            self._counts = {a: c for a, c in self._counts.items() if a.is_alive()}
            if len(live) >= limit:
                full = True
            else:
                full = False
                live.add(assoc)
                calling = str(assoc.requestor.primitive.calling_ae_title or "").strip()
                address = str(assoc.requestor.address)
                self._counts[assoc] = _Counts(calling, address)
        if full:
            log.warning(
                "association from %s refused: the limit of %d associations is reached",
                assoc.requestor.address,
                limit,
            )
            assoc.acse.send_reject(*REJECT_LIMIT)
            # as pynetdicom's own rejections do: wait until the peer has read the A-ASSOCIATE-RJ
            # and closed (ARTIM, the ACSE timeout, bounds it) before the socket is shut
            assoc.kill()

    def _on_rejected(self, event: Event) -> None:
        assoc = event.assoc
        with self._lock:
            self._admitted.discard(assoc)
            self._counts.pop(assoc, None)
        primitive = assoc.requestor.primitive
        calling = str(getattr(primitive, "calling_ae_title", "") or "").strip()
        log.warning(
            "association from %r at %s rejected (called AE title or calling AE title not allowed)",
            calling,
            assoc.requestor.address,
        )

    def _on_finished(self, event: Event) -> None:
        with self._lock:
            self._admitted.discard(event.assoc)
            counts = self._counts.pop(event.assoc, None)
        if counts is not None:
            how = "released" if event.event is evt.EVT_RELEASED else "aborted"
            log.info(
                "association from %r at %s %s: %d stored, %d already spooled, %d refused",
                counts.calling_aet,
                counts.address,
                how,
                counts.stored,
                counts.again,
                counts.refused,
            )

    def _count(self, event: Event, field: str) -> None:
        with self._lock:
            counts = self._counts.get(event.assoc)
            if counts is not None:
                setattr(counts, field, getattr(counts, field) + 1)

    # --- C-STORE -------------------------------------------------------------------------

    def _on_store(self, event: Event) -> Dataset | int:
        """Check, de-identify and spool one instance; the status says what happened."""
        try:
            created = self._spool(event)
        except DicomRejected as exc:
            self._count(event, "refused")
            log.warning("C-STORE refused: %s (0x%04X)", exc.code, exc.status)
            return _status(exc.status, exc.code)
        except (OSError, MemoryError) as exc:
            self._count(event, "refused")
            log.error("C-STORE not spooled: %s %s", type(exc).__name__, _errno_name(exc))
            return _status(OUT_OF_RESOURCES, "out_of_resources")
        except Exception as exc:  # noqa: BLE001 - never an unhandled exception to the sender
            self._count(event, "refused")
            log.error("C-STORE failed: %s", type(exc).__name__)
            return _status(CANNOT_UNDERSTAND, "cannot_understand")
        self._count(event, "stored" if created else "again")
        if created and self.on_stored is not None:
            self.on_stored()
        return SUCCESS

    def _spool(self, event: Event) -> bool:
        """The handler's work; True when a new spool file was written."""
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception as exc:  # noqa: BLE001 - undecodable stream
            raise DicomRejected(
                "cannot_understand", f"cannot parse the data set ({type(exc).__name__})"
            ) from None
        instance = instance_from_dataset(ds, self.settings)
        request = event.request
        ident = instance.identity
        if ident.sop_class_uid != str(request.AffectedSOPClassUID) or ident.sop_instance_uid != (
            str(request.AffectedSOPInstanceUID)
        ):
            raise DicomRejected(
                "dataset_mismatch",
                "SOP Class or Instance UID differs from the C-STORE request",
                DATASET_MISMATCH,
            )
        if is_video(instance):  # a bitstream that does not decode fails now, not in the spool
            checked_stream(instance, self.settings, self.spool.tmp)
        deidentify(instance.dataset)
        data = to_part10(instance.dataset)
        calling = str(event.assoc.requestor.ae_title or "").strip()
        source = self.settings.dicom_source or calling or "dicom"
        ident = with_calling_aet(ident, calling, self.settings)  # room code (dicom_room_from)
        _, created = self.spool.put(data, spool_meta(source, ident.to_json()))
        return created


def _status(code: int, comment: str) -> Dataset:
    """A failure status with the stable code as Error Comment (shown by DCMTK and PACS logs)."""
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds


def _errno_name(exc: BaseException) -> str:
    import errno

    number = getattr(exc, "errno", None)
    return errno.errorcode.get(number, "") if isinstance(number, int) else ""


def quiet_pynetdicom(level: int = logging.WARNING) -> None:
    """pynetdicom logs PDU and DIMSE details at INFO/DEBUG (UIDs, peer details, and in some
    paths dataset summaries): keep its logger at WARNING or above so ours stays the record."""
    logger = logging.getLogger("pynetdicom")
    logger.setLevel(max(level, logging.WARNING))
