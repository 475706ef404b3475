"""COCO run-length encoding of binary masks, the compressed string form pycocotools writes (and the server sends).

Runs are counted over the mask in column-major order (down the first column, then the next), starting with a
run of background that may be empty. In the string form each run count is, from the third on, written as its
difference from the count two before; every number is then split into 5-bit groups, least significant first, each
written as chr(48 + group), with 0x20 set on all but the last group of a number (and 0x10 of the last one the sign).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Union

import numpy as np

RLE = Dict[str, Any]  # {"size": [height, width], "counts": str}


def _runs(mask: np.ndarray) -> List[int]:
    flat = (np.asarray(mask) > 0).T.reshape(-1)  # column-major
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return [int(r) for r in runs]


def counts_to_string(counts: List[int]) -> str:
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def string_to_counts(s: str) -> List[int]:
    counts: List[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("RLE counts string ends inside a number")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> RLE:
    """A 2-D mask (nonzero = inside) -> {"size": [h, w], "counts": "..."}."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"a mask is 2-D, not of shape {m.shape}")
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(_runs(m))}


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """{"size": [h, w], "counts": str or list of ints} -> a bool array of shape (h, w)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    runs = string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise ValueError(f"RLE runs add up to {sum(runs)} pixels, not {h}x{w} = {h * w}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(w, h).T.copy()


def area(rle: Mapping[str, Any]) -> int:
    """Pixels inside, without decoding."""
    counts = rle["counts"]
    runs = string_to_counts(counts) if isinstance(counts, str) else list(counts)
    return int(sum(runs[1::2]))


def to_mask(value: Union[str, Mapping[str, Any]]) -> np.ndarray:
    """A mask as the native API sends it (an RLE object or a PNG data URI) -> uint8 array, 0..255."""
    if isinstance(value, Mapping):
        return decode(value).astype(np.uint8) * 255
    if isinstance(value, str) and value.startswith("data:"):
        import base64
        import io

        from PIL import Image

        data = base64.b64decode(value.split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("L")).copy()
    raise ValueError("a mask is an RLE object or a data:image/png;base64 URI")
