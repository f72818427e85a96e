"""New JPEGs from the real HyperKvasir photos, as many as a benchmark asks for.

Each copy has one changed pixel, so every upload has a new sha256 (no duplicate shortcut).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "hyperkvasir"


class Photos:
    """Distinct JPEGs of the real photos, scaled to `size` (default: as they are).

    Copy i changes the pixel (i % span, i // span % span): `span` must fit inside every photo.
    """

    def __init__(
        self, size: tuple[int, int] | None = None, quality: int = 92, span: int = 97
    ) -> None:
        paths = sorted(PHOTOS.rglob("*.jpg"))
        if not paths:
            raise SystemExit(f"no photos under {PHOTOS}")
        base = [Image.open(p).convert("RGB") for p in paths]
        self.base = [img.resize(size) for img in base] if size else base
        self.quality, self.span = quality, span
        self.next = 0

    def take(self, n: int) -> list[bytes]:
        out = []
        for _ in range(n):
            i, self.next = self.next, self.next + 1
            img = self.base[i % len(self.base)].copy()
            img.putpixel(
                (i % self.span, (i // self.span) % self.span), (i % 256, (i // 256) % 256, 7)
            )
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=self.quality)
            out.append(buf.getvalue())
        return out
