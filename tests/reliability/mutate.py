"""Seeded mutation of small valid image files, for the decoder fuzzers (unit and HTTP).

`seed_files()` builds small valid files of every accepted format in memory; `mutate(data, fmt,
rng)` applies one or more mutators: bit flips, byte runs, truncation, duplicated or deleted
spans, and header-field mutation at offsets found by walking each format's structure (PNG IHDR
and chunk lengths, TIFF IFD offsets / entry counts / entries / next-IFD links, GIF logical
screen and frame descriptors, BMP header sizes, JPEG SOF dimensions and segment lengths, WebP
RIFF/chunk sizes and canvas fields). Everything derives from the `random.Random` passed in, so
a case is reproduced from its seed alone.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from PIL import Image


@dataclass(frozen=True)
class Field:
    """A header field: byte offset, width in bytes, byte order (">" or "<"), what it is."""

    offset: int
    size: int
    order: str
    name: str


def _noise(w: int, h: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h))
    img.putdata([(rng.randrange(256), rng.randrange(120), rng.randrange(90)) for _ in range(w * h)])
    return img


def _save(img: Image.Image | list[Image.Image], fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    if isinstance(img, list):
        img[0].save(buf, format=fmt, save_all=True, append_images=img[1:], **kw)
    else:
        img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@cache
def seed_files() -> dict[str, tuple[str, bytes]]:
    """name -> (format, bytes): small valid files (32x32..64x64), single and multi-frame."""
    a, b, c = _noise(48, 40, 1), _noise(32, 32, 2), _noise(64, 48, 3)
    frames = [_noise(40, 32, 10 + i) for i in range(3)]
    rgba = a.convert("RGBA")
    rgba.putalpha(128)
    gray16 = Image.frombytes("I;16", (32, 32), bytes(range(256)) * 8)
    out: dict[str, tuple[str, bytes]] = {
        "jpeg": ("JPEG", _save(a, "JPEG", quality=85)),
        "jpeg_progressive": ("JPEG", _save(c, "JPEG", quality=80, progressive=True)),
        "jpeg_gray": ("JPEG", _save(b.convert("L"), "JPEG")),
        "png_rgb": ("PNG", _save(a, "PNG")),
        "png_rgba": ("PNG", _save(rgba, "PNG")),
        "png_palette": ("PNG", _save(b.convert("P"), "PNG")),
        "png_gray16": ("PNG", _save(gray16, "PNG")),
        "tiff_raw": ("TIFF", _save(a, "TIFF")),
        "tiff_lzw": ("TIFF", _save(c, "TIFF", compression="tiff_lzw")),
        "tiff_multipage": ("TIFF", _save(frames, "TIFF")),
        "tiff_multipage_be": ("TIFF", _tiff_big_endian()),
        "gif": ("GIF", _save(b.convert("P"), "GIF")),
        "gif_animated": ("GIF", _save([f.convert("P") for f in frames], "GIF", duration=40)),
        "webp_lossy": ("WEBP", _save(a, "WEBP", quality=70)),
        "webp_lossless": ("WEBP", _save(rgba, "WEBP", lossless=True)),
        "webp_animated": ("WEBP", _save(frames, "WEBP", duration=40)),
        "bmp_24": ("BMP", _save(a, "BMP")),
        "bmp_8": ("BMP", _save(b.convert("P"), "BMP")),
    }
    return out


def _tiff_big_endian() -> bytes:
    """A big-endian ("MM") multi-page TIFF: Pillow writes that byte order for 16-bit frames."""
    frames = [
        Image.frombytes("I;16B", (32, 32), bytes((i * 37 + j) % 256 for j in range(2048)))
        for i in range(3)
    ]
    return _save(frames, "TIFF")


# ---- header fields per format ----


def _png_fields(d: bytes, out: list[Field]) -> None:
    out += [
        Field(16, 4, ">", "IHDR.width"),
        Field(20, 4, ">", "IHDR.height"),
        Field(24, 1, ">", "IHDR.bit_depth"),
        Field(25, 1, ">", "IHDR.color_type"),
        Field(28, 1, ">", "IHDR.interlace"),
    ]
    pos = 8
    while pos + 8 <= len(d):
        (length,) = struct.unpack(">I", d[pos : pos + 4])
        tag = d[pos + 4 : pos + 8].decode("latin-1")
        out.append(Field(pos, 4, ">", f"{tag}.length"))
        if tag == "acTL":
            out.append(Field(pos + 8, 4, ">", "acTL.num_frames"))
        pos += 12 + length


def _tiff_fields(d: bytes, out: list[Field]) -> None:
    o = "<" if d[:2] == b"II" else ">"
    out.append(Field(4, 4, o, "first_ifd_offset"))
    (ifd,) = struct.unpack(o + "I", d[4:8])
    seen: set[int] = set()
    while 8 <= ifd < len(d) - 2 and ifd not in seen:
        seen.add(ifd)
        (count,) = struct.unpack(o + "H", d[ifd : ifd + 2])
        out.append(Field(ifd, 2, o, "ifd.entry_count"))
        for i in range(count):
            e = ifd + 2 + 12 * i
            if e + 12 > len(d):
                break
            (tag,) = struct.unpack(o + "H", d[e : e + 2])
            out += [
                Field(e, 2, o, f"tag{tag}.id"),
                Field(e + 2, 2, o, f"tag{tag}.type"),
                Field(e + 4, 4, o, f"tag{tag}.count"),
                Field(e + 8, 4, o, f"tag{tag}.value"),
            ]
            if tag in (256, 257, 273, 278, 279):  # width, length, strip offsets/rows/bytes
                out += [Field(e + 8, 4, o, f"tag{tag}.value")] * 3  # weighted: chosen more often
        nxt = ifd + 2 + 12 * count
        if nxt + 4 > len(d):
            break
        out.append(Field(nxt, 4, o, "next_ifd_offset"))
        (ifd,) = struct.unpack(o + "I", d[nxt : nxt + 4])


def _gif_fields(d: bytes, out: list[Field]) -> None:
    out += [
        Field(6, 2, "<", "screen.width"),
        Field(8, 2, "<", "screen.height"),
        Field(10, 1, "<", "screen.packed"),
    ]
    pos = 13 + (3 << ((d[10] & 7) + 1) if d[10] & 0x80 else 0)
    while pos < len(d):
        kind = d[pos]
        if kind == 0x21:  # extension: label, then sub-blocks
            if d[pos + 1 : pos + 2] == b"\xf9":
                out.append(Field(pos + 4, 2, "<", "gce.delay"))
            pos = _skip_blocks(d, pos + 2)
        elif kind == 0x2C:  # image descriptor
            out += [
                Field(pos + 1, 2, "<", "frame.left"),
                Field(pos + 3, 2, "<", "frame.top"),
                Field(pos + 5, 2, "<", "frame.width"),
                Field(pos + 7, 2, "<", "frame.height"),
                Field(pos + 9, 1, "<", "frame.packed"),
                Field(pos + 10, 1, "<", "lzw.min"),
            ]
            packed = d[pos + 9] if pos + 9 < len(d) else 0
            pos += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
            out.append(Field(pos, 1, "<", "lzw.min_code_size"))
            pos = _skip_blocks(d, pos + 1)
        else:
            break


def _skip_blocks(d: bytes, pos: int) -> int:
    while pos < len(d) and d[pos]:
        pos += 1 + d[pos]
    return pos + 1


def _bmp_fields(d: bytes, out: list[Field]) -> None:
    names = (
        (2, 4, "file_size"),
        (10, 4, "pixel_offset"),
        (14, 4, "dib_size"),
        (18, 4, "width"),
        (22, 4, "height"),
        (26, 2, "planes"),
        (28, 2, "bpp"),
        (30, 4, "compression"),
        (34, 4, "image_size"),
        (46, 4, "colors_used"),
    )
    out += [Field(off, size, "<", name) for off, size, name in names]


def _jpeg_fields(d: bytes, out: list[Field]) -> None:
    pos = 2
    while pos + 4 <= len(d) and d[pos] == 0xFF:
        marker = d[pos + 1]
        (length,) = struct.unpack(">H", d[pos + 2 : pos + 4])
        out.append(Field(pos + 2, 2, ">", f"FF{marker:02X}.length"))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            out += [
                Field(pos + 4, 1, ">", "SOF.precision"),
                Field(pos + 5, 2, ">", "SOF.height"),
                Field(pos + 7, 2, ">", "SOF.width"),
                Field(pos + 9, 1, ">", "SOF.components"),
            ]
            out += [Field(pos + 5, 2, ">", "SOF.height"), Field(pos + 7, 2, ">", "SOF.width")]
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            out.append(Field(pos + 4, 1, ">", "SOS.components"))
            break
        pos += 2 + length


def _webp_fields(d: bytes, out: list[Field]) -> None:
    out.append(Field(4, 4, "<", "RIFF.size"))
    pos = 12
    while pos + 8 <= len(d):
        tag = d[pos : pos + 4].decode("latin-1")
        (size,) = struct.unpack("<I", d[pos + 4 : pos + 8])
        out.append(Field(pos + 4, 4, "<", f"{tag}.size"))
        body = pos + 8
        if tag == "VP8X":
            out += [
                Field(body, 1, "<", "VP8X.flags"),
                Field(body + 4, 3, "<", "VP8X.canvas_w"),
                Field(body + 7, 3, "<", "VP8X.canvas_h"),
            ]
        elif tag == "VP8 ":
            out += [Field(body + 6, 2, "<", "VP8.width"), Field(body + 8, 2, "<", "VP8.height")]
        elif tag == "VP8L":
            out.append(Field(body + 1, 4, "<", "VP8L.packed_size"))
        elif tag == "ANMF":
            out += [
                Field(body, 3, "<", "ANMF.x"),
                Field(body + 3, 3, "<", "ANMF.y"),
                Field(body + 6, 3, "<", "ANMF.w"),
                Field(body + 9, 3, "<", "ANMF.h"),
            ]
            pos = body + 16  # frame data holds nested chunks
            continue
        elif tag == "ANIM":
            out.append(Field(body + 4, 2, "<", "ANIM.loops"))
        pos = body + size + (size & 1)


FIELDS: dict[str, Callable[[bytes, list[Field]], None]] = {
    "PNG": _png_fields,
    "TIFF": _tiff_fields,
    "GIF": _gif_fields,
    "BMP": _bmp_fields,
    "JPEG": _jpeg_fields,
    "WEBP": _webp_fields,
}


def header_fields(data: bytes, fmt: str) -> list[Field]:
    """The fields found before the structure stops making sense (data may be mutated already)."""
    out: list[Field] = []
    try:
        FIELDS[fmt](data, out)
    except (struct.error, IndexError, UnicodeDecodeError):
        pass
    return out


# ---- mutators ----


def _interesting(rng: random.Random, old: int, size: int) -> int:
    top = (1 << (8 * size)) - 1
    choices = [
        0,
        1,
        2,
        0x7F,
        0x80,
        0xFF,
        0x100,
        0x7FFF,
        0x8000,
        0xFFFF,
        0x10000,
        0x7FFFFFFF,
        0x80000000,
        top,
        top - 1,
        old + 1,
        old - 1,
        old * 2,
        old // 2,
        old * 1000,
        old + 8,
        old + 12,
        rng.randrange(top + 1),
    ]
    return rng.choice(choices) & top


def mutate_field(data: bytearray, fmt: str, rng: random.Random) -> str:
    """Set one header field to an edge value; PNG chunks get a fixed CRC half the time."""
    fields = [f for f in header_fields(bytes(data), fmt) if f.offset + f.size <= len(data)]
    if not fields:
        return bit_flip(data, rng)
    f = rng.choice(fields)
    raw = bytes(data[f.offset : f.offset + f.size])
    old = int.from_bytes(raw, "big" if f.order == ">" else "little")
    new = _interesting(rng, old, f.size)
    data[f.offset : f.offset + f.size] = new.to_bytes(f.size, "big" if f.order == ">" else "little")
    if fmt == "PNG" and f.name.startswith("IHDR.") and rng.random() < 0.5:
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return f"field {f.name}@{f.offset}: {old} -> {new}"


def bit_flip(data: bytearray, rng: random.Random) -> str:
    n = rng.choice((1, 1, 2, 4, 8))
    where = [rng.randrange(len(data)) for _ in range(n)]
    for i in where:
        data[i] ^= 1 << rng.randrange(8)
    return f"bit flips at {sorted(where)}"


def byte_run(data: bytearray, rng: random.Random) -> str:
    start = rng.randrange(len(data))
    n = min(rng.randint(1, 32), len(data) - start)
    fill = rng.choice((b"\x00", b"\xff", None))
    data[start : start + n] = fill * n if fill else bytes(rng.randrange(256) for _ in range(n))
    return f"byte run {start}+{n} {fill!r}"


def truncate(data: bytearray, rng: random.Random) -> str:
    keep = rng.choice(
        (rng.randrange(1, len(data)), len(data) - rng.randint(1, 16), rng.randint(8, 64))
    )
    keep = max(1, min(keep, len(data) - 1))
    del data[keep:]
    return f"truncate to {keep}"


def splice(data: bytearray, rng: random.Random) -> str:
    """Duplicate or delete a span (shifts every later offset)."""
    start = rng.randrange(len(data))
    n = min(rng.randint(1, 64), len(data) - start)
    if rng.random() < 0.5:
        data[start:start] = data[start : start + n]
        return f"duplicate {start}+{n}"
    del data[start : start + n]
    return f"delete {start}+{n}"


MUTATORS: tuple[Callable[[bytearray, random.Random], str], ...] = (
    bit_flip,
    byte_run,
    truncate,
    splice,
)


def mutate(data: bytes, fmt: str, rng: random.Random) -> tuple[bytes, str]:
    """One to three mutations; header fields are chosen about half the time."""
    out, steps = bytearray(data), []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if len(out) < 2:
            break
        if rng.random() < 0.5:
            steps.append(mutate_field(out, fmt, rng))
        else:
            steps.append(rng.choice(MUTATORS)(out, rng))
    return bytes(out), "; ".join(steps)


def case(seed: int) -> tuple[str, bytes, str]:
    """Case `seed`: (seed file name, mutated bytes, what was done) — reproducible alone."""
    rng = random.Random(seed)
    files = seed_files()
    name = rng.choice(sorted(files))
    fmt, data = files[name]
    mutated, how = mutate(data, fmt, rng)
    return name, mutated, how
