"""Builders of hostile inputs: crafted image files and raw multipart bodies."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.app.conftest import jpeg_bytes


def png(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but carries almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


BASE = Image.new("RGB", (64, 48), (150, 70, 60))
GOOD = jpeg_bytes(BASE)


def progressive_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(
        buf, format="JPEG", progressive=True, quality=85
    )
    return buf.getvalue()


def arithmetic_marker_jpeg() -> bytes:
    """A baseline JPEG whose SOF0 marker is rewritten to SOF9 (arithmetic coding)."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (32, 32), (10, 120, 200))))
    i = data.index(b"\xff\xc0")
    data[i + 1] = 0xC9
    return bytes(data)


def huge_exif_jpeg() -> bytes:
    """A JPEG with many maximal APP1/EXIF segments (about 4 MB of metadata) and an invalid
    orientation value."""
    exif = Image.Exif()
    exif[0x0112] = 9  # orientation outside 1..8
    exif[0x010E] = "A" * 60_000  # ImageDescription
    buf = io.BytesIO()
    BASE.save(buf, format="JPEG", exif=exif.tobytes())
    data = buf.getvalue()
    seg = b"\xff\xe1" + struct.pack(">H", 65535) + b"Exif\x00\x00" + b"\x00" * (65533 - 6)
    return data[:2] + seg * 64 + data[2:]


def bogus_exif_jpeg() -> bytes:
    """A JPEG whose EXIF block is garbage after the header (broken IFD offsets)."""
    payload = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xf0" + b"\xff" * 200
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return GOOD[:2] + seg + GOOD[2:]


def polyglot_jpeg_zip() -> bytes:
    """A valid JPEG with a ZIP archive appended (a classic polyglot): decodes as a photo."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.sh", "#!/bin/sh\necho owned\n")
    return GOOD + buf.getvalue()


def polyglot_jpeg_html() -> bytes:
    """JPEG magic bytes followed by an HTML/JS document."""
    return b"\xff\xd8\xff\xe0" + b"<html><script>alert(document.cookie)</script></html>" * 20


def polyglot_gif_js() -> bytes:
    """A GIF header that is also a JavaScript statement (GIFAR-style)."""
    return b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;*/=alert(1);//" + b"\x00" * 30


def polyglot_png_pdf() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"


def svg_script() -> bytes:
    return b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'


def gzip_bomb() -> bytes:
    import gzip

    return gzip.compress(b"\x00" * 5_000_000)


def tiff_lying_header() -> bytes:
    """A little-endian TIFF header whose first IFD points far outside the file."""
    return b"II*\x00" + struct.pack("<I", 0x7FFFFFF0) + b"\x00" * 64


def tiff_unreadable_frame_count() -> bytes:
    """A 3-page TIFF whose second IFD lost its ImageWidth tag: frame 0 opens fine, but counting
    the frames (`n_frames`) makes Pillow raise TypeError("Missing dimensions"), which once
    escaped the decoder as a 500."""
    frames = [Image.new("RGB", (40, 32), (40 * i, 90, 120)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    data = bytearray(buf.getvalue())
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    (ifd,) = struct.unpack("<I", data[ifd + 2 + 12 * count : ifd + 6 + 12 * count])  # 2nd IFD
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for e in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack("<H", data[e : e + 2])[0] == 256:  # ImageWidth -> a private tag
            data[e : e + 2] = struct.pack("<H", 0x7FFF)
            return bytes(data)
    raise AssertionError("no ImageWidth tag in the second IFD")


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    """A raw multipart body: (field name, file name or None, content) per part."""
    out = io.BytesIO()
    for name, filename, content in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out.write(f"Content-Disposition: {disp}\r\n".encode())
        if filename is not None:
            out.write(b"Content-Type: image/jpeg\r\n")
        out.write(b"\r\n" + content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def deep_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int = 50_000) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth
