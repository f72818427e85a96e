"""The marker walk of a JPEG / JPEG-LS stream's header, shared by the header check (the frame's
own size, header.py) and the pass-through test (colour hints, frames.py)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

SOS = 0xDA  # start of scan: the header ends here
JPEG_LS_SOF = 0xF7  # SOF55


def is_frame_header(marker: int) -> bool:
    """SOF0-SOF15 (DHT, JPG and DAC share that range but are not frame headers)."""
    return 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)


def marker_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, position, declared length) of each segment after SOI, up to and including the
    first start of scan. Stops at a byte that is not a marker; fill bytes are skipped. The
    lengths are not checked here: each caller decides what a short segment means."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        yield marker, pos, length
        if marker == SOS:
            return
        pos += 2 + length
