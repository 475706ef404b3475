"""The worked example of docs/inpainting.md, run with a stand-in "inpainter" (it fills the crop with a flat colour)
so that it needs no model and no GPU: mask -> crop -> inpaint -> stitch. It writes the before/after images the
document describes to $MASKMAKER_TEST_OUT/inpainting (default out/test/inpainting; not committed):
before.jpg, crop.png, crop-mask.png, inpainted-crop.png, after.jpg."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

import native_support as ns
from maskmaker_client import Client, stitch
from testlib import sample

OUT = Path(os.environ.get("MASKMAKER_TEST_OUT", str(ns.REPO / "out" / "test"))) / "inpainting"


def flat_inpainter(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Stands in for the diffusers pipeline of the document: same sizes in and out, the crop filled with one colour
    where the mask is set (a real model would paint there)."""
    assert image.size == mask.size and image.size[0] % 64 == 0 and image.size[1] % 64 == 0
    out = np.asarray(image.convert("RGB")).copy()
    out[np.asarray(mask) > 127] = (40, 200, 90)
    return Image.fromarray(out)


def test_worked_example(srv, api, tmp_path):
    photo = tmp_path / "dog.jpg"
    photo.write_bytes(sample("darknet_dog_bicycle_truck.jpg"))
    # --- the document's code, from here ---
    with Client(srv.base, session=ns.checked_session(api)) as client:
        result = client.masks(str(photo), "dog", confidence_thresh=0.3, grow_mask=12,
                              crop={"padding": 32, "multiple_of": 64, "target_size": 512})
    crop = result.crop                                   # None when nothing was found (result.crop_reason)
    inpainted = flat_inpainter(crop.image, Image.fromarray(crop.mask))   # <- the model goes here
    original = Image.open(photo).convert("RGB")
    after = stitch(original, crop, inpainted, feather=8)
    # --- to here ---
    OUT.mkdir(parents=True, exist_ok=True)
    original.save(OUT / "before.jpg", quality=90)
    crop.image.save(OUT / "crop.png")
    Image.fromarray(crop.mask).save(OUT / "crop-mask.png")
    inpainted.save(OUT / "inpainted-crop.png")
    after.save(OUT / "after.jpg", quality=90)

    assert max(crop.size) == 512 and crop.image.size == crop.size
    before, now = np.asarray(original), np.asarray(after)
    changed = (before != now).any(axis=2)
    x1, y1, x2, y2 = crop.box
    assert changed.sum() > 0.5 * (result.mask > 0).sum(), "the masked dog is repainted"
    ring = changed.copy()
    ring[y1:y2, x1:x2] = False
    assert not ring.any(), "nothing outside the crop box changes"
    # Deep inside the mask (away from the resize's soft edge) the pixels are the inpainter's colour.
    core = ns.erode(result.mask > 0, 6)
    assert core.sum() > 1000
    assert np.abs(now[core].astype(int) - (40, 200, 90)).max() <= 2
    # Far from the mask (beyond the feather and the resize) nothing changes.
    far = ns.distance_outside(result.mask > 0, 20) == np.inf
    assert not changed[far].any()
