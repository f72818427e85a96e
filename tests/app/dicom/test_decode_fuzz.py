"""Seeded mutation fuzzing of the DICOM pixel path, every case in a child process.

WHY a child: the codecs are native extensions (Pillow's libjpeg and openjpeg, pylibjpeg-openjpeg,
pyjpegls/CharLS, pylibjpeg-rle). python-gdcm aborted the whole interpreter (an uncaught C++
exception) on one corrupt JPEG frame, so one hostile C-STORE would have killed the receiver; it
was removed. An abort or a segfault cannot be caught in Python, so the cases run in batches in a
child (`python -m tests.app.dicom.test_decode_fuzz FIRST COUNT`) that prints each outcome; a
child that dies or hangs is reported with the seed it died on (its input saved), and the next
child resumes after it.

Corpus: pydicom's test files for every transfer syntax we accept (relabelled Secondary Capture so
the header check passes) and factory VL Endoscopic instances (native and JPEG Baseline). Most
mutations hit the pixel data fragments (bytes, codec header fields, fragment structure) and keep
the encapsulation valid, so the header check passes and the codec sees the hostile bytes; the
rest change Image Pixel attributes, the transfer syntax or header bytes. Each case runs
read_instance -> frame_uploads -> stored_photo (with the field-of-view mask); success,
DicomRejected and ImageDecodeError are the only allowed outcomes. `case(n)` rebuilds case n.

Found so far (regression tests below): pylibjpeg-rle panics (pyo3 PanicException, not an
Exception) on corrupt RLE segments -> frames.py maps it; CharLS burns 4-12 s of CPU per JPEG-LS
frame that ends without a marker -> header.py requires EOI; codecs allocate what the frame's
SOF/SIZ claims, not Rows/Columns -> header.py compares them; pydicom loops forever on a JP2
box of length 0 -> header.py walks the boxes first.

ENDOSEEK_DICOM_FUZZ_CASES sets the number of cases (default 2000: ~15 s on two cores),
ENDOSEEK_DICOM_FUZZ_FIRST_SEED the first seed (default 5000000) for longer runs by hand;
ENDOSEEK_DICOM_FUZZ_SAVE names a folder for the inputs of crashing cases (default tmp_path).
"""

from __future__ import annotations

import copy
import faulthandler
import importlib.util
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragmented_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from app.dicom import conformance
from app.dicom.errors import DicomRejected
from tests.app.dicom import factory
from tests.reliability import mutate
from tests.reliability.mutate import Field
from tests.timing import scaled

CASES = int(os.environ.get("ENDOSEEK_DICOM_FUZZ_CASES", "2000"))
# other fuzzers use seeds from 1_000_000 and 2_000_000
FIRST_SEED = int(os.environ.get("ENDOSEEK_DICOM_FUZZ_FIRST_SEED", "5000000"))
BATCH = 1000  # cases per child: bounds what a leak in a codec can accumulate
MAX_PIXELS = 1 << 22  # per frame; small, so a mutated Rows x Columns cannot make a case slow
ROOT = Path(__file__).resolve().parents[3]

# pydicom's decoding plugins this file fuzzes; another one (gdcm aborts the process, libjpeg is
# GPL) must not be installed without being fuzzed here first.
FUZZED_PLUGINS = frozenset({"pillow", "pylibjpeg", "pyjpegls", "pydicom"})

# name -> (pydicom test file, transfer syntax to relabel it with or None)
PYDICOM_FILES: dict[str, tuple[str, str | None]] = {
    "jpeg_ybr_full": ("SC_rgb_jpeg_dcmtk.dcm", None),
    "jpeg_ybr_422": ("SC_rgb_dcmtk_+eb+cy+np.dcm", None),
    "jpeg_rgb": ("SC_rgb_jpeg.dcm", None),  # no colour transform: decoded by pydicom
    "jpeg_3x3": ("SC_rgb_small_odd_jpeg.dcm", None),
    "jpeg_extended_8bit": ("SC_rgb_dcmtk_+eb+cy+np.dcm", str(JPEGExtended12Bit)),
    "jls_lossless_16": ("MR_small_jpeg_ls_lossless.dcm", None),
    "jls_lossless_10f": ("emri_small_jpeg_ls_lossless.dcm", None),
    "jls_near_8": ("JPEGLSNearLossless_08.dcm", None),
    "jls_near_rgb": ("SC_rgb_jls_lossy_sample.dcm", None),
    "jls_near_rgb_line": ("SC_rgb_jls_lossy_line.dcm", None),
    "j2k_lossless_16": ("MR_small_jp2klossless.dcm", None),
    "j2k_lossless_rct": ("GDCMJ2K_TextGBR.dcm", None),
    "j2k_lossy_rgb": ("SC_rgb_gdcm_KY.dcm", None),
    "j2k_lossy_16": ("693_J2KI.dcm", None),
    "rle_rgb": ("SC_rgb_rle.dcm", None),
    "rle_rgb_2f": ("SC_rgb_rle_2frame.dcm", None),
    "rle_16": ("MR_small_RLE.dcm", None),
    "native_implicit_16": ("MR_small_implicit.dcm", None),
    "native_ybr_422": ("SC_ybr_full_422_uncompressed.dcm", None),
    "native_rgb_odd": ("SC_rgb_small_odd.dcm", None),
}

