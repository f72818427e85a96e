"""Which procedure, kind and time an instance belongs to - only UIDs and codes, never PHI.

Room and operator codes are read here, before de-identification removes their sources: the
room from Station Name (or the calling AE title, setting dicom_room_from) sanitised into a
pseudonymous code; the operator only as a keyed pseudonym ("op-" + 10 hex of HMAC-SHA256 over
the normalised Performing Physician's Name, else Operators' Name) when pseudonym_key is set.
Names are never kept, logged or spooled.

WHY here and not in ingest: STOW-RS, the receiver's spool and the ingest share one reading of
the header, and its JSON form travels in the spool next to the de-identified dataset.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import unicodedata
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from app.db.models import PROCEDURE_CODE_PATTERN
from app.dicom.errors import DATASET_MISMATCH, DicomRejected
from app.settings import Settings

log = logging.getLogger(__name__)

KINDS_DEFAULT = "other"
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


@dataclass(frozen=True)
class Identity:
    """The UIDs that join a photo to the PACS, plus kind and capture time for the procedure."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    kind: str
    captured_at: datetime | None
    frames: int
    room: str | None = None  # pseudonymous codes (see the module docstring), never names
    operator: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (spool sidecar, logs): times as ISO 8601."""
        data = asdict(self)
        data["captured_at"] = self.captured_at.isoformat() if self.captured_at else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Identity:
        """Inverse of to_json."""
        raw = data.get("captured_at")
        return cls(
            study_uid=str(data["study_uid"]),
            series_uid=str(data["series_uid"]),
            sop_instance_uid=str(data["sop_instance_uid"]),
            sop_class_uid=str(data["sop_class_uid"]),
            modality=str(data.get("modality", "")),
            kind=str(data.get("kind", KINDS_DEFAULT)),
            captured_at=datetime.fromisoformat(raw) if raw else None,
            frames=int(data.get("frames", 1)),
            room=room_code(str(data.get("room") or "")),
            operator=_operator_code(str(data.get("operator") or "")),
        )


def identity_of(ds: Dataset, settings: Settings) -> Identity:
    """Read the identity; a missing or malformed UID is a DicomRejected (the join needs it),
    anything else that is unreadable degrades to a default (kind other, no time)."""
    uids = [valid_uid(ds, keyword) for keyword in _UID_KEYWORDS]
    return Identity(
        study_uid=uids[0],
        series_uid=uids[1],
        sop_instance_uid=uids[2],
        sop_class_uid=uids[3],
        modality=_text(ds, "Modality")[:16],
        kind=kind_of(ds, settings.dicom_kind_rules),
        captured_at=captured_at(ds),
        frames=number_of_frames(ds),
        room=room_code(_text(ds, "StationName"))
        if settings.dicom_room_from == "station_name"
        else None,
        operator=operator_of(ds, settings),
    )


def with_calling_aet(ident: Identity, calling_aet: str, settings: Settings) -> Identity:
    """The identity with its room from the calling AE title when dicom_room_from says so (only
    a C-STORE association has one)."""
    if settings.dicom_room_from != "calling_aet":
        return ident
    return replace(ident, room=room_code(calling_aet))


# ---- room and operator codes --------------------------------------------------------------

_CODE = re.compile(PROCEDURE_CODE_PATTERN)
_OP_CODE = re.compile(r"^op-[0-9a-f]{10}$")


def room_code(text: str) -> str | None:
    """A station name or AE title as a code: runs of other characters become '-', at most 32
    characters; None when nothing valid is left."""
    code = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip())
    code = re.sub(r"-{2,}", "-", code).strip("-._")[:32].rstrip("-._")
    return code if _CODE.fullmatch(code) else None


def operator_pseudonym(name: str, key: str) -> str | None:
    """ "op-" + the first 10 hex digits of HMAC-SHA256(key, normalised name); None for an
    empty name. Normalised: NFKC, PN component separators ('^', '=') as spaces, case-folded,
    whitespace collapsed, so "SMITH^JOHN" and "smith john" give the same code."""
    norm = unicodedata.normalize("NFKC", name).replace("^", " ").replace("=", " ")
    norm = " ".join(norm.casefold().split())
    if not norm or not key:
        return None
    digest = hmac.new(key.encode(), norm.encode(), hashlib.sha256).hexdigest()
    return f"op-{digest[:10]}"


def operator_of(ds: Dataset, settings: Settings) -> str | None:
    """The keyed pseudonym of the performing physician (else the operator), None without
    pseudonym_key: a name itself is never returned."""
    key = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else ""
    if not key:
        return None
    for keyword in ("PerformingPhysicianName", "OperatorsName"):
        if name := _text(ds, keyword):
            return operator_pseudonym(name, key)
    return None


def _operator_code(value: str) -> str | None:
    """A spooled operator code read back: only the pseudonym form passes."""
    return value if _OP_CODE.fullmatch(value) else None


def valid_uid(ds: Dataset, keyword: str) -> str:
    """The UID under `keyword`, or DicomRejected missing/invalid (0xA900)."""
    value = _text(ds, keyword)
    if not value:
        raise DicomRejected("missing_attribute", f"{keyword} is missing", DATASET_MISMATCH)
    if not UID(value).is_valid:
        raise DicomRejected("invalid_attribute", f"{keyword} is not a valid UID", DATASET_MISMATCH)
    return value


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames (IS), 1 when absent; 0 when unreadable (the header check rejects 0)."""
    try:
        raw = ds.get("NumberOfFrames")
        if raw is None or str(raw).strip() == "":
            return 1
        return int(str(raw).strip())
    except Exception:  # noqa: BLE001 - any malformed value is "invalid", never a crash
        return 0


