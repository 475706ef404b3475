"""POST /v1/masks with `crop` (docs/inpainting.md) on real photos: the box holds the whole mask plus the padding
(clamped to the image), the crop image's sides are multiples of multiple_of, the cropped mask is the full mask cut
at the box (resized: compared by IoU), the cropped image is the image cut at the box; multipart forms carry the
crop as JSON text; an empty mask gives `crop: null` with a reason; every invalid crop field its exact 400. Then
the Python client's `stitch` pastes a flat-coloured "inpainted" crop back: only pixels under the (feathered) mask
change."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

import native_support as ns
from testlib import sample
from maskmaker_client import Client, rle, stitch
from maskmaker_client.inpaint import feather_alpha

DOG = "darknet_dog_bicycle_truck.jpg"  # 768 x 576
PIGEON = "pigeon_3000px.jpg"  # 3000 x 2250


def png_of(name: str) -> tuple[bytes, np.ndarray]:
    """The sample as PNG bytes (exact pixels to compare the crop with) and as an RGB array."""
    rgb = np.asarray(ns.open_image(sample(name)).convert("RGB")).copy()
    return ns.encode(ns.Image.fromarray(rgb), "PNG", compress_level=1), rgb


def png_array(b64: str) -> np.ndarray:
    return np.asarray(ns.open_image(base64.b64decode(b64))).copy()


def bounding_box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def holds_padded(box, mask_box, padding, w, h) -> bool:
    x1, y1, x2, y2 = box
    return (x1 <= max(0, mask_box[0] - padding) and y1 <= max(0, mask_box[1] - padding)
            and x2 >= min(w, mask_box[2] + padding) and y2 >= min(h, mask_box[3] + padding)
            and 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


@pytest.fixture(scope="module")
def dog():
    data, rgb = png_of(DOG)
    return data, rgb


@pytest.fixture(scope="module")
def pigeon(srv):
    """The pigeon photo through a multipart upload, the crop as JSON text: 1024 px on the longer side, multiples
    of 64, feather 4 (a soft mask), output mask (the full mask, to compare)."""
    data, rgb = png_of(PIGEON)
    crop = {"padding": 48, "multiple_of": 64, "target_size": 1024}
    form = {"prompt": "pigeon", "confidence_thresh": "0.3", "feather": "4", "output": "mask", "instance_masks": "false",
            "crop": json.dumps(crop)}
    r = srv.session.post(srv.url(ns.NATIVE), files={"image": ("pigeon.png", data, "image/png")}, data=form,
                         timeout=ns.TIMEOUT)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["detections"] >= 1, "no pigeon found: pick another photo"
    return {"json": j, "rgb": rgb, "crop": crop, "mask": png_array(j["image"])}


def test_crop_without_resize_is_the_image_and_mask_cut_at_the_box(srv, dog):
    data, rgb = dog
    h, w = rgb.shape[:2]
    r = srv.post({"prompt": "dog", "image": ns.b64(data), "confidence_thresh": 0.3, "grow_mask": 6,
                  "output": "none", "instance_masks": False, "crop": {"padding": 24, "multiple_of": 64}})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["detections"] >= 1 and "crop_reason" not in j
    full = rle.decode(j["mask"])
    c = j["crop"]
    assert c["mask_box"] == bounding_box(full)
    assert holds_padded(c["box"], c["mask_box"], 24, w, h)
    x1, y1, x2, y2 = c["box"]
    assert (c["width"], c["height"]) == (x2 - x1, y2 - y1) and c["scale"] == [1.0, 1.0]
    assert c["width"] % 64 == 0 and c["height"] % 64 == 0
    image, mask = png_array(c["image"]), png_array(c["mask"])
    assert image.shape == (c["height"], c["width"], 3) and mask.shape == (c["height"], c["width"])
    assert np.array_equal(image, rgb[y1:y2, x1:x2])
    assert np.array_equal(mask == 255, full[y1:y2, x1:x2]) and set(np.unique(mask)) <= {0, 255}
    assert (mask == 255).sum() == full.sum(), "the whole mask is in the crop"


def test_resized_crop_from_a_multipart_form(pigeon):
    j, rgb, full = pigeon["json"], pigeon["rgb"], pigeon["mask"]
    h, w = rgb.shape[:2]
    c = j["crop"]
    assert c["mask_box"] == bounding_box(full > 0)  # the feathered mask's extent
    assert holds_padded(c["box"], c["mask_box"], 48, w, h)
    assert max(c["width"], c["height"]) == 1024 and c["width"] % 64 == 0 and c["height"] % 64 == 0
    x1, y1, x2, y2 = c["box"]
    sx, sy = c["scale"]
    assert sx == pytest.approx(c["width"] / (x2 - x1)) and sy == pytest.approx(c["height"] / (y2 - y1))
    assert sx == pytest.approx(sy, rel=0.01), "the box has the crop image's aspect"
    mask = png_array(c["mask"])
    assert mask.shape == (c["height"], c["width"])
    assert len(np.unique(mask)) > 2, "a feathered mask keeps its ramp"
    # Scaled back to the box, the cropped mask is the full mask cut at the box.
    back = np.asarray(ns.Image.fromarray(mask).resize((x2 - x1, y2 - y1), ns.Image.BILINEAR))
    assert iou(back > 127, full[y1:y2, x1:x2] > 127) > 0.97
    image = np.asarray(ns.Image.fromarray(png_array(c["image"])).resize((x2 - x1, y2 - y1), ns.Image.BILINEAR))
    assert np.abs(image.astype(int) - rgb[y1:y2, x1:x2]).mean() < 6


def test_stitching_a_flat_colour_changes_only_pixels_under_the_mask(pigeon):
    """The Python client's stitch with a stand-in inpainter (a flat colour): inside the mask the colour, outside the
    feathered mask the original, exactly."""
    from maskmaker_client.client import Crop

    j, rgb = pigeon["json"], pigeon["rgb"]
    crop = Crop.from_json(j["crop"])
    assert crop.image.size == crop.size == (j["crop"]["width"], j["crop"]["height"])
    flat = np.zeros((crop.size[1], crop.size[0], 3), np.uint8)
    flat[:] = (255, 0, 255)
    feather = 6
    out = np.asarray(stitch(rgb, crop, flat, feather=feather))
    assert out.shape == rgb.shape
    changed = (out != rgb).any(axis=2)
    x1, y1, x2, y2 = crop.box
    outside = np.ones(changed.shape, bool)
    outside[y1:y2, x1:x2] = False
    assert not changed[outside].any(), "nothing outside the crop box changes"
    alpha = np.asarray(ns.Image.fromarray(crop.mask).resize((x2 - x1, y2 - y1), ns.Image.BILINEAR)) / 255.0
    soft = feather_alpha(alpha, feather)
    assert not changed[y1:y2, x1:x2][soft == 0].any(), "nothing outside the feathered mask changes"
    inside = alpha == 1.0
    assert inside.sum() > 1000 and (out[y1:y2, x1:x2][inside] == (255, 0, 255)).all()
    assert changed.sum() >= inside.sum() and (soft > 0).sum() > (alpha > 0).sum(), "the feather widens the blend"


def test_empty_mask_gives_no_crop(srv):
    blank = ns.encode(ns.Image.new("RGB", (96, 64), (90, 140, 200)), "PNG")
    r = srv.post({"prompt": "dog", "image": ns.b64(blank), "crop": {}})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["detections"] == 0 and j["crop"] is None
    assert j["crop_reason"] == "the mask is empty: nothing to crop"


def test_client_asks_for_a_crop(srv, api, dog):
    data, rgb = dog
    with Client(srv.base, session=ns.checked_session(api)) as client:
        result = client.masks(data, "dog", confidence_thresh=0.3, crop={"multiple_of": 8, "padding": 0})
    assert result.crop is not None and result.crop_reason is None
    x1, y1, x2, y2 = result.crop.box
    assert list(result.crop.mask_box) == bounding_box(result.mask > 0)
    assert result.crop.size == (x2 - x1, y2 - y1) and (x2 - x1) % 8 == 0
    assert np.array_equal(np.asarray(result.crop.image), rgb[y1:y2, x1:x2])
    assert np.array_equal(result.crop.mask, result.mask[y1:y2, x1:x2])


def test_a_crop_larger_than_the_image_needs_a_target_size(srv, dog):
    data, _ = dog
    r = srv.post({"prompt": "dog", "image": ns.b64(data), "confidence_thresh": 0.3, "output": "none",
                  "crop": {"min_size": 8192}})
    assert r.status_code == 400
    assert r.json() == {"error": "crop would be 8192 x 8192 pixels, more than the image; set crop.target_size or "
                                 "lower crop.min_size or crop.aspect_ratio"}
    r = srv.post({"prompt": "dog", "image": ns.b64(data), "confidence_thresh": 0.3, "output": "none",
                  "instance_masks": False, "crop": {"min_size": 8192, "target_size": 512}})
    assert r.status_code == 200, r.text
    c = r.json()["crop"]
    assert c["box"] == [0, 0, 768, 576] and (c["width"], c["height"]) == (512, 512)


PADDING = "crop.padding must be an integer between 0 and 4096"
TARGET = "crop.target_size must be an integer between 1 and 4096"
OBJECT = ('crop must be an object such as {"padding": 32, "multiple_of": 64} (in a multipart form: that object as '
          'JSON text)')
INVALID = [
    ({"padding": -1}, PADDING),
    ({"padding": 4097}, PADDING),
    ({"padding": 1.5}, PADDING),
    ({"padding": "32"}, PADDING),
    ({"padding_fraction": 2.5}, "crop.padding_fraction must be a number between 0 and 2"),
    ({"padding_fraction": -0.1}, "crop.padding_fraction must be a number between 0 and 2"),
    ({"multiple_of": 0}, "crop.multiple_of must be an integer between 1 and 1024"),
    ({"multiple_of": 2048}, "crop.multiple_of must be an integer between 1 and 1024"),
    ({"multiple_of": True}, "crop.multiple_of must be an integer between 1 and 1024"),
    ({"target_size": 0}, TARGET),
    ({"target_size": 8192}, TARGET),
    ({"target_size": 10**30}, TARGET),
    ({"target_size": 1000, "multiple_of": 64}, "crop.target_size must be a multiple of crop.multiple_of (64)"),
    ({"min_size": -1}, "crop.min_size must be an integer between 0 and 8192"),
    ({"min_size": 9000}, "crop.min_size must be an integer between 0 and 8192"),
    ({"aspect_ratio": 0}, "crop.aspect_ratio must be a number between 0.1 and 10"),
    ({"aspect_ratio": 12}, "crop.aspect_ratio must be a number between 0.1 and 10"),
    ({"aspect_ratio": "16:9"}, "crop.aspect_ratio must be a number between 0.1 and 10"),
    ({"multiple": 64}, "crop has an unknown field 'multiple'; known: padding, padding_fraction, multiple_of, "
                       "target_size, min_size, aspect_ratio"),
    (5, OBJECT),
    ([64], OBJECT),
    (True, OBJECT),
    ("not json", OBJECT),
    ('{"multiple_of": 0}', "crop.multiple_of must be an integer between 1 and 1024"),  # JSON text, as in a form
]


@pytest.mark.parametrize("crop,message", INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_every_invalid_crop_field_is_an_exact_400(srv, crop, message):
    tiny = ns.encode(ns.Image.new("RGB", (64, 40), (90, 140, 200)), "PNG")
    r = srv.post({"prompt": "dog", "image": ns.b64(tiny), "crop": crop})
    assert r.status_code == 400, r.text
    assert r.json() == {"error": message}


def test_invalid_crop_in_a_multipart_form(srv):
    tiny = ns.encode(ns.Image.new("RGB", (64, 40), (90, 140, 200)), "PNG")
    for text, message in [('{"target_size": 4100}', TARGET), ("{", OBJECT), ('{"padding": {"a": {"b": 1}}}', OBJECT)]:
        r = srv.session.post(srv.url(ns.NATIVE), files={"image": ("t.png", tiny, "image/png")},
                             data={"prompt": "dog", "crop": text}, timeout=ns.TIMEOUT)
        assert r.status_code == 400, r.text
        assert r.json() == {"error": message}, text


def test_the_compatible_endpoint_ignores_crop(srv):
    tiny = ns.encode(ns.Image.new("RGB", (64, 40), (90, 140, 200)), "PNG")
    r = srv.post({"prompt": "dog", "image": ns.b64(tiny), "return_mask": True, "crop": {"multiple_of": 0}},
                 path=ns.COMPAT)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"


def test_stitch_refuses_what_it_cannot_paste():
    from maskmaker_client.client import Crop, MasksResult

    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    crop = Crop(box=(4, 4, 12, 12), mask_box=(6, 6, 10, 10), size=(8, 8), scale=(1.0, 1.0),
                image=ns.Image.new("RGB", (8, 8)), mask=mask)
    original = np.full((16, 16, 3), 7, np.uint8)
    out = np.asarray(stitch(original, crop, np.full((32, 32, 3), 200, np.uint8)))  # any size: resized to the box
    assert (out[6:10, 6:10] == 200).all() and (out[:4] == 7).all() and (out[:, :4] == 7).all()
    assert (out[4:6, 4:12] == 7).all(), "outside the mask, inside the box: unchanged without feather"
    empty = MasksResult(width=16, height=16, phrases=["dog"], unmatched=[], instances=[], negative_instances=[],
                        mask=np.zeros((16, 16), np.uint8), crop=None, crop_reason="the mask is empty: nothing to crop")
    with pytest.raises(ValueError, match="the mask is empty"):
        stitch(original, empty, original)
    with pytest.raises(ValueError, match="feather must be between 0 and 256"):
        stitch(original, crop, original, feather=300)
    with pytest.raises(ValueError, match="does not fit"):
        stitch(np.zeros((10, 10, 3), np.uint8), crop, original)
