"""POST /v1/masks on a real photo (SPEC section 2): per-instance results add up to the union, negative prompts
remove exactly their instances, feather is a monotone ramp of the asked width, erosion is a round kernel, the
cutout's alpha is the mask, RLE is COCO's, and multipart uploads work on both endpoints.

Every photo request sends the same pixels, so the server encodes the image embedding once (its cache answers the
rest) and each later request costs a detection and a segmentation."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import native_support as ns
from native_support import PROMPT
from maskmaker_client import rle

PARAMS = {"confidence_thresh": 0.3, "grow_mask": 0}


def decoded(instances: list[dict]) -> list[np.ndarray]:
    return [rle.decode(i["mask"]) for i in instances]


def union(masks: list[np.ndarray], shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    for m in masks:
        out |= m
    return out


def by_phrase(instances: list[dict]) -> dict[str, dict]:
    out = {}
    for i in instances:
        assert i["phrase"] not in out, f"two instances of {i['phrase']}: pick another photo"
        out[i["phrase"]] = i
    return out


def test_instances_add_up_to_the_union(base, photo_rgb):
    h, w = photo_rgb.shape[:2]
    assert (base["width"], base["height"]) == (w, h)
    assert base["phrases"] == ["dog", "horse", "person"] and base["unmatched"] == []
    assert sorted(i["phrase"] for i in base["instances"]) == ["dog", "horse", "person"]
    assert base["detections"] == len(base["instances"]) == int(base["headers"]["X-Detections"])
    assert base["negative_instances"] == []
    scores = [i["score"] for i in base["instances"]]
    assert scores == sorted(scores, reverse=True) and all(0.3 <= s <= 1 for s in scores)
    masks = decoded(base["instances"])
    for inst, m in zip(base["instances"], masks):
        assert m.shape == (h, w)
        assert inst["area"] == int(m.sum()) > 0
        x1, y1, x2, y2 = inst["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        ys, xs = np.nonzero(m)
        # The mask lies in its box (SAM may spill a few pixels over its edge).
        assert xs.min() >= x1 - 8 and xs.max() <= x2 + 8 and ys.min() >= y1 - 8 and ys.max() <= y2 + 8, inst["phrase"]
        inside = m[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))].sum()
        assert inside >= 0.97 * m.sum(), inst["phrase"]
    u = union(masks, (h, w))
    assert np.array_equal(rle.decode(base["mask"]), u)
    assert np.array_equal(base["mask_png"] == 255, u) and set(np.unique(base["mask_png"])) <= {0, 255}
    assert base["mask"]["size"] == [h, w]
    assert u.sum() <= sum(i["area"] for i in base["instances"])


def test_rle_is_coco_compressed_rle(base):
    """Python's encoding of the server's PNG mask is, character for character, the server's RLE of it; and
    pycocotools' reference vectors."""
    assert rle.encode(base["mask_png"]) == base["mask"]
    for inst, m in zip(base["instances"], decoded(base["instances"])):
        assert rle.encode(m) == inst["mask"]
        assert rle.area(inst["mask"]) == inst["area"]
    # Hand-checked against pycocotools.mask.encode (Fortran order): a 3x3 with its centre set is runs 4,1,4.
    centre = np.zeros((3, 3), np.uint8)
    centre[1, 1] = 1
    assert rle.encode(centre) == {"size": [3, 3], "counts": "414"}
    assert rle.encode(np.ones((2, 2))) == {"size": [2, 2], "counts": "04"}
    assert rle.encode(np.zeros((2, 2))) == {"size": [2, 2], "counts": "4"}
    assert np.array_equal(rle.decode({"size": [3, 3], "counts": [4, 1, 4]}), centre.astype(bool))
    # Long runs and negative differences (the 0x10 sign bit) round-trip.
    rng = np.random.default_rng(7)
    for shape, p in [((1, 1), 1.0), ((64, 5), 0.02), ((40, 300), 0.5), ((1, 2000), 0.001)]:
        m = rng.random(shape) < p
        m[:, : shape[1] // 3] = True
        assert np.array_equal(rle.decode(rle.encode(m)), m)


@pytest.fixture(scope="module")
def soft(srv, photo_png):
    """PNG masks, feather 6 and a cutout, otherwise the reference request."""
    r = srv.post({"prompt": PROMPT, "image": ns.b64(photo_png), **PARAMS, "mask_format": "png", "feather": 6,
                  "output": "cutout"})
    assert r.status_code == 200, r.text
    return r.json()


def test_png_masks_equal_the_rle_masks(base, soft):
    assert [(i["phrase"], i["box"], i["area"]) for i in soft["instances"]] == \
           [(i["phrase"], i["box"], i["area"]) for i in base["instances"]]
    for a, b in zip(soft["instances"], decoded(base["instances"])):
        m = ns.png_data_uri_array(a["mask"])
        assert set(np.unique(m)) <= {0, 255} and np.array_equal(m == 255, b)


def test_feather_is_a_monotone_ramp_of_the_asked_width(base, soft):
    width = 6
    hard = base["mask_png"] == 255
    soft_mask = ns.png_data_uri_array(soft["mask"]).astype(int)
    dist = ns.distance_outside(hard, width + 2)
    assert (soft_mask[hard] == 255).all(), "feathering must not eat into the mask"
    # A ramp from 255 at the edge to 0 at distance width + 1: 255 * (1 - d / (width + 1)), so that the pixels at
    # distances 1 .. width (straight out from the edge: `width` pixels) are soft and the next one is 0.
    ring = (dist > 0) & (dist < width + 1)
    assert (soft_mask[dist >= width + 1] == 0).all(), "nothing beyond the ramp's width"
    assert (soft_mask[ring] < 255).all()
    assert (soft_mask[ring & (dist <= width)] > 0).all(), "every pixel within the width is soft"
    expected = 255 * (1 - dist[ring] / (width + 1))
    assert np.abs(soft_mask[ring] - expected).max() <= 1.0
    d, v = dist[ring], soft_mask[ring]
    order = np.lexsort((-v, d))
    assert (np.diff(v[order]) <= 0).all()
    levels = [soft_mask[ring & (dist == k)] for k in range(1, width + 1)]
    assert all(len(lv) for lv in levels) and all(a.min() > b.max() for a, b in zip(levels, levels[1:]))


def test_cutout_alpha_is_the_mask(soft, photo_rgb):
    assert soft["output"] == "cutout" and soft["image_content_type"] == "image/png"
    im = ns.open_image(base64.b64decode(soft["image"]))
    assert im.mode == "RGBA" and im.size == (photo_rgb.shape[1], photo_rgb.shape[0])
    rgba = np.asarray(im)
    assert np.array_equal(rgba[..., 3], ns.png_data_uri_array(soft["mask"]))
    assert np.array_equal(rgba[..., :3], photo_rgb)  # a PNG input: the colours are the input's, exactly


def test_negative_prompt_removes_exactly_its_instances(srv, base, photo_png, photo_rgb):
    r = srv.post({"prompt": "dog, horse", "negative_prompt": ["person"], "image": ns.b64(photo_png), **PARAMS})
    assert r.status_code == 200, r.text
    j = r.json()
    ref = by_phrase(base["instances"])
    assert [i["phrase"] for i in j["instances"]] == [i["phrase"] for i in base["instances"] if i["phrase"] != "person"]
    assert j["detections"] == 2 and r.headers["X-Detections"] == "2"
    assert [i["phrase"] for i in j["negative_instances"]] == ["person"]
    neg = j["negative_instances"][0]
    assert neg["box"] == ref["person"]["box"] and neg["area"] == ref["person"]["area"]
    assert np.array_equal(rle.decode(neg["mask"]), rle.decode(ref["person"]["mask"]))
    for inst in j["instances"]:
        assert inst["mask"] == ref[inst["phrase"]]["mask"]
    pos = union(decoded(j["instances"]), photo_rgb.shape[:2])
    person = rle.decode(neg["mask"])
    mask = rle.decode(j["mask"])
    assert np.array_equal(mask, pos & ~person)
    # The output PNG says the same.
    assert np.array_equal(ns.mask_array(base64.b64decode(j["image"])) == 255, mask)


def test_negative_prompt_is_cut_after_growing(srv, base, photo_png):
    r = srv.post({"prompt": "dog", "negative_prompt": "person", "image": ns.b64(photo_png),
                  "confidence_thresh": 0.3, "grow_mask": 12, "output": "none"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert "image" not in j and "output" not in j
    person = rle.decode(by_phrase(base["instances"])["person"]["mask"])
    dog = rle.decode(by_phrase(base["instances"])["dog"]["mask"])
    grown = ~ns.erode(~dog, 12)  # dilation by a disc of radius 12 (the dog is 7 px from the person)
    assert (grown & person).sum() > 20, "the grown dog reaches into the person: the negative must cut it"
    assert np.array_equal(rle.decode(j["mask"]), grown & ~person)


def test_erosion_through_a_multipart_upload_with_a_phrase_list(srv, base, photo_png):
    files = {"image": ("photo.png", photo_png, "image/png")}
    form = {"phrases": json.dumps(["dog", "horse", "person"]), "confidence_thresh": "0.3", "grow_mask": "-4",
            "output": "mask"}
    r = srv.session.post(srv.url(ns.NATIVE), files=files, data=form, timeout=ns.TIMEOUT)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["phrases"] == base["phrases"] and j["instances"] == base["instances"]
    eroded = rle.decode(j["mask"])
    assert np.array_equal(eroded, ns.erode(base["mask_png"] == 255, 4))
    assert 0 < eroded.sum() < (base["mask_png"] == 255).sum()


def test_multipart_upload_on_the_compatible_endpoint(srv, base, photo_png):
    files = {"image": ("photo.png", photo_png, "image/png")}
    form = {"prompt": PROMPT, "confidence_thresh": "0.3", "grow_mask": "0", "return_mask": "true"}
    r = srv.session.post(srv.url(ns.COMPAT), files=files, data=form, timeout=ns.TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "image/png" and r.headers["X-Detections"] == "3"
    assert np.array_equal(ns.mask_array(r.content), base["mask_png"])


def test_max_detections_keeps_the_best(srv, base, photo_png):
    r = srv.post({"prompt": PROMPT, "image": ns.b64(photo_png), **PARAMS, "max_detections": 1,
                  "instance_masks": False, "output": "none"})
    assert r.status_code == 200, r.text
    j = r.json()
    best = base["instances"][0]
    assert j["detections"] == 1 and len(j["instances"]) == 1
    assert {k: v for k, v in best.items() if k != "mask"} == j["instances"][0] and "mask" not in j["instances"][0]
    assert j["mask"] == best["mask"]


def test_regions_are_instances_with_their_class_and_agreement(srv, photo_png, photo_rgb):
    """A region phrase (sky) answers like an object one: an instance with its class as label, the agreement of
    the region segmenter's two runs as score, its box and mask; a region as negative prompt cuts its pixels."""
    h, w = photo_rgb.shape[:2]
    r = srv.post({"prompt": "dog, sky, rainbow", "image": ns.b64(photo_png), **PARAMS})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["unmatched"] == ["rainbow"] and r.headers["X-Unmatched-Phrases"] == "rainbow"
    insts = by_phrase(j["instances"])
    assert set(insts) == {"dog", "sky"}
    sky = insts["sky"]
    assert sky["label"] == "sky" and 0.3 <= sky["score"] <= 1
    m = rle.decode(sky["mask"])
    assert sky["area"] == int(m.sum()) > 0.05 * h * w
    ys, xs = np.nonzero(m)
    assert sky["box"] == [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    assert np.array_equal(rle.decode(j["mask"]), union(decoded(j["instances"]), (h, w)))

    grown = {**PARAMS, "grow_mask": 20}
    plain = srv.post({"prompt": "person", "image": ns.b64(photo_png), **grown}).json()
    cut = srv.post({"prompt": "person", "negative_prompt": ["sky"], "image": ns.b64(photo_png), **grown}).json()
    [neg] = cut["negative_instances"]
    assert neg["phrase"] == "sky" and neg["label"] == "sky"
    g = rle.decode(neg["mask"])
    assert (rle.decode(plain["mask"]) & g).any(), "the test needs an overlap to subtract"
    assert not (rle.decode(cut["mask"]) & g).any()
    assert np.array_equal(rle.decode(cut["mask"]), rle.decode(plain["mask"]) & ~g)
