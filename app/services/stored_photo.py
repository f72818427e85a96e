"""What EndoSeek keeps of a received photo: its bytes, after the field-of-view mask.

Every ingest path (REST upload, DICOM, bulk import, search queries) turns what it received
into a `StoredPhoto` here, so that decoding, the pixel limit, the privacy mask and the model's
preprocessing happen once, in one order, for all of them:

1. decode untrusted bytes (`decode_upload`), or take an image another decoder made (DICOM
   frames through pydicom) and check its pixel count;
2. black out everything outside the endoscope's field of view (settings.fov_mask), where
   processors burn in patient names and dates. A photo whose surround is already black is
   kept byte for byte; a masked one is re-encoded (JPEG q95 for JPEG input, else PNG);
3. prepare the masked image for the model, so the vector never sees the burned-in text.

Images made by another decoder have no file of their own and are always stored as PNG.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from PIL import Image as PILImage

from app.services.storage import sha256_hex
from embedder.errors import ImageDecodeError
from embedder.fov import apply_fov_mask
from embedder.preprocess import decode_guard, decode_upload

T = TypeVar("T")

JPEG_QUALITY = 95  # a masked JPEG is re-encoded once; 4:4:4 keeps mucosal detail
PNG_LEVEL = 1  # fast: a 1080p frame in tens of ms; level 6 costs ~5x for ~10 % smaller files


@dataclass(frozen=True)
class StoredPhoto(Generic[T]):
    """The bytes to store (and their hash), the pixel size, and what `prepare` made of it."""

    data: bytes
    mime: str
    sha256: str
    width: int
    height: int
    prepared: T


@dataclass(frozen=True)
class ToEncode(Generic[T]):
    """A photo the mask changed (or pixels from another decoder): its bytes are still to be
    encoded, which the caller may do while the model already runs on `prepared`."""

    image: PILImage.Image
    fmt: str
    prepared: T

    def encode(self) -> StoredPhoto[T]:
        """The stored bytes (ImageDecodeError only, like the rest of this path)."""
        with decode_guard():
            return _encoded(self.image, self.fmt, self.prepared)


def stored_photo(
    data: bytes,
    *,
    max_pixels: int,
    fov_mask: bool,
    prepare: Callable[[PILImage.Image], T],
    image: PILImage.Image | None = None,
) -> StoredPhoto[T]:
    """`data` as received (or `image`, decoded elsewhere from `data`) -> what is stored.

    Raises ImageDecodeError only (the guard of embedder.preprocess)."""
    kept = photo_to_store(
        data, max_pixels=max_pixels, fov_mask=fov_mask, prepare=prepare, image=image
    )
    return kept.encode() if isinstance(kept, ToEncode) else kept


def photo_to_store(
    data: bytes,
    *,
    max_pixels: int,
    fov_mask: bool,
    prepare: Callable[[PILImage.Image], T],
    image: PILImage.Image | None = None,
) -> StoredPhoto[T] | ToEncode[T]:
    """Like `stored_photo`, but a photo that needs encoding comes back as ToEncode."""
    if image is None:
        up = decode_upload(
            data, max_pixels=max_pixels, prepare=lambda img: _finish(img, fov_mask, prepare)
        )
        (masked, changed), prepared = up.prepared
        if not changed:
            return StoredPhoto(data, up.mime, sha256_hex(data), up.width, up.height, prepared)
        return ToEncode(masked, "JPEG" if up.mime == "image/jpeg" else "PNG", prepared)
    with decode_guard():
        if image.width * image.height > max_pixels:
            raise ImageDecodeError(
                "too_many_pixels",
                f"The image has {image.width}x{image.height} pixels; the limit is {max_pixels}.",
            )
        (masked, _), prepared = _finish(image.convert("RGB"), fov_mask, prepare)
        return ToEncode(masked, "PNG", prepared)


def _finish(
    img: PILImage.Image, fov_mask: bool, prepare: Callable[[PILImage.Image], T]
) -> tuple[tuple[PILImage.Image, bool], T]:
    masked, changed = apply_fov_mask(img) if fov_mask else (img, False)
    return (masked, changed), prepare(masked)


def _encoded(img: PILImage.Image, fmt: str, prepared: T) -> StoredPhoto[T]:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
        mime = "image/jpeg"
    else:
        img.save(buf, format="PNG", compress_level=PNG_LEVEL)
        mime = "image/png"
    data = buf.getvalue()
    return StoredPhoto(data, mime, sha256_hex(data), img.width, img.height, prepared)
