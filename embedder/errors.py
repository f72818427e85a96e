"""Errors the embedder raises, with stable codes so callers can map them to API responses."""

from __future__ import annotations

# Every code an ImageDecodeError carries (the API answers 415 for unsupported_type, 413 for
# image_too_large, 422 for the rest).
DECODE_CODES = (
    "empty_file",
    "unsupported_type",
    "corrupt_image",
    "too_many_pixels",
    "image_too_large",
    "animated_image",
)


class ImageDecodeError(ValueError):
    """An upload that cannot become an RGB image; `code` is stable and `message` client-safe."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class WeightLoadError(RuntimeError):
    """A checkpoint that does not fit the model exactly; lists every offending key."""

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[str] | None = None,
    ) -> None:
        self.missing = sorted(missing or [])
        self.unexpected = sorted(unexpected or [])
        self.mismatched = sorted(mismatched or [])
        parts = [message]
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.mismatched:
            parts.append(f"shape mismatches ({len(self.mismatched)}): {', '.join(self.mismatched)}")
        super().__init__("\n".join(parts))
