"""Field-of-view mask: black out everything outside the endoscope's round/octagonal image.

Video processors burn patient text (name, birth date, ...) into the black surround of the field
of view (FOV). Every stored photo and thumbnail is masked so that the surround is black.

Method, and why:
1. Box-reduce to at most 256 px a side (block means: a text stroke still lifts its block) and
   take the brightest channel (red tissue has a low luminance; the maximum keeps it). The
   whole mask costs ~6 ms at 1080p, ~10 ms when it has to black something out.
2. Blocks above DIM (12) are picture: the surround is a few levels of JPEG noise, while dim
   tissue at the FOV edge or in a lumen stays above it. An opening with a radius-2 disc breaks
   thin bridges (text or JPEG ringing touching the FOV edge); the largest 4-connected
   component is the FOV. Text, logos and overlay boxes in the surround are separate components.
3. The mask is the convex hull of that component (block corners), not "bright pixels": a dark
   lumen in the centre is a hole and one at the edge a dent, and the hull covers both (it
   subsumes hole filling). FOVs are convex (disc, octagon, disc cut by the frame), so the hull
   is their shape. It is drawn at full size (smooth edge), widened by a block plus a few pixels
   for the block quantisation and the blurred edge.
4. An overlay box overlapping the FOV edge (the position indicator of the HyperKvasir photos)
   joins the component and stretches the hull over the surround beside it, where text is:
   visible blocks (> THRESHOLD) more than a block away from the hole-filled component are
   blacked out again, with a block of margin.
What the mask may wrongly remove is near-black at block level (almost no picture) or bright but
cut off from the FOV (a highlight in a black lumen that reaches the FOV edge). Text touching
the FOV edge joins the component and is kept, and text drawn over the picture itself is
inside: a mask cannot remove either.

No dark surround (the component covers most of the frame's border, or the mask leaves almost
nothing outside) means a full-frame picture: no mask. `changed` says whether any pixel outside
is visibly non-black (brightest channel above THRESHOLD, above JPEG noise), so clean photos can
be stored byte-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

DIM = 12  # block means above this are picture (surround black is a few levels of JPEG noise)
THRESHOLD = 24  # a pixel whose brightest channel is above this is visibly non-black
_THUMB_SIDE = 256  # the reduced copy's longest side, at most
_MIN_SIDE = 16  # smaller images have no meaningful FOV: left alone
_FULL_FRAME_BORDER = 0.85  # component on more of the frame's border than this: no surround
_MIN_OUTSIDE = 0.01  # the mask leaves less of the frame than this outside: nothing to mask
_MIN_COMPONENT = 0.05  # a "FOV" smaller than this share of the frame is not trusted
_EDGE_PX = 3  # extra widening at full size for the blurred edge
_SQUARE = np.ones((3, 3), bool)
_DISK = ndimage.iterate_structure(ndimage.generate_binary_structure(2, 1), 2)  # radius 2


@dataclass(frozen=True)
class FovMask:
    """The field of view of one photo."""

    mask: np.ndarray  # bool HxW, True inside the field of view
    changed: bool  # any pixel outside the FOV visibly non-black: masking changes the photo


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def _inside(img: Image.Image) -> Image.Image | None:
    """The FOV as an 'L' image (255 inside) at full size, or None (full frame, degenerate)."""
    w, h = img.size
    if min(w, h) < _MIN_SIDE:
        return None
    factor = max(1, math.ceil(max(w, h) / _THUMB_SIDE))
    rgb = np.asarray(img.reduce(factor) if factor > 1 else img)
    small = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    labels, n = ndimage.label(ndimage.binary_opening(small > DIM, structure=_DISK))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    fov = labels == int(sizes.argmax())
    th, tw = fov.shape
    if sizes.max() < _MIN_COMPONENT * th * tw:
        return None
    border = np.concatenate([fov[0], fov[-1], fov[1:-1, 0], fov[1:-1, -1]])
    if border.mean() > _FULL_FRAME_BORDER:
        return None
    hull = _hull(fov)  # in block units
    in_hull = np.asarray(_polygon(hull, (tw, th), widen=1)) > 0
    if in_hull.mean() > 1.0 - _MIN_OUTSIDE:
        return None
    out = _polygon(hull * factor, (w, h), widen=factor + _EDGE_PX)
    filled = ndimage.binary_fill_holes(fov)
    foreign = (small > THRESHOLD) & ~ndimage.binary_dilation(filled, _SQUARE)
    foreign &= in_hull  # outside the hull it is black already
    if foreign.any():
        up = ndimage.binary_dilation(foreign, _SQUARE) & ~filled
        up_img = Image.fromarray(up.astype(np.uint8) * 255, "L")
        up_img = up_img.resize((tw * factor, th * factor), Image.Resampling.NEAREST)
        out = ImageChops.subtract(out, up_img.crop((0, 0, w, h)))
    return out


def _hull(fov: np.ndarray) -> np.ndarray:
    """Convex hull (counter-clockwise vertices, x/y in block units) of the blocks' corners."""
    rows = np.flatnonzero(fov.any(axis=1))
    left = fov[rows].argmax(axis=1)
    right = fov.shape[1] - fov[rows, ::-1].argmax(axis=1)  # exclusive
    # the corners of each row's outermost blocks: their hull is the component's hull
    xs = np.concatenate([left, left, right, right]).astype(np.float64)
    ys = np.concatenate([rows, rows + 1, rows, rows + 1]).astype(np.float64)
    points = np.stack([xs, ys], axis=1)
    try:
        return points[ConvexHull(points).vertices]
    except QhullError:  # cannot happen for block corners; the bounding box is a safe answer
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def _polygon(vertices: np.ndarray, size: tuple[int, int], widen: float) -> Image.Image:
    """A convex polygon filled into an 'L' image, its edges pushed out by `widen` pixels."""
    # offset each vertex along its corner's bisector so that both edges move by `widen`
    edge = np.roll(vertices, -1, axis=0) - vertices
    normal = np.stack([edge[:, 1], -edge[:, 0]], axis=1)
    normal /= np.maximum(np.hypot(normal[:, 0], normal[:, 1]), 1e-9)[:, None]
    if np.sum(normal * (vertices - vertices.mean(axis=0))) < 0:  # make the normals point out
        normal = -normal
    prev = np.roll(normal, 1, axis=0)
    miter = (prev + normal) / np.maximum(1.0 + np.sum(prev * normal, axis=1), 0.2)[:, None]
    moved = vertices + widen * miter
    out = Image.new("L", size, 0)
    ImageDraw.Draw(out).polygon([(float(x), float(y)) for x, y in moved], fill=255)
    return out


