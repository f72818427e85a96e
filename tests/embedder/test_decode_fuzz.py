"""Seeded mutation fuzzing of the one guarded decode path (`decode_upload`).

Thousands of mutated JPEG / PNG / TIFF (single and multi-page) / GIF (still and animated) /
WebP (lossy, lossless, animated) / BMP files: each either becomes a valid RGB image within the
pixel limit (then a model input tensor) or raises ImageDecodeError with a stable code; never
another exception. Case `n` is reproduced with `tests.reliability.mutate.case(n)`.
ENDOSEEK_DECODE_FUZZ_CASES changes the number of cases (default 5000, about 10 s on one core).
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter

import pytest
import torch
from PIL import Image

from embedder.errors import DECODE_CODES, ImageDecodeError
from embedder.preprocess import decode_image, decode_upload, image_to_tensor
from tests.reliability import hostile, mutate
from tests.timing import scaled

CASES = int(os.environ.get("ENDOSEEK_DECODE_FUZZ_CASES", "5000"))
FIRST_SEED = 1_000_000  # the HTTP fuzzer uses seeds from 2_000_000: different files
MAX_PIXELS = 1 << 20  # small, so mutated dimensions cannot make one case slow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF" etc.


def _prepare(img: Image.Image) -> torch.Tensor:
    """What the services do with a decoded image, plus the invariants checked on the way."""
    assert img.mode == "RGB", img.mode
    assert 0 < img.width * img.height <= MAX_PIXELS, img.size
    return image_to_tensor(img, size=32, crop_border=True)


def test_seed_files_are_valid() -> None:
    """Every seed decodes unmutated; multi-frame ones are rejected unless frame 0 is asked for."""
    multi = {"tiff_multipage", "tiff_multipage_be", "gif_animated", "webp_animated"}
    for name, (fmt, data) in mutate.seed_files().items():
        img = decode_image(data, max_pixels=MAX_PIXELS, animated="first_frame")
        assert img.mode == "RGB" and 32 <= img.width <= 64 and 32 <= img.height <= 64, name
        assert Image.open(io.BytesIO(data)).format == fmt, name
        if name in multi:
            with pytest.raises(ImageDecodeError) as err:
                decode_image(data, max_pixels=MAX_PIXELS)
            assert err.value.code == "animated_image", name


def test_header_fields_are_found() -> None:
    """The field mutator reaches the fields it is meant to (else it only flips random bytes)."""
    want = {
        "png_rgb": {"IHDR.width", "IHDR.height", "IDAT.length"},
        "png_palette": {"PLTE.length"},
        "tiff_multipage": {"first_ifd_offset", "ifd.entry_count", "next_ifd_offset",
                           "tag256.value", "tag273.value", "tag279.value"},
        "tiff_multipage_be": {"first_ifd_offset", "next_ifd_offset", "tag257.value"},
        "gif_animated": {"screen.width", "frame.width", "frame.height", "lzw.min_code_size"},
        "bmp_24": {"dib_size", "pixel_offset", "width", "height", "bpp"},
        "jpeg": {"SOF.width", "SOF.height", "FFC4.length", "FFDB.length"},
        "jpeg_progressive": {"SOF.width", "FFDA.length"},
        "webp_lossy": {"RIFF.size", "VP8 .size", "VP8.width"},
        "webp_lossless": {"VP8L.size", "VP8L.packed_size"},
        "webp_animated": {"VP8X.canvas_w", "ANIM.size", "ANMF.w", "ANMF.h"},
    }  # fmt: skip
    files = mutate.seed_files()
    for name, names in want.items():
        fmt, data = files[name]
        found = mutate.header_fields(data, fmt)
        assert names <= {f.name for f in found}, (name, names - {f.name for f in found})
    tiff = mutate.header_fields(*reversed(files["tiff_multipage"]))
    assert sum(f.name == "ifd.entry_count" for f in tiff) == 3  # one IFD per page
    gif = mutate.header_fields(*reversed(files["gif_animated"]))
    assert sum(f.name == "frame.width" for f in gif) == 3  # one descriptor per frame


def test_mutated_files_decode_or_fail_cleanly() -> None:
    outcomes: Counter[str] = Counter()
    per_seed_file: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    escaped, slowest = [], (0.0, -1)
    for n in range(FIRST_SEED, FIRST_SEED + CASES):
        name, data, how = mutate.case(n)
        per_seed_file[name] += 1
        animated = "first_frame" if n % 2 else "reject"  # both policies: frame 0 gets decoded
        started = time.perf_counter()
        try:
            up = decode_upload(data, max_pixels=MAX_PIXELS, prepare=_prepare, animated=animated)
        except ImageDecodeError as exc:
            assert exc.code in DECODE_CODES, (n, name, how, exc.code)
            assert exc.message and len(exc.message) < 400, (n, exc.message)
            outcomes[exc.code] += 1
            if exc.__cause__ is not None:
                causes[type(exc.__cause__).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - collected: the assertion lists them all
            escaped.append(f"case {n} ({name}: {how}): {type(exc).__name__}: {exc}"[:300])
        else:
            outcomes["decoded"] += 1
            assert up.prepared.shape == (3, 32, 32), (n, name, how)
            assert 0 < up.width * up.height <= MAX_PIXELS, (n, name, how)
            assert up.mime.startswith("image/"), (n, name, how)
        slowest = max(slowest, (time.perf_counter() - started, n))
    print(f"{CASES} cases from seed {FIRST_SEED}: {dict(outcomes)}; causes {dict(causes)}; "
          f"slowest case {slowest[1]}: {slowest[0] * 1000:.0f} ms")  # fmt: skip
    assert not escaped, f"{len(escaped)} exceptions escaped the guard:\n" + "\n".join(escaped[:20])
    assert slowest[0] < scaled(2.0), f"case {slowest[1]} took {slowest[0]:.1f} s"
    # the mix proves the mutations bite without destroying everything
    assert outcomes["decoded"] > CASES // 10 and outcomes["corrupt_image"] > CASES // 10, outcomes
    assert set(per_seed_file) == set(mutate.seed_files()), per_seed_file


def test_tiff_unreadable_frame_count_is_corrupt_image() -> None:
    """Regression: Pillow raises TypeError from `n_frames` on this TIFF (it escaped as a 500)."""
    data = hostile.tiff_unreadable_frame_count()
    try:  # Pillow's own failure on this file (a later Pillow may read it: then only our contract)
        _ = Image.open(io.BytesIO(data)).n_frames
        pillow_error: type[BaseException] | None = None
    except Exception as exc:  # noqa: BLE001 - whatever it raises is what the guard must catch
        pillow_error = type(exc)
    for animated in ("reject", "first_frame"):
        with pytest.raises(ImageDecodeError) as err:
            decode_upload(data, max_pixels=MAX_PIXELS, prepare=_prepare, animated=animated)
        assert err.value.code == "corrupt_image"
        if pillow_error is not None:
            assert isinstance(err.value.__cause__, pillow_error)
    with pytest.raises(ImageDecodeError):
        decode_image(data, max_pixels=MAX_PIXELS)


def test_guard_maps_memory_bombs_and_preprocessing_failures() -> None:
    good = mutate.seed_files()["png_rgb"][1]

    def oom(img: Image.Image) -> None:
        raise MemoryError

    def broken(img: Image.Image) -> None:
        raise RuntimeError("shape mismatch in preprocessing")

    with pytest.raises(ImageDecodeError) as err:
        decode_upload(good, max_pixels=MAX_PIXELS, prepare=oom)
    assert err.value.code == "image_too_large"
    with pytest.raises(ImageDecodeError) as err:
        decode_upload(good, max_pixels=MAX_PIXELS, prepare=broken)
    assert err.value.code == "corrupt_image" and "preprocessing" in err.value.message
    # Pillow's own bomb check (400 Mpx > 2 x MAX_IMAGE_PIXELS) fires even under a lax limit
    bomb = hostile.png_header_only(20_000, 20_000)
    with pytest.raises(ImageDecodeError) as err:
        decode_image(bomb, max_pixels=10**12)
    assert err.value.code == "too_many_pixels"
    assert isinstance(err.value.__cause__, Image.DecompressionBombError)

    def interrupted(img: Image.Image) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # only Exceptions are converted
        decode_upload(good, max_pixels=MAX_PIXELS, prepare=interrupted)
