"""Field-of-view mask: burned-in text in the surround goes, the picture inside stays exactly.

Generated endoscopy-like photos (a textured disc or octagon on black, a near-black lumen in
the centre, a dim lumen at the edge) carry white text drawn into their corners; the mask must
black out the text, keep every pixel of the FOV, and leave clean and full-frame photos alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from embedder.fov import THRESHOLD, apply_fov_mask, field_of_view, fov_mask

HYPERKVASIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "hyperkvasir"
TEXT = ("DOE^JANE", "14.02.1961", "PID 7731")


def jpeg(img: Image.Image, quality: int = 90) -> Image.Image:
    """Through JPEG and back, as stored photos are: ringing and noise in the surround."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def endoscopy_photo(
    size: tuple[int, int] = (640, 512), shape: str = "disc", seed: int = 0
) -> tuple[Image.Image, np.ndarray]:
    """(photo, its geometric FOV): textured tissue, a near-black lumen in the middle (a hole
    in the bright region) and a dim one at the FOV edge (a dent), black outside."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, radius = w * 0.55, h / 2, min(w, h) * 0.47
    if shape == "disc":
        fov = np.hypot(xx - cx, yy - cy) <= radius
    else:  # octagon: the disc's bounding square with its corners cut
        d = np.maximum(np.abs(xx - cx), np.abs(yy - cy))
        fov = (d <= radius) & (np.abs(xx - cx) + np.abs(yy - cy) <= radius * 1.35)
    tissue = np.stack([np.full((h, w), 170.0), np.full((h, w), 80.0), np.full((h, w), 60.0)], -1)
    tissue += 35 * np.sin(xx / (9 + seed % 4))[..., None] + rng.normal(0, 12, (h, w, 3))
    # near-black lumen in the middle: darker than any threshold, inside the FOV all the same
    lumen = np.hypot(xx - cx - radius * 0.1, yy - cy) < radius * 0.3
    tissue[lumen] = rng.uniform(0, 8, (int(lumen.sum()), 3))
    # dim lumen reaching the FOV's right edge (dark tissue, as in real photos)
    edge = np.hypot(xx - cx - radius * 0.8, yy - cy + radius * 0.2) < radius * 0.3
    tissue[edge] = rng.uniform(14, 40, (int(edge.sum()), 3))
    img = np.where(fov[..., None], np.clip(tissue, 0, 255), 0).astype(np.uint8)
    return Image.fromarray(img, "RGB"), fov


def burn_text(img: Image.Image, corners: str = "tl") -> tuple[Image.Image, list[tuple[int, ...]]]:
    """White patient text in the given corners (t/b + l/r), as processors burn it in;
    returns the photo and the text boxes."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(10, img.height // 40))
    boxes = []
    for corner in corners.split(","):
        x = 4 if corner[1] == "l" else img.width - img.width // 7
        y = 4 if corner[0] == "t" else img.height - img.height // 9
        for i, line in enumerate(TEXT):
            at = (x, y + i * int(font.size * 1.2))
            draw.text(at, line, fill=(255, 255, 255), font=font)
            boxes.append(draw.textbbox(at, line, font=font))
    return out, boxes


def region(img: Image.Image, box: tuple[int, ...], pad: int = 3) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.asarray(img)[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]


@pytest.mark.parametrize("shape", ["disc", "octagon"])
@pytest.mark.parametrize("size", [(320, 256), (640, 512), (1920, 1080)])
def test_burned_in_text_is_blacked_out_and_the_fov_kept(shape: str, size: tuple[int, int]) -> None:
    clean, fov = endoscopy_photo(size, shape)
    photo, boxes = burn_text(clean, "tl,bl")
    photo = jpeg(photo)
    assert max(region(photo, b).max() for b in boxes) > 200  # the text is there to begin with
    masked, changed = apply_fov_mask(photo)
    assert changed
    assert masked.mode == "RGB" and masked.size == photo.size
    for box in boxes:
        assert region(masked, box).max() <= 0, box
    # every pixel of the FOV, the dark lumen in the centre and at the edge included, unchanged
    assert np.array_equal(np.asarray(masked)[fov], np.asarray(photo)[fov])
    # masking again changes nothing: the stored photo is a fixed point
    again, changed_again = apply_fov_mask(masked)
    assert not changed_again and again is masked


@pytest.mark.parametrize("shape", ["disc", "octagon"])
def test_clean_photo_is_left_as_it_is(shape: str) -> None:
    photo = jpeg(endoscopy_photo((640, 512), shape, seed=3)[0], quality=75)
    masked, changed = apply_fov_mask(photo)
    assert not changed
    assert masked is photo  # the caller keeps the original bytes
    result = fov_mask(photo)
    assert result is not None and not result.changed
    assert 0.5 < result.mask.mean() < 0.95  # it did find a surround


def test_mask_covers_the_geometric_fov() -> None:
    photo, fov = endoscopy_photo((800, 600), "octagon", seed=5)
    mask = field_of_view(jpeg(photo))
    assert mask is not None and mask.shape == fov.shape and mask.dtype == bool
    assert mask[fov].all()
    # and no more than a band around it: a partly lit reduced block (4 px here) and the
    # widening (a block and 3 px), with 2 px for the pixel grid
    assert ndimage.distance_transform_edt(~fov)[mask].max() <= 4 + 4 + 3 + 2