def _visible_outside(img: Image.Image, inside: Image.Image) -> bool:
    """Any pixel outside `inside` visibly non-black (a channel above THRESHOLD), at full size
    so that a thin stroke counts: one masked histogram, a C loop."""
    hist = img.histogram(mask=ImageChops.invert(inside))
    return any(any(hist[c * 256 + THRESHOLD + 1 : (c + 1) * 256]) for c in range(3))


def fov_mask(img: Image.Image) -> FovMask | None:
    """The FOV mask and whether masking changes the photo; None without a dark surround."""
    img = _rgb(img)
    inside = _inside(img)
    if inside is None:
        return None
    return FovMask(np.asarray(inside) > 0, _visible_outside(img, inside))


def field_of_view(img: Image.Image) -> np.ndarray | None:
    """Bool HxW mask, True inside the field of view; None when the photo has no dark surround
    (full frame, or too small or dark to tell): such photos are left alone."""
    inside = _inside(_rgb(img))
    return None if inside is None else np.asarray(inside) > 0


def apply_fov_mask(img: Image.Image) -> tuple[Image.Image, bool]:
    """(RGB image with everything outside the FOV black, changed). Without a surround or with
    nothing visible outside, the RGB input itself comes back with changed=False, so the caller
    can keep the original bytes."""
    img = _rgb(img)
    inside = _inside(img)
    if inside is None or not _visible_outside(img, inside):
        return img, False
    return ImageChops.darker(img, Image.merge("RGB", (inside, inside, inside))), True
