"""Bytes -> RGB image -> model input tensor: the one preprocessing path for service, jobs, training.

Decoding is defensive because uploads are untrusted: the type is sniffed from magic bytes, the
pixel count is checked from the header before any pixel data is decoded, truncated files are
errors (never half images) and every colour mode ends as 8-bit RGB.

Every ingest path goes through `decode_upload`, whose guard (`decode_guard`) turns whatever
Pillow, libtiff, libwebp or the preprocessing raise on hostile bytes (TypeError, KeyError,
struct.error, ...) into an ImageDecodeError: a client error with a stable code, never a 500.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps

from embedder.errors import ImageDecodeError

log = logging.getLogger(__name__)
T = TypeVar("T")

# (magic prefix, offset, mime, Pillow format name)
_MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "PNG"),
    (b"GIF87a", 0, "image/gif", "GIF"),
    (b"GIF89a", 0, "image/gif", "GIF"),
    (b"BM", 0, "image/bmp", "BMP"),
    (b"II*\x00", 0, "image/tiff", "TIFF"),
    (b"MM\x00*", 0, "image/tiff", "TIFF"),
)
_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/bmp": "BMP",
                "image/tiff": "TIFF", "image/webp": "WEBP"}  # fmt: skip

AnimatedPolicy = Literal["reject", "first_frame"]


def sniff_mime(data: bytes) -> str | None:
    """Image MIME type from the magic bytes (never from a file name), or None if not an image."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, offset, mime, _ in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return mime
    return None


# What Pillow documents for damaged files; anything else is logged once per type (a codec quirk
# or a bug worth knowing about) but still answered as a damaged file.
_EXPECTED = (OSError, SyntaxError, ValueError, EOFError)
_logged: set[type[BaseException]] = set()


