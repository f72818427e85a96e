"""STOW-RS (PS3.18 10.5): stream-parse a multipart/related body of DICOM instances, store each
one, answer the Store Instances Response Module (PS3.18 Annex I) as DICOM JSON.

WHY a reader of our own: Starlette parses only multipart/form-data, and a STOW body may be
hundreds of megabytes sent with chunked transfer. The body is fed chunk by chunk to
python-multipart's `MultipartParser` (any boundary, quoted or not); only the part being read
and the parts being stored are in memory. Each complete part is stored while the next one
arrives, at most PARALLEL_PARTS at once holding at most IN_FLIGHT_BYTES (the body is not read
further while they are busy), on at most STOW_THREADS worker threads for all requests
together. Parts that arrive while BATCHES earlier ones are being stored queue and are stored
together, as one photo ingest per study (one lookup, one model batch, one commit), like a REST
upload of several files.

Statuses (PS3.18 table 10.5.3-1): 200 every instance stored, 202 some stored and some failed,
409 none stored; 415 not `multipart/related` or a `type` other than application/dicom; 413 a
part over `stow_max_part_bytes` or a body over `stow_max_request_bytes`; 400 a body with no
part or no boundary; 406 an Accept without DICOM JSON; 503 (Retry-After) when the database is
unreachable: the whole request, because nothing else could be stored either and a sender
retries a 503 (storage is idempotent on the SOP Instance UID). Never a 500: a part that fails
in any way is an item of FailedSOPSequence with its FailureReason:
- the instance's DicomRejected status (header checks, pixel decode);
- 0xA900 for an instance of another study than /dicomweb/studies/{study} (PS3.18 names a
  Study Instance UID mismatch a 409 conflict; table I.2-2 gives the A9xx range, no own code);
- 0xA700 out of resources for a full volume (507), the sender retries;
- 0xC000 for a part that is not application/dicom or was cut off (no closing boundary);
- 0x0110 processing failure for anything unexpected (logged by type, never by content).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from pydicom import dcmread
from pydicom.tag import Tag
from pydicom.uid import UID
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.dicom.errors import (
    CANNOT_UNDERSTAND,
    DATASET_MISMATCH,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    DicomRejected,
)
from app.services import faults
from app.services.errors import ProblemError
from app.services.runtime import Runtime
from app.settings import Settings

if TYPE_CHECKING:
    from app.dicom.header import Instance

log = logging.getLogger(__name__)

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
# Parts of one request stored at once: enough for the model to batch their frames; their bytes
# held at once are bounded too (a part larger than the budget is stored alone).
PARALLEL_PARTS = 8
IN_FLIGHT_BYTES = 64 * 1024 * 1024
# Batches of one request stored at once: parts arriving meanwhile queue for the next batch.
BATCHES = 2
# Worker threads of all STOW requests together: their own limiter, so that STOW load never
# takes the thread pool that FastAPI's sync routes and dependencies (key checks) run in.
STOW_THREADS = 8
MAX_PART_HEADERS = 16  # Content-Type, -Length, -ID, -Location, -Description, ... per part
STUDY_MISMATCH = DATASET_MISMATCH
NOT_DICOM = CANNOT_UNDERSTAND
DEFAULT_SOURCE = "dicomweb"

# DICOM JSON tags of the Store Instances Response Module (PS3.18 table I.1-1)
RETRIEVE_URL = "00081190"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
_UID_TAGS = [Tag("SOPClassUID"), Tag("SOPInstanceUID")]


class DicomJSONResponse(JSONResponse):
    """JSON with the DICOM media type (dicomweb-client compares it exactly: no charset)."""

    media_type = DICOM_JSON


# ---- request checks ------------------------------------------------------------------------------


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a STOW body's Content-Type; 415 for another media type or `type`.

    A missing `type` parameter is accepted (each part's own Content-Type is still checked):
    PS3.18 requires it, but refusing a whole study for it helps nobody."""
    media, params = parse_options_header(content_type or "")
    if media != b"multipart/related":
        raise ProblemError(
            415,
            "unsupported_media_type",
            'STOW-RS takes multipart/related; type="application/dicom".',
        )
    part_type = params.get(b"type", DICOM.encode()).decode("latin-1").strip().lower()
    if part_type != DICOM:
        raise ProblemError(
            415,
            "unsupported_media_type",
            f"Only type=application/dicom parts are stored, not {part_type[:64]!r}.",
        )
    boundary = params.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 200:  # RFC 2046: 1-70 characters; lenient, still bounded
        raise ProblemError(400, "invalid_multipart", "The Content-Type has no usable boundary.")
    return boundary


