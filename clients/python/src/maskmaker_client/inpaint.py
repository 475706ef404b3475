"""Pasting an inpainted crop back into the original image: the other half of the `crop` option (docs/inpainting.md).

Only Pillow and NumPy (the client's dependencies): the inpainted crop is resized back to the crop box and blended
in through the crop's mask, optionally feathered outward, so that pixels outside the (feathered) mask keep their
exact original values.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from .client import Crop, MasksResult

MAX_FEATHER = 256


def _rgb(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"an image array must be uint8, not {image.dtype}")
        return Image.fromarray(image).convert("RGB")
    if isinstance(image, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(image))).convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(Path(image)) as im:
            return im.convert("RGB")
    raise TypeError(f"cannot read an image of type {type(image).__name__}")


def _max3x3(a: np.ndarray) -> np.ndarray:
    """3 x 3 maximum filter (rows, then columns), edges replicated."""
    g = a.copy()
    g[1:] = np.maximum(g[1:], a[:-1])
    g[:-1] = np.maximum(g[:-1], a[1:])
    h = g.copy()
    h[:, 1:] = np.maximum(h[:, 1:], g[:, :-1])
    h[:, :-1] = np.maximum(h[:, :-1], g[:, 1:])
    return h


def feather_alpha(alpha: np.ndarray, pixels: int) -> np.ndarray:
    """`alpha` (float 0..1, from an 8-bit mask) with a linear ramp outward over `pixels` (chessboard distance): a
    pixel at distance d = 1..pixels from the mask gets (1 - d / (pixels + 1)) times the mask's value there (in 8
    bits, rounded down), the next ones 0."""
    if pixels <= 0:
        return alpha
    grown = out = np.round(alpha * 255).astype(np.uint8)
    levels = np.arange(256)
    for d in range(1, pixels + 1):
        grown = _max3x3(grown)
        lut = (levels * (1.0 - d / (pixels + 1))).astype(np.uint8)  # rounded down
        out = np.maximum(out, lut[grown])
    return out.astype(np.float64) / 255.0


def stitch(original: Any, crop: Union[Crop, MasksResult], inpainted: Any, *, feather: int = 0) -> Image.Image:
    """The original image with `inpainted` (the crop image after an inpainting model, any size: it is resized back
    to the crop box) blended in through the crop's mask, feathered outward by `feather` pixels (of the original
    image). `original`: a PIL image, a uint8 array, bytes or a path; `crop`: a result's `crop` (or the result).
    Returns an RGB image the size of the original; pixels outside the box, and where the (feathered) mask is 0,
    are unchanged."""
    if isinstance(crop, MasksResult):
        if crop.crop is None:
            raise ValueError(f"the result has no crop ({crop.crop_reason or 'ask for one with crop=...'})")
        crop = crop.crop
    if not 0 <= int(feather) <= MAX_FEATHER:
        raise ValueError(f"feather must be between 0 and {MAX_FEATHER}")
    base = _rgb(original)
    x1, y1, x2, y2 = crop.box
    if x2 > base.width or y2 > base.height:
        raise ValueError(f"the crop box {crop.box} does not fit in the {base.width} x {base.height} original")
    size = (x2 - x1, y2 - y1)
    patch = _rgb(inpainted)
    if patch.size != size:
        patch = patch.resize(size, Image.LANCZOS)
    mask = Image.fromarray(np.asarray(crop.mask, dtype=np.uint8), "L")
    if mask.size != size:
        mask = mask.resize(size, Image.BILINEAR)
    alpha = feather_alpha(np.asarray(mask, dtype=np.float64) / 255.0, int(feather))[..., None]
    out = np.asarray(base).copy()
    region = out[y1:y2, x1:x2].astype(np.float64)
    blended = region * (1.0 - alpha) + np.asarray(patch, dtype=np.float64) * alpha
    out[y1:y2, x1:x2] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")
