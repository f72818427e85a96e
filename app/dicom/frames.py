"""Pixels second: turn a checked Instance into photo uploads (one per kept frame).

WHY two paths: a JPEG Baseline frame whose colour Pillow reads exactly as pydicom does (YBR with
a JFIF marker, an Adobe YCbCr transform, or no colour markers and non-RGB component ids) is passed
on as the JPEG itself - the REST decode path handles it, nothing is re-encoded. Everything else
(native, RLE, JPEG-LS, JPEG 2000, RGB JPEGs without a colour transform, which Pillow would
mis-colour) is decoded by pydicom with its colour handling (YBR -> RGB) into an 8-bit RGB image.

Multi-frame stills keep at most settings.dicom_max_frames frames, evenly spaced from the first
to the last (selected_frames); the i-th Upload is the i-th selected frame.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image
from pydicom.pixels import iter_pixels
from pydicom.uid import JPEGBaseline8Bit

from app.dicom.errors import CANNOT_UNDERSTAND, DicomRejected
from app.dicom.header import Instance, encapsulated_frames, frame_bytes
from app.dicom.jpeg_markers import SOS, is_frame_header, marker_segments
from app.services.ingest import Upload
from app.settings import Settings


def selected_frames(frames: int, keep: int) -> list[int]:
    """1-based frame numbers to keep: all when frames <= keep, else `keep` evenly spaced
    including the first and the last (one frame: the first)."""
    if frames <= keep:
        return list(range(1, frames + 1))
    if keep == 1:
        return [1]
    return sorted({1 + round(i * (frames - 1) / (keep - 1)) for i in range(keep)})


def frame_uploads(instance: Instance, settings: Settings) -> list[Upload]:
    """One Upload per selected frame; any decode failure is DicomRejected corrupt_pixel_data."""
    try:
        return _uploads(instance, selected_frames(instance.frames, settings.dicom_max_frames))
    except DicomRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - codec errors, MemoryError, bad shapes, ...
        raise _undecodable(exc) from None
    except BaseException as exc:
        if not is_rust_panic(exc):
            raise
        raise _undecodable(exc) from None


def is_rust_panic(exc: BaseException) -> bool:
    """pyo3's PanicException (pylibjpeg-rle panics on some corrupt RLE segments, see
    tests/app/dicom/test_decode_fuzz.py) derives from BaseException, so `except Exception`
    misses it and it would escape the receiver's handlers. A Rust panic unwinds cleanly: it is
    a decode failure like any other."""
    return type(exc).__name__ == "PanicException" and type(exc).__module__ == "pyo3_runtime"


def _undecodable(exc: BaseException) -> DicomRejected:
    return DicomRejected(
        "corrupt_pixel_data",
        f"the pixel data does not decode ({type(exc).__name__})",
        CANNOT_UNDERSTAND,
    )


def _name(instance: Instance, frame: int) -> str:
    return f"{instance.identity.sop_instance_uid}#{frame}"


def _uploads(inst: Instance, numbers: list[int]) -> list[Upload]:
    if inst.encapsulated:
        encoded = encapsulated_frames(inst)
        raw = {n: b"".join(encoded[n - 1]) for n in numbers}
        passing = {n for n in numbers if _pass_through(inst, encoded[n - 1])}
    else:
        size = frame_bytes(inst)
        pixels = inst.dataset.PixelData
        raw = {n: bytes(pixels[(n - 1) * size : n * size]) for n in numbers}
        passing = set()
    out: dict[int, Upload] = {
        n: Upload(filename=_name(inst, n), data=raw[n]) for n in numbers if n in passing
    }
    to_decode = [n for n in numbers if n not in passing]
    if to_decode:
        arrays = iter_pixels(inst.dataset, indices=[n - 1 for n in to_decode], as_rgb=True)
        for n, arr in zip(to_decode, arrays, strict=True):
            image = _to_rgb(inst, arr)
            out[n] = Upload(filename=_name(inst, n), data=raw[n], image=image)
    return [out[n] for n in numbers]


def _to_rgb(inst: Instance, arr: np.ndarray) -> Image.Image:
    """A decoded frame as 8-bit RGB: colour as is; grey stretched to 0..255 when wider than 8
    bits (min-max per frame: photos have no calibrated window), MONOCHROME1 inverted."""
    expected = (inst.rows, inst.columns) + ((3,) if inst.samples == 3 else ())
    if arr.shape != expected:
        raise DicomRejected(
            "corrupt_pixel_data", "a decoded frame has the wrong shape", CANNOT_UNDERSTAND
        )
    if inst.samples == 3:
        return Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8), "RGB")
    grey = arr.astype(np.float32)
    if arr.dtype != np.uint8:
        lo, hi = float(grey.min()), float(grey.max())
        grey = (grey - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(grey)
    if inst.photometric == "MONOCHROME1":
        grey = 255.0 - grey
    g8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return Image.fromarray(g8, "L").convert("RGB")


def _pass_through(inst: Instance, fragments: list[bytes]) -> bool:
    """May this frame's JPEG go to the REST decoder as is (Pillow's colours == pydicom's)?"""
    if (
        inst.transfer_syntax != JPEGBaseline8Bit
        or inst.photometric not in ("YBR_FULL_422", "YBR_FULL")
        or inst.samples != 3
        or len(fragments) != 1
    ):
        return False
    info = jpeg_info(fragments[0])
    if info is None or info.get("precision") != 8 or info.get("components") != 3:
        return False
    if (info.get("height"), info.get("width")) != (inst.rows, inst.columns):
        return False
    if "adobe_transform" in info:
        return info["adobe_transform"] == 1  # 0: RGB (Pillow would not convert), 2: YCCK
    if info.get("jfif"):
        return True
    return info.get("ids") != (0x52, 0x47, 0x42)  # 'R','G','B' ids: libjpeg reads as RGB


_SOF_BASELINE = (0xC0, 0xC1)


def jpeg_info(data: bytes) -> dict[str, int | bool | tuple[int, ...]] | None:
    """Markers up to the first scan: SOF type, size, components, JFIF/Adobe colour hints.
    None when the bytes are not a baseline/extended Huffman JPEG we can read cheaply."""
    if not data.startswith(b"\xff\xd8"):
        return None
    info: dict[str, int | bool | tuple[int, ...]] = {}
    for marker, pos, length in marker_segments(data):
        body = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        if marker == SOS:  # start of scan: header done
            return info if "components" in info else None
        if marker == 0xE0 and body.startswith(b"JFIF\x00"):
            info["jfif"] = True
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            info["adobe_transform"] = body[11]
        elif is_frame_header(marker):
            if marker not in _SOF_BASELINE or len(body) < 6:
                return None
            precision, height, width, count = struct.unpack_from(">BHHB", body, 0)
            if len(body) < 6 + 3 * count:
                return None
            info.update(precision=precision, height=height, width=width, components=count)
            info["ids"] = tuple(body[6 + 3 * i] for i in range(count))
    return None