_PIXEL_TAG = b"\xe0\x7f\x10\x00"
_ITEM_TAG = b"\xfe\xff\x00\xe0"
_SEQ_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ---- corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    """A corpus instance split for mutation: the data set without Pixel Data, and the pixels
    (encoded fragments per frame, or native bytes)."""

    name: str
    dataset: Dataset  # without PixelData
    prefix: bytes  # the Part 10 file up to Pixel Data
    transfer_syntax: str
    frames: tuple[tuple[bytes, ...], ...]  # encapsulated: fragments of each frame
    native: bytes  # native: the pixel data value
    bits: int

    @property
    def encapsulated(self) -> bool:
        return self.transfer_syntax not in conformance.NATIVE_TRANSFER_SYNTAXES

    @property
    def codec(self) -> str:
        """The family of codecs the pixel data goes to (fields to mutate, coverage report)."""
        return codec_of(self.transfer_syntax)


def codec_of(ts: str) -> str:
    if ts in conformance.JPEG_TRANSFER_SYNTAXES:
        return "jpeg"
    if ts in conformance.JPEG_LS_TRANSFER_SYNTAXES:
        return "jpeg-ls"
    if ts in conformance.JPEG_2000_TRANSFER_SYNTAXES:
        return "jpeg2000"
    if ts in conformance.RLE_TRANSFER_SYNTAXES:
        return "rle"
    return "native"