def accepts_dicom_json(accept: str | None) -> bool:
    """Whether the client takes the one response type this server writes."""
    if not accept or not accept.strip():
        return True
    for item in accept.split(","):
        media = item.split(";", 1)[0].strip().lower()
        if media in (DICOM_JSON, "application/json", "application/*", "*/*"):
            return True
    return False


# ---- the multipart reader ------------------------------------------------------------------------


@dataclass
class Part:
    """One complete body part: its position, media type (lower case, no parameters) and bytes."""

    index: int
    media_type: str
    data: bytes


class MultipartReader:
    """Feed body chunks; get each part back once its closing boundary has arrived.

    Over-size raises ProblemError 413 as soon as the limit is crossed (nothing more is held);
    a malformed body raises MultipartParseError. After the last chunk, `complete` tells a
    whole body from one cut off before its closing boundary (`open_part` is then the index
    of the part that never ended, if any)."""

    def __init__(self, boundary: bytes, max_part_bytes: int, max_request_bytes: int) -> None:
        self.max_part_bytes = max_part_bytes
        self.max_request_bytes = max_request_bytes
        self.seen = 0
        self.parts = 0  # parts begun
        self.open_part: int | None = None
        self._done: list[Part] = []
        self._data = bytearray()
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
            },
            max_header_count=MAX_PART_HEADERS,
        )

    @property
    def complete(self) -> bool:
        """The closing boundary has been read."""
        return self._parser.state == MultipartState.END

    def feed(self, chunk: bytes) -> list[Part]:
        """Parse `chunk`; the parts it completed, in order."""
        self.seen += len(chunk)
        if self.seen > self.max_request_bytes:
            raise ProblemError(
                413,
                "payload_too_large",
                f"The request body exceeds {self.max_request_bytes} bytes.",
            )
        if chunk and not self.complete:  # an epilogue after the closing boundary is ignored
            self._parser.write(chunk)
        return self.drain()

    def drain(self) -> list[Part]:
        """The parts completed since the last call (also after a MultipartParseError)."""
        done, self._done = self._done, []
        return done

    def _part_begin(self) -> None:
        self.open_part = self.parts
        self.parts += 1
        self._data = bytearray()
        self._headers = {}

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += memoryview(data)[start:end]
        if len(self._data) > self.max_part_bytes:
            raise ProblemError(
                413,
                "part_too_large",
                f"Part {self.open_part} exceeds the limit of {self.max_part_bytes} bytes.",
                part_index=self.open_part,
            )

    def _part_end(self) -> None:
        media = self._headers.get("content-type", "").split(";", 1)[0].strip().lower()
        assert self.open_part is not None
        self._done.append(Part(self.open_part, media, bytes(self._data)))
        self._data = bytearray()
        self.open_part = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._field, self._value = bytearray(), bytearray()


# ---- storing one part ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What became of one part: stored (failure None) or the FailureReason and a stable code."""

    index: int
    sop_class_uid: str | None
    sop_instance_uid: str | None
    failure: int | None = None
    code: str = "stored"


class Unavailable(Exception):
    """The database is down: the whole request answers this problem (503, Retry-After)."""

    def __init__(self, problem: ProblemError) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def peek_uids(data: bytes) -> tuple[str | None, str | None]:
    """SOP Class and Instance UID of a part that failed, best effort: only well-formed UIDs
    (digits and dots), so nothing else of a damaged header reaches the response."""
    try:
        ds = dcmread(io.BytesIO(data), force=True, specific_tags=_UID_TAGS)
        found = [str(ds.get(keyword) or "") for keyword in ("SOPClassUID", "SOPInstanceUID")]
    except Exception:  # noqa: BLE001 - any unreadable header just has no UIDs
        return None, None
    cls, inst = (uid if UID(uid).is_valid else None for uid in found)
    return cls, inst