@contextmanager
def decode_guard() -> Iterator[None]:
    """Any exception inside becomes an ImageDecodeError: MemoryError -> image_too_large,
    Pillow's bomb check -> too_many_pixels, everything else -> corrupt_image.

    Only `Exception`s are converted: KeyboardInterrupt and SystemExit pass through.
    """
    try:
        yield
    except ImageDecodeError:
        raise
    except MemoryError as exc:
        raise ImageDecodeError(
            "image_too_large", "The image needs more memory to decode than is allowed."
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", f"The image has too many pixels: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: every failure is the file's
        if not isinstance(exc, _EXPECTED) and type(exc) not in _logged:
            _logged.add(type(exc))
            log.warning(
                "decoding an upload raised %s: %s (answered corrupt_image; logged once per type)",
                type(exc).__name__,
                str(exc)[:200],
            )
        detail = str(exc)[:200] or type(exc).__name__
        raise ImageDecodeError("corrupt_image", f"The image data is damaged: {detail}") from exc


@dataclass(frozen=True)
class DecodedUpload(Generic[T]):
    """A checked upload: its sniffed type, pixel size and what `prepare` made of the image."""

    mime: str
    width: int
    height: int
    prepared: T


def decode_upload(
    data: bytes,
    *,
    max_pixels: int,
    prepare: Callable[[Image.Image], T],
    animated: AnimatedPolicy = "reject",
) -> DecodedUpload[T]:
    """The one entry for untrusted bytes on every ingest path (upload, search, import, ...):
    sniff, decode, check and `prepare` (e.g. an embedder's preprocess) under `decode_guard`,
    so any failure is an ImageDecodeError and nothing has been stored yet."""
    with decode_guard():
        img = _decode(data, max_pixels, animated)
        prepared = prepare(img)
        return DecodedUpload(sniff_mime(data) or "application/octet-stream", *img.size, prepared)


def decode_image(
    data: bytes, *, max_pixels: int, animated: AnimatedPolicy = "reject"
) -> Image.Image:
    """Decode untrusted bytes into a fully loaded, EXIF-upright 8-bit RGB image.

    Raises ImageDecodeError (only) with code empty_file, unsupported_type, corrupt_image,
    too_many_pixels, image_too_large or animated_image. `animated="first_frame"` keeps
    frame 0 instead.
    """
    with decode_guard():
        return _decode(data, max_pixels, animated)


def _decode(data: bytes, max_pixels: int, animated: AnimatedPolicy) -> Image.Image:
    if not data:
        raise ImageDecodeError("empty_file", "The file is empty.")
    mime = sniff_mime(data)
    if mime is None:
        raise ImageDecodeError(
            "unsupported_type", "Not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF)."
        )
    img = _open_header(data, mime, max_pixels)
    if getattr(img, "n_frames", 1) > 1:  # TIFF walks every IFD here: may raise anything
        if animated == "reject":
            raise ImageDecodeError(
                "animated_image", "Animated or multi-frame images are not accepted."
            )
        img.seek(0)
    img.load()
    img = _to_rgb(ImageOps.exif_transpose(img))
    if img.width <= 0 or img.height <= 0 or img.width * img.height > max_pixels:
        raise ImageDecodeError(  # a frame or EXIF rotation that disagrees with the header
            "too_many_pixels" if img.width * img.height > max_pixels else "corrupt_image",
            f"The decoded image is {img.width}x{img.height} pixels.",
        )
    return img


def _open_header(data: bytes, mime: str, max_pixels: int) -> Image.Image:
    """Parse only the header and enforce the pixel limit before any pixel data is decoded."""
    try:  # Pillow's own bomb check is a global backstop; ours below uses the caller's limit
        img = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[mime]])
    except Image.DecompressionBombError:
        raise  # decode_guard: too_many_pixels
    except _EXPECTED as exc:
        raise ImageDecodeError("corrupt_image", f"The image cannot be read: {exc}") from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError("corrupt_image", "The image has no pixels.")
    if width * height > max_pixels:
        raise ImageDecodeError(
            "too_many_pixels",
            f"The image has {width}x{height} pixels; the limit is {max_pixels} pixels.",
        )
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: high bit depths rescaled, alpha composited on black."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        arr8 = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK" and img.info.get("icc_profile"):
        converted = _icc_to_srgb(img)
        if converted is not None:
            return converted
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError("unsupported_type", f"Colour mode {mode} is not supported.") from exc


def _icc_to_srgb(img: Image.Image) -> Image.Image | None:
    """Colour-managed conversion when the file embeds a profile; None when that fails."""
    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
        return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:  # noqa: BLE001 - a broken profile falls back to the plain conversion
        return None


def crop_black_border(
    img: Image.Image, *, threshold: int = 20, min_fraction: float = 0.1
) -> Image.Image:
    """Crop to the endoscope's field of view: rows/columns where enough pixels are not black.

    Works on a small thumbnail so it costs little; returns the image unchanged if the whole
    frame is dark or nothing would be removed.
    """
    thumb = img.copy()
    thumb.thumbnail((128, 128), Image.Resampling.NEAREST)
    arr = np.asarray(thumb.convert("L")) > threshold
    rows = np.flatnonzero(arr.mean(axis=1) > min_fraction)
    cols = np.flatnonzero(arr.mean(axis=0) > min_fraction)
    if rows.size == 0 or cols.size == 0:
        return img
    sx, sy = img.width / thumb.width, img.height / thumb.height
    box = (
        int(cols[0] * sx),
        int(rows[0] * sy),
        min(img.width, int(np.ceil((cols[-1] + 1) * sx))),
        min(img.height, int(np.ceil((rows[-1] + 1) * sy))),
    )
    if box == (0, 0, img.width, img.height) or box[2] - box[0] < 8 or box[3] - box[1] < 8:
        return img
    return img.crop(box)


def image_to_tensor(img: Image.Image, *, size: int, crop_border: bool = False) -> torch.Tensor:
    """RGB image -> float CHW tensor in [0, 1] at size x size (pure; safe from many threads)."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    if crop_border:
        img = crop_black_border(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