def _seed(name: str, ds: Dataset) -> Seed:
    """Split `ds` (deterministic UIDs: a case must rebuild byte for byte in any process)."""
    for _ in ds.iterall():  # convert raw elements (implicit ones have no VR yet)
        pass
    ds = copy.deepcopy(ds)
    ds.SOPClassUID = SecondaryCaptureImageStorage if name in PYDICOM_FILES else ds.SOPClassUID
    for i, keyword in enumerate(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        setattr(ds, keyword, generate_uid(entropy_srcs=[name, str(i)]))
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for tag in [t for t in ds.keys() if t > 0x7FE00010]:  # nothing after Pixel Data
        del ds[tag]
    ts = str(ds.file_meta.TransferSyntaxUID)
    pixels = ds.PixelData
    del ds.PixelData
    frames: tuple[tuple[bytes, ...], ...] = ()
    native = b""
    if ts in conformance.NATIVE_TRANSFER_SYNTAXES:
        native = bytes(pixels)
    else:
        count = int(ds.get("NumberOfFrames", 1) or 1)
        split = generate_fragmented_frames(pixels, number_of_frames=count)
        frames = tuple(tuple(bytes(x) for x in f) for f in split)
    return Seed(name, ds, factory.to_bytes(ds), ts, frames, native, int(ds.BitsAllocated))


@cache
def corpus() -> dict[str, Seed]:
    """name -> Seed: the pydicom files and factory instances (built the same in every process)."""
    out: dict[str, Seed] = {}
    for name, (filename, relabel) in PYDICOM_FILES.items():
        ds = dcmread(factory.corpus_file(filename))
        if relabel:
            ds.file_meta.TransferSyntaxUID = relabel
        out[name] = _seed(name, ds)
    photo = factory.synthetic_photo(3, size=(96, 72))
    for name, ts in (("vl_native", ExplicitVRLittleEndian), ("vl_jpeg", JPEGBaseline8Bit)):
        out[name] = _seed(name, factory.vl_endoscopic(photo, transfer_syntax=ts))
    return out


# ---- codec header fields ----------------------------------------------------------------------


def jpeg_fields(d: bytes) -> list[Field]:
    """JPEG and JPEG-LS marker segments up to the first scan: lengths, SOF (incl. SOF55) and SOS
    fields, JPEG-LS preset parameters (LSE)."""
    out: list[Field] = []
    pos = 2
    while pos + 4 <= len(d) and d[pos] == 0xFF:
        marker = d[pos + 1]
        (length,) = struct.unpack_from(">H", d, pos + 2)
        out.append(Field(pos + 2, 2, ">", f"FF{marker:02X}.length"))
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            out += [
                Field(pos + 4, 1, ">", "SOF.precision"),
                Field(pos + 5, 2, ">", "SOF.height"),
                Field(pos + 7, 2, ">", "SOF.width"),
                Field(pos + 9, 1, ">", "SOF.components"),
                Field(pos + 11, 1, ">", "SOF.sampling"),
            ]
        elif marker == 0xF8:
            out += [Field(pos + 4 + i, 1, ">", "LSE.param") for i in range(min(length - 2, 11))]
        elif marker == 0xDA:
            count = d[pos + 4] if pos + 4 < len(d) else 0
            out.append(Field(pos + 4, 1, ">", "SOS.components"))
            tail = pos + 5 + 2 * count
            out += [Field(tail + i, 1, ">", "SOS.spectral_near_ilv") for i in range(3)]
            break
        pos += 2 + length
    return out


def j2k_fields(d: bytes) -> list[Field]:
    """JPEG 2000 codestream main header: SIZ (sizes, tiles, components), COD, segment lengths
    and the first tile-part's SOT (Psot)."""
    out: list[Field] = []
    pos = d.find(b"\xff\x4f\xff\x51")  # SOC then SIZ (a JP2 wrapper is skipped)
    if pos < 0:
        return out
    siz = pos + 4
    names = ("Lsiz", "Rsiz", "Xsiz", "Ysiz", "XOsiz", "YOsiz", "XTsiz", "YTsiz", "XTOsiz",
             "YTOsiz", "Csiz")  # fmt: skip
    sizes = (2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 2)
    off = siz
    for fname, size in zip(names, sizes, strict=True):
        out.append(Field(off, size, ">", f"SIZ.{fname}"))
        off += size
    out += [Field(off + i, 1, ">", "SIZ.component") for i in range(9)]
    pos = pos + 2
    while pos + 4 <= len(d) and d[pos] == 0xFF:
        marker = d[pos + 1]
        (length,) = struct.unpack_from(">H", d, pos + 2)
        out.append(Field(pos + 2, 2, ">", f"FF{marker:02X}.length"))
        if marker == 0x52:  # COD: style, progression, layers, MCT, levels, code-block w/h, ...
            out += [Field(pos + 4 + i, 1, ">", "COD.param") for i in range(min(length - 2, 10))]
        elif marker == 0x5C:  # QCD
            out.append(Field(pos + 4, 1, ">", "QCD.style"))
        elif marker == 0x90:  # SOT: Isot, Psot, TPsot, TNsot
            out += [
                Field(pos + 4, 2, ">", "SOT.Isot"),
                Field(pos + 6, 4, ">", "SOT.Psot"),
                Field(pos + 10, 1, ">", "SOT.TPsot"),
                Field(pos + 11, 1, ">", "SOT.TNsot"),
            ]
            break
        pos += 2 + length
    return out


def rle_fields(d: bytes) -> list[Field]:
    """The RLE header (PS3.5 G.5): segment count and the 15 segment offsets."""
    if len(d) < 64:
        return []
    return [Field(0, 4, "<", "RLE.segments")] * 3 + [
        Field(4 + 4 * i, 4, "<", f"RLE.offset{i}") for i in range(15)
    ]


FIELD_FINDERS: dict[str, Callable[[bytes], list[Field]]] = {
    "jpeg": jpeg_fields,
    "jpeg-ls": jpeg_fields,
    "jpeg2000": j2k_fields,
    "rle": rle_fields,
}


def _edge(rng: random.Random, old: int, size: int) -> int:
    top = (1 << (8 * size)) - 1
    values = (0, 1, 2, 3, 7, 8, 15, 16, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF,
              0x10000, 0x7FFFFFFF, 0x80000000, top, top - 1, old + 1, old - 1, old * 2,
              old // 2, old + 4, old - 4, old * 256, rng.randrange(top + 1))  # fmt: skip
    return rng.choice(values) & top


def mutate_codec_field(frag: bytearray, codec: str, rng: random.Random) -> str:
    """Set one codec header field to an edge value (else flip bits)."""
    try:
        fields = FIELD_FINDERS[codec](bytes(frag))
    except (struct.error, IndexError):
        fields = []
    fields = [f for f in fields if f.offset + f.size <= len(frag)]
    if not fields:
        return mutate.bit_flip(frag, rng)
    f = rng.choice(fields)
    order = "big" if f.order == ">" else "little"
    old = int.from_bytes(frag[f.offset : f.offset + f.size], order)
    new = _edge(rng, old, f.size)
    frag[f.offset : f.offset + f.size] = new.to_bytes(f.size, order)
    return f"{f.name}@{f.offset}: {old} -> {new}"


# ---- mutations ------------------------------------------------------------------------------

_NUMERIC = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
            "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames")  # fmt: skip
_PHOTOMETRICS = sorted(conformance.PHOTOMETRICS) + ["PALETTE COLOR", "YBR_PARTIAL_420", "ARGB"]
_EXPLICIT_SYNTAXES = [ts for ts in conformance.TRANSFER_SYNTAXES if ts != ImplicitVRLittleEndian]


def _mutate_attribute(ds: Dataset, rng: random.Random) -> str:
    """One Image Pixel attribute or the transfer syntax to a near or edge value."""
    pick = rng.random()
    if pick < 0.15:
        old = str(ds.get("PhotometricInterpretation", ""))
        ds.PhotometricInterpretation = rng.choice(_PHOTOMETRICS)
        return f"PhotometricInterpretation {old} -> {ds.PhotometricInterpretation}"
    if pick < 0.3 and ds.file_meta.TransferSyntaxUID != ImplicitVRLittleEndian:
        old = ds.file_meta.TransferSyntaxUID
        ds.file_meta.TransferSyntaxUID = rng.choice(_EXPLICIT_SYNTAXES)
        return f"TransferSyntaxUID {old.name} -> {ds.file_meta.TransferSyntaxUID.name}"
    if pick < 0.4:
        ds.Rows, ds.Columns = ds.Columns, ds.Rows
        return "Rows <-> Columns"
    keyword = rng.choice(_NUMERIC)
    old = int(ds.get(keyword, 1) or 0)
    new = rng.choice((old + 1, old - 1, old * 2, old // 2, 0, 1, 2, 3, 8, 12, 16, 32, 65535,
                      rng.randint(1, 2048)))  # fmt: skip
    new = max(0, min(new, 65535))
    if keyword == "NumberOfFrames":
        ds.NumberOfFrames = str(new)
    else:
        setattr(ds, keyword, new)
    return f"{keyword} {old} -> {new}"


def _mutate_fragments(frames: list[list[bytes]], codec: str, rng: random.Random) -> str:
    """Bytes, codec fields or the fragment structure of one frame."""
    i = rng.randrange(len(frames))
    if not frames[i]:
        frames[i].append(b"")
    j = rng.randrange(len(frames[i]))
    frag = bytearray(frames[i][j])
    op = rng.choices(
        ("field", "flip", "run", "truncate", "splice", "split", "drop", "dup", "empty"),
        weights=(6, 4, 3, 2, 2, 1, 1, 1, 1),
    )[0]
    where = f"frame {i + 1} fragment {j + 1}"
    if op in ("split", "drop", "dup", "empty") or len(frag) < 2:
        if op == "split" and len(frag) >= 2:
            at = rng.randrange(1, len(frag))
            frames[i][j : j + 1] = [bytes(frag[:at]), bytes(frag[at:])]
            return f"{where}: split at {at}"
        if op == "drop":
            del frames[i][j]
            return f"{where}: dropped"
        if op == "dup":
            frames[i].insert(j, bytes(frag))
            return f"{where}: duplicated"
        frames[i][j] = b""
        return f"{where}: emptied"
    if op == "field":
        how = mutate_codec_field(frag, codec, rng)
    else:
        mutator = {"flip": mutate.bit_flip, "run": mutate.byte_run, "truncate": mutate.truncate}
        how = mutator.get(op, mutate.splice)(frag, rng)
    frames[i][j] = bytes(frag)
    return f"{where}: {how}"


def _mutate_native(native: bytearray, rng: random.Random) -> str:
    op = rng.choices((mutate.bit_flip, mutate.byte_run, mutate.truncate, mutate.splice),
                     weights=(5, 4, 1, 1))[0]  # fmt: skip
    return f"pixels: {op(native, rng)}"


def _item(data: bytes) -> bytes:
    return _ITEM_TAG + struct.pack("<L", len(data)) + data


def pixel_element(seed: Seed, ts: str, frames: list[list[bytes]], native: bytes, bot: str) -> bytes:
    """The Pixel Data element, written by hand so it can be as hostile as the case wants."""
    if seed.encapsulated:
        offsets, pos = [], 0
        for fragments in frames:
            offsets.append(pos)
            pos += sum(8 + len(f) for f in fragments)
        table = b""
        if bot == "ok" and len(frames) > 1:
            table = struct.pack(f"<{len(offsets)}L", *offsets)
        elif bot == "garbage":
            table = bytes(
                random.Random(len(offsets)).randrange(256) for _ in range(4 * len(frames))
            )
        items = b"".join(_item(f) for fragments in frames for f in fragments)
        return _PIXEL_TAG + b"OB\0\0\xff\xff\xff\xff" + _item(table) + items + _SEQ_DELIMITER
    value = native + b"\0" * (len(native) % 2)
    if ts == ImplicitVRLittleEndian:
        return _PIXEL_TAG + struct.pack("<L", len(value)) + value
    vr = b"OW" if seed.bits == 16 else b"OB"
    return _PIXEL_TAG + vr + b"\0\0" + struct.pack("<L", len(value)) + value


def unmutated(seed: Seed) -> bytes:
    """The seed instance as a Part 10 file."""
    frames = [list(f) for f in seed.frames]
    return seed.prefix + pixel_element(seed, seed.transfer_syntax, frames, seed.native, "ok")


def mutate_seed(seed: Seed, rng: random.Random) -> tuple[bytes, str]:
    """One case from one seed: mostly pixel mutations, some header ones, always at least one."""
    steps: list[str] = []
    prefix, ts = seed.prefix, seed.transfer_syntax
    if rng.random() < 0.2:  # Image Pixel attributes / transfer syntax
        ds = copy.deepcopy(seed.dataset)
        steps += [_mutate_attribute(ds, rng) for _ in range(rng.choice((1, 1, 2)))]
        prefix, ts = factory.to_bytes(ds), str(ds.file_meta.TransferSyntaxUID)
    frames = [list(f) for f in seed.frames]
    native = bytearray(seed.native)
    if not steps or rng.random() < 0.3:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            if seed.encapsulated:
                steps.append(_mutate_fragments(frames, seed.codec, rng))
            elif len(native) >= 2:
                steps.append(_mutate_native(native, rng))
    bot = rng.choices(("ok", "empty", "garbage"), weights=(16, 3, 1))[0]
    if bot != "ok" and len(frames) > 1:
        steps.append(f"offset table {bot}")
    data = prefix + pixel_element(seed, ts, frames, bytes(native), bot)
    if rng.random() < 0.08:  # header bytes (after the preamble), or the file cut short
        head = bytearray(data[132 : len(prefix)])
        op = rng.choice((mutate.bit_flip, mutate.byte_run, mutate.splice))
        steps.append(f"header {op(head, rng)}")
        data = data[:132] + bytes(head) + data[len(prefix) :]
    elif rng.random() < 0.03:
        cut = bytearray(data)
        steps.append(f"file {mutate.truncate(cut, rng)}")
        data = bytes(cut)
    return data, "; ".join(steps)


def case(n: int) -> tuple[str, bytes, str]:
    """Case `n`: (corpus name, mutated Part 10 bytes, what was done) - reproducible alone."""
    rng = random.Random(n)
    seeds = corpus()
    name = rng.choice(sorted(seeds))
    data, how = mutate_seed(seeds[name], rng)
    return name, data, how


# ---- one case (in the child) ----------------------------------------------------------------


def run_one(data: bytes, settings: object) -> str:
    """The receiver's whole pixel path on `data` -> an outcome word (see the module doc)."""
    from app.dicom.frames import frame_uploads
    from app.dicom.header import read_instance
    from app.services.stored_photo import stored_photo
    from embedder.errors import ImageDecodeError

    def prepare(img: object) -> None:
        assert getattr(img, "mode", None) == "RGB"

    try:
        inst = read_instance(data, settings)  # type: ignore[arg-type]
        uploads = frame_uploads(inst, settings)  # type: ignore[arg-type]
        for up in uploads:
            if up.image is not None and up.image.size != (inst.columns, inst.rows):
                return f"invalid: frame of {up.image.size}, header {inst.columns}x{inst.rows}"
            stored_photo(up.data, max_pixels=MAX_PIXELS, fov_mask=True, prepare=prepare,
                         image=up.image)  # fmt: skip
    except DicomRejected as exc:
        if any(v.lower() in exc.message.lower() for v in factory.PHI.values()):
            return f"invalid: patient data in the message {exc.code}"
        if exc.message.startswith("the pixel data does not decode"):
            return f"codec_error:{exc.message.rpartition('(')[2].rstrip(')')}"
        return f"rejected:{exc.code}"
    except ImageDecodeError as exc:
        return f"image_error:{exc.code}"
    except Exception as exc:  # noqa: BLE001 - reported with the seed
        return f"escaped:{type(exc).__name__}: {exc}"[:300]
    return "decoded" if all(up.image is not None for up in uploads) else "decoded_jpeg"


def worker(first: int, count: int) -> None:
    """Child: run cases first..first+count-1, one line "seed<TAB>seconds<TAB>outcome" each."""
    warnings.simplefilter("ignore")
    faulthandler.enable()  # a segfault or abort prints the Python stack to stderr
    from app.settings import Settings

    settings = Settings(max_pixels=MAX_PIXELS)
    for seed in corpus().values():  # warm up: imports and codec plugins load outside the cases
        run_one(unmutated(seed), settings)
    print("ready", flush=True)
    for n in range(first, first + count):
        _, data, _ = case(n)
        started = time.perf_counter()
        outcome = run_one(data, settings).replace("\t", " ").replace("\n", " ")
        print(f"{n}\t{time.perf_counter() - started:.4f}\t{outcome}", flush=True)


# ---- the parent: batches of cases in children, deaths and hangs reported --------------------


@dataclass
class Report:
    outcomes: dict[int, str] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)  # what each case took (the report)
    deaths: list[tuple[int, str]] = field(default_factory=list)  # (seed, how the child ended)