class PartStore:
    """read_instance -> study check -> DicomIngest.store_many, as Outcomes; thread-safe."""

    def __init__(self, rt: Runtime, study_uid: str | None) -> None:
        from app.dicom.ingest import DicomIngest  # the ingest path loads torch: import late

        self.rt = rt
        self.settings: Settings = rt.settings
        self.study_uid = study_uid
        self.source = self.settings.dicom_source or DEFAULT_SOURCE
        self.ingest = DicomIngest(rt)

    def __call__(self, part: Part) -> Outcome:
        return self.batch([part])[0]

    def batch(self, parts: list[Part]) -> list[Outcome]:
        """Each part's Outcome, in order: the readable ones of the study stored together."""
        out: dict[int, Outcome] = {}
        ready: list[tuple[int, Part, Instance, tuple[str | None, str | None]]] = []
        for n, part in enumerate(parts):
            checked = self._check(part)
            if isinstance(checked, Outcome):
                out[n] = checked
            else:
                instance = checked
                ident = instance.identity
                ready.append((n, part, instance, (ident.sop_class_uid, ident.sop_instance_uid)))
        if ready:
            try:
                results = self.ingest.store_many([r[2] for r in ready], self.source)
            except Exception as exc:  # noqa: BLE001 - one batch never fails the request with a 500
                for n, part, _, uids in ready:
                    out[n] = self._fault(part, uids, exc)
            else:
                for (n, part, _, uids), result in zip(ready, results, strict=True):
                    if isinstance(result, DicomRejected):
                        out[n] = self._failed(part, *uids, result.status, result.code)
                    else:
                        out[n] = Outcome(part.index, *uids)
        return [out[n] for n in range(len(parts))]

    def _check(self, part: Part) -> Outcome | Instance:
        """The part's Instance if it is DICOM of the study, else its failed Outcome."""
        from app.dicom.header import read_instance

        if part.media_type not in ("", DICOM):  # no Content-Type: the body's type applies
            return self._failed(part, None, None, NOT_DICOM, "not_dicom")
        try:
            instance = read_instance(part.data, self.settings)
        except DicomRejected as exc:
            return self._failed(part, *peek_uids(part.data), exc.status, exc.code)
        except Exception as exc:  # noqa: BLE001 - one part never fails the request with a 500
            return self._fault(part, (None, None), exc)
        ident = instance.identity
        if self.study_uid is not None and ident.study_uid != self.study_uid:
            uids = (ident.sop_class_uid, ident.sop_instance_uid)
            return self._failed(part, *uids, STUDY_MISMATCH, "study_mismatch")
        return instance

    def _fault(self, part: Part, uids: tuple[str | None, str | None], exc: Exception) -> Outcome:
        """The service's faults: 503 aborts the request, 507 is out of resources, else 0x0110."""
        problem = exc if isinstance(exc, ProblemError) else faults.problem_for(exc, self.settings)
        if problem is not None and problem.status == 503:
            raise Unavailable(problem) from exc
        if problem is not None and problem.status == 507:
            return self._failed(part, *uids, OUT_OF_RESOURCES, problem.code)
        if problem is not None and problem.status < 500:
            return self._failed(part, *uids, CANNOT_UNDERSTAND, problem.code)
        # the type only: a message may quote the dataset's values
        log.error("STOW part %d: unexpected %s", part.index, type(exc).__name__)
        return self._failed(part, *uids, PROCESSING_FAILURE, "processing_failure")

    @staticmethod
    def _failed(part: Part, cls: str | None, inst: str | None, reason: int, code: str) -> Outcome:
        log.info("STOW part %d not stored: %s (0x%04X)", part.index, code, reason)
        return Outcome(part.index, cls, inst, reason, code)


# ---- the response --------------------------------------------------------------------------------


def _uid_item(outcome: Outcome) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if outcome.sop_class_uid:
        item[REFERENCED_SOP_CLASS_UID] = {"vr": "UI", "Value": [outcome.sop_class_uid]}
    if outcome.sop_instance_uid:
        item[REFERENCED_SOP_INSTANCE_UID] = {"vr": "UI", "Value": [outcome.sop_instance_uid]}
    return item