def test_overlay_box_overlapping_the_edge_does_not_shelter_text() -> None:
    """The HyperKvasir layout: a position-indicator box overlapping the FOV's lower-left edge
    stretches the FOV's hull over the surround above it, where the processor writes text."""
    clean, fov = endoscopy_photo((640, 512), "octagon", seed=1)
    photo = clean.copy()
    draw = ImageDraw.Draw(photo)
    draw.rectangle((0, 330, 150, 511), fill=(20, 170, 140))
    font = ImageFont.load_default(size=12)
    texts = [(6, 120, "ID: 7731"), (6, 150, "Name: DOE"), (6, 290, "14.02.61")]
    boxes = []
    for x, y, line in texts:
        draw.text((x, y), line, fill=(230, 230, 255), font=font)
        boxes.append(draw.textbbox((x, y), line, font=font))
    photo = jpeg(photo)
    assert all(not fov[b[1] : b[3], b[0] : b[2]].any() for b in boxes)  # all in the surround
    masked, changed = apply_fov_mask(photo)
    assert changed
    for box in boxes:  # inside the hull only the text's blocks go: faint JPEG ringing may stay
        assert region(masked, box).max() <= THRESHOLD, box
    assert np.array_equal(np.asarray(masked)[fov], np.asarray(photo)[fov])


def test_full_frame_photo_is_left_alone() -> None:
    rng = np.random.default_rng(2)
    h, w = 480, 640
    xx = np.arange(w)[None, :, None]
    img = np.clip(120 + 40 * np.sin(xx / 11.0) + rng.normal(0, 15, (h, w, 3)), 0, 255)
    img[200:300, 560:] = rng.uniform(0, 6, (100, 80, 3))  # a black lumen at the frame's edge
    photo = jpeg(Image.fromarray(img.astype(np.uint8), "RGB"))
    assert field_of_view(photo) is None
    assert fov_mask(photo) is None
    masked, changed = apply_fov_mask(photo)
    assert not changed and masked is photo


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("RGB", (1, 1)),
        lambda: Image.new("RGB", (1, 1), "white"),
        lambda: Image.new("RGB", (15, 15), "white"),
        lambda: Image.new("RGB", (16, 16)),
        lambda: Image.new("RGB", (3, 900), "white"),
        lambda: Image.new("RGB", (900, 3)),
        lambda: Image.new("RGB", (500, 400)),
        lambda: Image.new("RGB", (500, 400), "white"),
        lambda: Image.new("RGB", (500, 400), (30, 30, 30)),
        lambda: Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)),
        lambda: Image.new("L", (200, 100), 200),
        lambda: Image.new("RGBA", (200, 100), (255, 0, 0, 0)),
        lambda: Image.new("P", (200, 100)),
        lambda: Image.new("1", (64, 64), 1),
    ],
    ids=["1x1-black", "1x1-white", "15-white", "16-black", "3x900", "900x3", "black", "white",
         "grey", "noise", "L", "RGBA", "P", "1bit"],
)  # fmt: skip
def test_degenerate_images_never_raise(make) -> None:
    img = make()
    masked, changed = apply_fov_mask(img)
    assert masked.mode == "RGB" and masked.size == img.size
    mask = field_of_view(img)
    assert mask is None or mask.shape == (img.height, img.width)
    if not changed:
        assert np.array_equal(np.asarray(masked), np.asarray(img.convert("RGB")))


def test_single_dot_or_thin_line_never_raises() -> None:
    img = Image.new("RGB", (300, 200))
    img.putpixel((150, 100), (255, 255, 255))
    assert apply_fov_mask(img)[1] is False  # no FOV to speak of: left alone
    ImageDraw.Draw(img).line((0, 50, 299, 50), fill="white")
    apply_fov_mask(img)


def _hyperkvasir() -> list[Path]:
    return sorted(p for p in HYPERKVASIR.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})


@pytest.mark.skipif(not _hyperkvasir(), reason="no HyperKvasir photos in ../shared/data")
@pytest.mark.parametrize("path", _hyperkvasir(), ids=lambda p: p.stem[:8])
def test_real_photos_keep_their_fov(path: Path) -> None:
    """Real photos: octagons and a cut disc, text and a green position-indicator box at the
    left. Tissue (lit, red over green) is the FOV's independent reference."""
    photo = Image.open(path).convert("RGB")
    arr = np.asarray(photo).astype(np.int16)
    tissue = (arr.max(axis=2) > 40) & (arr[..., 0] > arr[..., 1] + 15)
    mask = field_of_view(photo)
    assert mask is not None
    assert mask[tissue].mean() >= 0.99
    assert 0.7 < mask.mean() < 0.99
    masked, changed = apply_fov_mask(photo)
    out = np.asarray(masked)
    assert np.array_equal(out[mask], np.asarray(photo)[mask])
    assert out[~mask].max(initial=0) <= (0 if changed else THRESHOLD)