def run_cases(
    command: Callable[[int, int], list[str]],
    first: int,
    count: int,
    *,
    batch: int = BATCH,
    startup_s: float = 120.0,
    case_s: float = 60.0,
) -> Report:
    """Run seeds first..first+count-1 in children `command(first, count)`, `batch` per child.

    A child that exits early, dies by a signal or prints nothing for case_s seconds (a codec
    looping forever) is recorded against the first seed it did not report; the next child
    starts after that seed. The deadlines only catch hangs; they assert nothing about speed."""
    report = Report()
    nxt, end = first, first + count
    while nxt < end:
        n = min(batch, end - nxt)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                command(nxt, n), stdout=subprocess.PIPE, stderr=err, cwd=ROOT, close_fds=True
            )
            ended, hung, ready = _read(proc, report, nxt, startup_s, case_s)
            if hung:
                proc.kill()
            rc = proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
            done = [s for s in range(nxt, nxt + n) if s in report.outcomes]
            stuck = nxt + len(done)
            if not ended or rc != 0 or stuck < nxt + n:
                err.seek(0)
                tail = err.read().decode(errors="replace")[-1500:]
                how = "hung (killed)" if hung else _exit_text(rc)
                if not ready:  # the harness or the corpus is broken, not a case
                    report.deaths.append((nxt, f"before its first case: {how}; stderr: {tail}"))
                    break
                report.deaths.append((stuck, f"{how}; stderr: {tail}"))
                nxt = stuck + 1
            else:
                nxt += n
    return report


