"""Content-addressed image files (`ab/cd/<sha256>.<ext>`) and their cached thumbnails.

Files are written to a temporary name in the target directory, fsynced and renamed, so a
reader never sees a partial file; writing the same bytes twice is a no-op.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image as PILImage

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "image/gif": "gif",
}
TMP_PREFIX = ".tmp-"
THUMBS = "thumbs"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def storage_key(sha256: str, mime: str) -> str:
    """Relative path of a file: two levels of fan-out keep directories small."""
    ext = EXTENSIONS.get(mime, "bin")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the directory entry itself); best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary sibling, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class Storage:
    """Image files under `root`; thumbnails under `root/thumbs` (derived, safe to delete)."""

    def __init__(self, root: Path, thumbnail_size: int = 256) -> None:
        self.root = Path(root)
        self.thumbnail_size = thumbnail_size
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """Absolute path of a stored file."""
        return self.root / key

    def put(self, data: bytes, mime: str) -> tuple[str, str, bool]:
        """Store `data`; returns (sha256, key, created) - created is False if it existed."""
        digest = sha256_hex(data)
        key = storage_key(digest, mime)
        target = self.path(key)
        if target.exists() and target.stat().st_size == len(data):
            return digest, key, False
        atomic_write(target, data)
        return digest, key, True

    def read(self, key: str) -> bytes:
        """The stored bytes for `key`."""
        return self.path(key).read_bytes()

    def delete(self, key: str) -> None:
        """Remove a file and its cached thumbnails (missing files are fine)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()
        for thumb in self._thumb_dir(key).glob(f"{Path(key).stem}_*.jpg"):
            with contextlib.suppress(FileNotFoundError):
                thumb.unlink()

    def _thumb_dir(self, key: str) -> Path:
        return self.root / THUMBS / Path(key).parent

    def thumbnail(self, key: str, size: int | None = None) -> Path:
        """Path of a JPEG thumbnail (longest side `size`), made and cached on first use."""
        size = size or self.thumbnail_size
        out = self._thumb_dir(key) / f"{Path(key).stem}_{size}.jpg"
        if out.exists():
            return out
        with PILImage.open(self.path(key)) as img:
            img.seek(0)
            img.draft("RGB", (size, size))
            rgb = img.convert("RGB")
        rgb.thumbnail((size, size))
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=85)
        atomic_write(out, buf.getvalue())
        return out

    def iter_files(self) -> Iterator[tuple[str, Path]]:
        """(sha256, path) of every stored image file (thumbnails excluded)."""
        for path in self.root.glob("??/??/*"):
            if path.is_file() and not path.name.startswith(TMP_PREFIX):
                yield path.stem, path

    def sweep(self, live_sha256: Iterable[str]) -> int:
        """Delete temp files and files no live image refers to (crash leftovers); returns count.

        Run at start, before the service accepts uploads, so no upload is in flight.
        """
        live = set(live_sha256)
        removed = 0
        for path in self.root.glob(f"**/{TMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        for digest, path in self.iter_files():
            if digest not in live:
                self.delete(str(path.relative_to(self.root)))
                removed += 1
        return removed