# ---- kind -------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _compiled(rules: tuple[str, ...]) -> tuple[tuple[re.Pattern[str], str], ...]:
    """ "regex=kind" rules compiled once; a rule that does not compile is skipped (logged)."""
    out: list[tuple[re.Pattern[str], str]] = []
    for rule in rules:
        pattern, sep, kind = rule.rpartition("=")
        if not sep or not pattern or not kind.strip():
            log.warning("dicom_kind_rules: ignoring rule without 'regex=kind': %r", rule)
            continue
        try:
            out.append((re.compile(pattern, re.IGNORECASE), kind.strip()))
        except re.error:
            log.warning("dicom_kind_rules: ignoring rule with a bad regex: %r", rule)
    return tuple(out)


def kind_texts(ds: Dataset) -> list[str]:
    """The free texts the rules are matched against, in a fixed order."""
    texts = [_text(ds, "StudyDescription"), _text(ds, "RequestedProcedureDescription")]
    try:
        for item in ds.get("ProcedureCodeSequence") or []:
            texts.append(_text(item, "CodeMeaning"))
    except Exception:  # noqa: BLE001 - a malformed sequence only loses this hint
        pass
    texts.append(_text(ds, "BodyPartExamined"))
    return [t for t in texts if t]


def kind_of(ds: Dataset, rules: list[str] | tuple[str, ...]) -> str:
    """The first rule (in order) whose regex matches any of the texts; else 'other'."""
    texts = kind_texts(ds)
    for pattern, kind in _compiled(tuple(rules)):
        if any(pattern.search(text) for text in texts):
            return kind
    return KINDS_DEFAULT


# ---- time -------------------------------------------------------------------------------

_DT = re.compile(
    r"^(?P<date>\d{8})(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?(?P<tz>[+-]\d{4})?$"
)


def captured_at(ds: Dataset) -> datetime | None:
    """When the photo was taken, aware UTC: AcquisitionDateTime, else AcquisitionDate+Time,
    else ContentDate+Time. The offset is the DT's own suffix, else TimezoneOffsetFromUTC, else
    UTC (DICOM says local time of the sender; without an offset we cannot know it, and UTC keeps
    the value stable and documented). Invalid values give None, never an exception."""
    default_tz = _offset(_text(ds, "TimezoneOffsetFromUTC")) or UTC
    candidates = [
        _text(ds, "AcquisitionDateTime"),
        _joined(ds, "AcquisitionDate", "AcquisitionTime"),
        _joined(ds, "ContentDate", "ContentTime"),
    ]
    for raw in candidates:
        if raw and (when := parse_datetime(raw, default_tz)) is not None:
            return when
    return None


def _joined(ds: Dataset, date_kw: str, time_kw: str) -> str:
    day, clock = _text(ds, date_kw), _text(ds, time_kw)
    return f"{day}{clock}" if day and clock else ""


def parse_datetime(raw: str, default_tz: timezone = UTC) -> datetime | None:
    """A DICOM DT (or DA+TM joined) as aware UTC (`default_tz` when it has no offset of its
    own), None when malformed or out of range."""
    match = _DT.match(raw.strip().replace(":", ""))
    if not match:
        return None
    try:
        ymd = match.group("date")
        day = date(int(ymd[0:4]), int(ymd[4:6]), int(ymd[6:8]))
        clock = match.group("time") or ""
        hh = int(clock[0:2] or 0)
        mm = int(clock[2:4] or 0)
        ss = int(clock[4:6] or 0)
        frac = clock[7:] if len(clock) > 6 else ""
        micro = int(frac.ljust(6, "0")) if frac else 0
        if ss == 60:  # leap second: DICOM allows it, datetime does not
            ss = 59
        tz = _offset(match.group("tz")) if match.group("tz") else default_tz
        if tz is None:  # an offset beyond +-14:00 makes the whole value invalid
            return None
        local = datetime.combine(day, time(hh, mm, ss, micro), tzinfo=tz)
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _offset(raw: str) -> timezone | None:
    """'+0100' -> UTC+1; anything else (or beyond +-14:00) -> None."""
    raw = raw.strip()
    if not re.fullmatch(r"[+-]\d{4}", raw):
        return None
    hours, minutes = int(raw[1:3]), int(raw[3:5])
    if minutes >= 60 or hours * 60 + minutes > 14 * 60:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if raw[0] == "-" else delta)


def _text(ds: Dataset, keyword: str) -> str:
    """The attribute as stripped text ('' when absent or unreadable), first value if multi."""
    try:
        value = ds.get(keyword)
        if value is None:
            return ""
        if isinstance(value, list | tuple | MultiValue):
            value = value[0] if len(value) else ""
        return str(value).strip().strip("\x00").strip()
    except Exception:  # noqa: BLE001 - unreadable text is treated as absent
        return ""