def response_body(outcomes: list[Outcome]) -> dict[str, Any]:
    """The Store Instances Response Module in DICOM JSON (PS3.18 F.2).

    RetrieveURL is type 2 and sent empty: EndoSeek serves no WADO-RS. A failed part that is
    not DICOM has no UIDs to reference, so its item holds only the FailureReason."""
    body: dict[str, Any] = {RETRIEVE_URL: {"vr": "UR"}}
    failed = [
        {**_uid_item(o), FAILURE_REASON: {"vr": "US", "Value": [o.failure]}}
        for o in outcomes
        if o.failure is not None
    ]
    stored = [{**_uid_item(o), RETRIEVE_URL: {"vr": "UR"}} for o in outcomes if o.failure is None]
    if failed:
        body[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
    if stored:
        body[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": stored}
    return body


def status_of(outcomes: list[Outcome]) -> int:
    """200 all stored, 202 some, 409 none."""
    stored = sum(o.failure is None for o in outcomes)
    if stored == len(outcomes):
        return 200
    return 202 if stored else 409


# ---- the transaction -----------------------------------------------------------------------------


class _InFlight:
    """Parts being stored in worker threads, outcomes kept in part order. At most `parts` at
    once holding at most `budget` bytes together (one larger part alone), queued or being
    stored: while they are busy the body is not read further, so TCP pushes back on the client.

    Greedy batching, no timers: at most `batches` calls of `store` run at once; parts that
    arrive meanwhile queue, and the next call takes every queued part (one photo ingest and
    one transaction for all of them instead of one each)."""

    def __init__(
        self,
        store: Callable[[list[Part]], list[Outcome]],
        parts: int,
        budget: int,
        threads: anyio.CapacityLimiter | None = None,
        batches: int = BATCHES,
    ) -> None:
        self.store = store
        self.threads = threads
        self.parts = parts
        self.budget = budget
        self.batches = batches
        self.busy = 0
        self.held = 0
        self.running = 0
        self.changed = asyncio.Condition()
        self.queue: list[tuple[Part, asyncio.Future[Outcome]]] = []
        self.futures: list[asyncio.Future[Outcome]] = []
        self.workers: list[asyncio.Task[None]] = []

    def _fits(self, size: int) -> bool:
        if self.busy == 0:
            return True
        return self.busy < self.parts and self.held + size <= self.budget

    async def submit(self, part: Part) -> None:
        size = len(part.data)
        async with self.changed:
            await self.changed.wait_for(lambda: self._fits(size))
            self.busy += 1
            self.held += size
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        self.queue.append((part, future))
        if self.running < self.batches:
            self.running += 1
            self.workers.append(asyncio.create_task(self._work()))

    async def _work(self) -> None:
        """Store what is queued, again and again until nothing is."""
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                parts = [part for part, _ in batch]
                try:
                    outcomes = await anyio.to_thread.run_sync(
                        self.store, parts, limiter=self.threads
                    )
                except Exception as exc:  # noqa: BLE001 - Unavailable: answered by outcomes()
                    for _, future in batch:
                        future.set_exception(exc)
                except BaseException:
                    for _, future in batch:
                        future.cancel()
                    raise
                else:
                    for (_, future), outcome in zip(batch, outcomes, strict=True):
                        future.set_result(outcome)
                finally:
                    async with self.changed:
                        self.busy -= len(parts)
                        self.held -= sum(len(part.data) for part in parts)
                        self.changed.notify_all()
        finally:
            self.running -= 1

    async def outcomes(self) -> list[Outcome]:
        """Wait for every part (threads cannot be cancelled); re-raise Unavailable."""
        results = await asyncio.gather(*self.futures, return_exceptions=True)
        await asyncio.gather(*self.workers, return_exceptions=True)
        out: list[Outcome] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out


def _threads(request: Request) -> anyio.CapacityLimiter:
    """The app's STOW worker limiter, made on first use (inside the running event loop)."""
    state = request.app.state
    limiter = getattr(state, "stow_threads", None)
    if limiter is None:
        limiter = state.stow_threads = anyio.CapacityLimiter(STOW_THREADS)
    return limiter


async def store_instances(request: Request, rt: Runtime, study_uid: str | None) -> Response:
    """Read the STOW body as it arrives, store each instance, answer PS3.18's response.

    Failures of the whole request raise ProblemError (problem+json by the app's handler), but
    only once every part already handed to a worker thread is done."""
    settings = rt.settings
    if not accepts_dicom_json(request.headers.get("accept")):
        raise ProblemError(406, "not_acceptable", f"STOW-RS answers {DICOM_JSON} only.")
    reader = MultipartReader(
        boundary_of(request.headers.get("content-type")),
        settings.stow_max_part_bytes,
        settings.stow_max_request_bytes,
    )
    store = PartStore(rt, study_uid).batch
    flight = _InFlight(store, PARALLEL_PARTS, IN_FLIGHT_BYTES, _threads(request))
    early: ProblemError | None = None
    malformed = False
    try:
        async for chunk in request.stream():
            for part in reader.feed(chunk):
                await flight.submit(part)
    except ProblemError as exc:  # 413: stop reading, answer once the stored parts are done
        early = exc
    except ClientDisconnect:  # gone, or cut off by BodyLimit (which answers 413/408 itself)
        log.info("STOW: the body stopped after %d bytes", reader.seen)
        early = ProblemError(400, "incomplete_body", "The request body ended early.")
    except MultipartParseError:
        log.info("STOW: malformed multipart body after %d bytes", reader.seen)
        malformed = True
        for part in reader.drain():  # parts completed in the chunk that held the error
            await flight.submit(part)
    try:
        outcomes = await flight.outcomes()
    except Unavailable as exc:
        raise exc.problem from None
    if early is not None:
        raise early
    if not reader.complete and (reader.open_part is not None or malformed):
        # cut off inside a part, or unreadable from here on: one failed item for the rest
        index = reader.open_part if reader.open_part is not None else reader.parts
        outcomes.append(Outcome(index, None, None, NOT_DICOM, "incomplete_part"))
    if reader.parts == 0:
        if malformed:
            raise ProblemError(400, "invalid_multipart", "The body is not multipart.")
        raise ProblemError(400, "no_instances", "The body holds no part to store.")
    status = status_of(outcomes)
    stored = sum(o.failure is None for o in outcomes)
    log.info("STOW: %d of %d instances stored (HTTP %d)", stored, len(outcomes), status)
    return DicomJSONResponse(response_body(outcomes), status_code=status)