def _exit_text(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def _read(
    proc: subprocess.Popen[bytes], report: Report, first: int, startup_s: float, case_s: float
) -> tuple[bool, bool, bool]:
    """Collect "seed<TAB>seconds<TAB>outcome" lines into report -> (reached EOF, hung, ready)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    buf, ready, expect = b"", False, first
    try:
        while True:
            if not sel.select(scaled(case_s if ready else startup_s)):
                return False, True, ready
            chunk = os.read(fd, 65536)
            if not chunk:
                return True, False, ready
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line == "ready":
                    ready = True
                    continue
                seed, _, rest = line.partition("\t")
                took, _, outcome = rest.partition("\t")
                if seed.isdigit() and int(seed) == expect:
                    report.outcomes[expect] = outcome
                    report.seconds[expect] = float(took or 0)
                    expect += 1
    finally:
        sel.close()


def child_command(first: int, count: int) -> list[str]:
    return [sys.executable, "-m", "tests.app.dicom.test_decode_fuzz", str(first), str(count)]


def save_case(seed: int, folder: Path) -> Path:
    """Write case `seed`'s input (and how it was made) for a crash report."""
    name, data, how = case(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"case-{seed}-{name}.dcm"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(f"seed {seed} ({name}): {how}\n")
    return path


# ---- tests ----------------------------------------------------------------------------------


def test_only_fuzzed_decoders_are_installed() -> None:
    """gdcm aborts the process on a corrupt frame; any plugin not fuzzed here is a risk."""
    assert importlib.util.find_spec("gdcm") is None, "python-gdcm is installed: it aborts"
    for ts in conformance.TRANSFER_SYNTAXES:
        plugins = set(get_decoder(ts).available_plugins)
        assert plugins <= FUZZED_PLUGINS, (ts, plugins - FUZZED_PLUGINS)


def test_corpus_covers_every_syntax_and_decodes() -> None:
    """Unmutated, every corpus instance is stored; together they cover every transfer syntax."""
    from app.settings import Settings

    settings = Settings(max_pixels=MAX_PIXELS)
    seeds = corpus()
    assert {s.transfer_syntax for s in seeds.values()} == set(conformance.TRANSFER_SYNTAXES)
    for name, seed in seeds.items():
        outcome = run_one(unmutated(seed), settings)
        assert outcome.startswith("decoded"), (name, outcome)


def test_codec_fields_are_found() -> None:
    """The field mutator reaches each codec's header (else it only flips random bytes)."""
    want = {
        "jpeg_ybr_full": {"SOF.height", "SOF.width", "FFC4.length", "SOS.components"},
        "jls_near_rgb": {"SOF.height", "SOF.components", "SOS.spectral_near_ilv"},
        "j2k_lossless_rct": {"SIZ.Xsiz", "SIZ.Csiz", "COD.param", "SOT.Psot"},
        "j2k_lossy_16": {"SIZ.Ysiz", "SIZ.component", "FF5C.length", "SOT.Psot"},
        "rle_rgb_2f": {"RLE.segments", "RLE.offset0", "RLE.offset2"},
    }
    seeds = corpus()
    for name, names in want.items():
        seed = seeds[name]
        found = {f.name for f in FIELD_FINDERS[seed.codec](seed.frames[0][0])}
        assert names <= found, (name, names - found)


def test_cases_are_reproducible() -> None:
    for n in (FIRST_SEED, FIRST_SEED + 17, FIRST_SEED + 999):
        assert case(n) == case(n)
    corpus.cache_clear()  # a fresh corpus (as in the child) builds the same bytes
    assert case(FIRST_SEED + 5) == case(FIRST_SEED + 5)


def _instance(seed: Seed, frames: list[list[bytes]]) -> bytes:
    return seed.prefix + pixel_element(seed, seed.transfer_syntax, frames, b"", "ok")


def _rejected(data: bytes) -> DicomRejected:
    from app.dicom.frames import frame_uploads
    from app.dicom.header import read_instance
    from app.settings import Settings

    settings = Settings(max_pixels=MAX_PIXELS)
    with pytest.raises(DicomRejected) as info:
        frame_uploads(read_instance(data, settings), settings)
    return info.value


def test_truncated_jpeg_ls_is_refused_before_decoding() -> None:
    """Found here: CharLS spends seconds of CPU per frame on a stream that ends without a
    marker, so a JPEG-LS frame must end with EOI (then its failures are instant)."""
    from app.dicom.header import read_instance
    from app.settings import Settings

    seed = corpus()["jls_lossless_10f"]
    frames = [list(f) for f in seed.frames]
    frames[5] = [frames[5][0][:3998]]
    with pytest.raises(DicomRejected) as info:
        read_instance(_instance(seed, frames), Settings(max_pixels=MAX_PIXELS))
    assert info.value.code == "corrupt_pixel_data" and "EOI" in info.value.message
    frames[5] = [frames[5][0] + b"\xff\xd9\x00"]  # an end marker: the codec fails at once
    assert _rejected(_instance(seed, frames)).code == "corrupt_pixel_data"


@pytest.mark.parametrize("name", ["jls_near_rgb", "j2k_lossy_rgb", "jpeg_ybr_full"])
def test_codestream_claiming_a_bigger_image_is_refused(name: str) -> None:
    """Found here: the codecs allocate what the frame's SOF/SIZ says (pyjpegls: ~0.9 GB for a
    4 KB frame claiming 12000x12000); the header check compares it with Rows/Columns."""
    from app.dicom.header import read_instance
    from app.settings import Settings

    seed = corpus()[name]
    frag = bytearray(seed.frames[0][0])
    sizes = {f.name: f for f in FIELD_FINDERS[seed.codec](bytes(frag))}
    for key in ("SOF.height", "SOF.width", "SIZ.Xsiz", "SIZ.Ysiz"):
        if key in sizes:
            f = sizes[key]
            frag[f.offset : f.offset + f.size] = (12000).to_bytes(f.size, "big")
    with pytest.raises(DicomRejected) as info:
        read_instance(_instance(seed, [[bytes(frag)]]), Settings(max_pixels=MAX_PIXELS))
    assert info.value.code == "corrupt_pixel_data" and "codestream" in info.value.message


def test_jp2_box_that_would_hang_pydicom_is_refused() -> None:
    """Found here (case 5007222): pydicom's get_j2k_parameters loops forever on a JP2 box of
    length 0 before the codestream box; the header check walks the boxes first."""
    from app.dicom.header import read_instance
    from app.settings import Settings

    seed = corpus()["j2k_lossless_rct"]  # JP2-wrapped, as GDCM wrote it
    (jp2,) = seed.frames[0]
    assert jp2.startswith(b"\x00\x00\x00\x0cjP  ")
    for frame in ([jp2[:43], jp2], [jp2[:12] + bytes(8) + jp2[12:]]):
        with pytest.raises(DicomRejected) as info:
            read_instance(_instance(seed, [frame]), Settings(max_pixels=MAX_PIXELS))
        assert info.value.code == "corrupt_pixel_data" and "JP2" in info.value.message


def test_rust_panic_in_a_codec_is_corrupt_pixel_data() -> None:
    """Found here: pylibjpeg-rle panics (pyo3 PanicException, a BaseException that `except
    Exception` misses) on a zeroed run in a 16-bit RLE segment; frames.py maps it."""
    from app.dicom.frames import is_rust_panic

    seed = corpus()["rle_16"]
    frag = bytearray(seed.frames[0][0])
    frag[4345 : 4345 + 11] = bytes(11)
    err = _rejected(_instance(seed, [[bytes(frag)]]))
    assert err.code == "corrupt_pixel_data"
    assert not is_rust_panic(KeyboardInterrupt()) and not is_rust_panic(ValueError())


_FAKE_CHILD = """
import os, sys, time
first, count = int(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
for n in range(first, first + count):
    if n == 13:
        os.abort()
    if n == 21:
        time.sleep(3600)
    print(f"{n}\\t0\\tdecoded", flush=True)
"""


def test_runner_reports_a_dying_or_hanging_child() -> None:
    """The harness itself: an abort and a hang are pinned on their seed, the rest still runs."""

    def command(first: int, count: int) -> list[str]:
        return [sys.executable, "-c", _FAKE_CHILD, str(first), str(count)]

    report = run_cases(command, 10, 15, batch=6, case_s=1.0)
    assert sorted(report.outcomes) == [s for s in range(10, 25) if s not in (13, 21)]
    assert [seed for seed, _ in report.deaths] == [13, 21]
    assert "SIGABRT" in report.deaths[0][1] and "hung" in report.deaths[1][1]


def test_mutated_instances_decode_or_fail_cleanly(tmp_path: Path) -> None:
    started = time.perf_counter()
    report = run_cases(child_command, FIRST_SEED, CASES)
    elapsed = time.perf_counter() - started
    seeds = corpus()
    kinds: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    per_codec: dict[str, Counter[str]] = {}
    bad = []
    for n, outcome in sorted(report.outcomes.items()):
        name, _, how = case(n)
        kind = outcome.partition(":")[0]
        kinds[kind if kind != "rejected" else outcome] += 1
        if kind == "codec_error":
            causes[outcome.partition(":")[2]] += 1
        per_codec.setdefault(seeds[name].codec, Counter())[kind] += 1
        if kind in ("escaped", "invalid"):
            bad.append(f"case {n} ({name}: {how}): {outcome}")
    folder = Path(os.environ.get("ENDOSEEK_DICOM_FUZZ_SAVE") or tmp_path)
    deaths = [
        f"case {n} ({case(n)[0]}: {case(n)[2]}) {how} -> {save_case(n, folder)}"
        for n, how in report.deaths
    ]
    slowest = sorted(report.seconds, key=report.seconds.__getitem__)[-3:]
    print(f"{CASES} cases from seed {FIRST_SEED} in {elapsed:.1f} s: {dict(kinds)}")
    print(f"  codec errors: {dict(causes)}")
    print("  slowest: " + ", ".join(f"{n} ({report.seconds[n] * 1000:.0f} ms)" for n in slowest))
    for codec, counts in sorted(per_codec.items()):
        print(f"  {codec}: {dict(counts)}")
    assert not deaths, f"{len(deaths)} children died:\n" + "\n".join(deaths[:10])
    assert not bad, f"{len(bad)} cases escaped the guards:\n" + "\n".join(bad[:20])
    assert len(report.outcomes) == CASES
    # the mutations bite without destroying everything, and every codec met hostile bytes
    assert kinds["decoded"] + kinds["decoded_jpeg"] > CASES // 10, kinds
    assert kinds["codec_error"] > CASES // 20, kinds
    if CASES >= 1000:
        for codec in ("jpeg", "jpeg-ls", "jpeg2000", "rle"):
            counts = per_codec.get(codec, Counter())
            decoded = counts["decoded"] + counts["decoded_jpeg"]
            assert counts["codec_error"] > 0 and decoded > 0, (codec, counts)


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]))
