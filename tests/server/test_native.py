"""The native endpoint POST /v1/masks (SPEC section 2) and multipart/form-data uploads, briefly: the compatible
endpoint is the contract these tests guard; here the shape of the native answer and the upload path."""
from __future__ import annotations

import base64

import numpy as np
import pytest

import mm_helpers as h
from test_params import assert_error


def test_native_answer_shape(server, small_png):
    r = server.post({"prompt": "dog, unicorn", "image": h.b64(small_png)}, path=h.NATIVE)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert j["status"] == "Success"
    assert (j["width"], j["height"]) == (48, 32)
    assert j["phrases"] == ["dog", "unicorn"] and j["unmatched"] == ["unicorn"]
    assert j["detections"] == 0 and j["instances"] == [] and j["negative_instances"] == []
    assert j["mask"]["size"] == [32, 48]  # RLE, rows x cols
    assert j["output"] == "mask" and j["image_content_type"] == "image/png"
    m = np.asarray(h.open_image(base64.b64decode(j["image"])))
    assert m.shape == (32, 48) and m.max() == 0
    assert r.headers["X-Detections"] == "0" and r.headers["X-Unmatched-Phrases"] == "unicorn"


def test_native_instances_on_a_photo(server, bus_small):
    r = server.post({"prompt": "bus", "image": h.b64(bus_small), "confidence_thresh": 0.3, "mask_format": "png",
                     "output": "none"}, path=h.NATIVE)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["detections"] == len(j["instances"]) >= 1
    inst = j["instances"][0]
    assert inst["phrase"] == "bus" and 0.3 <= inst["score"] <= 1
    x1, y1, x2, y2 = inst["box"]
    assert 0 <= x1 < x2 <= 270 and 0 <= y1 < y2 <= 360
    assert inst["area"] > 0 and inst["mask"].startswith("data:image/png;base64,")
    assert "image" not in j


@pytest.mark.parametrize("field,value,message", [
    ("output", "jpeg", "output must be one of mask, annotated, cutout, none"),
    ("mask_format", "bitmap", "mask_format must be rle or png"),
    ("feather", 101, "feather must be an integer between 0 and 100"),
    ("max_detections", -1, "max_detections must be an integer between 0 and 1000"),
    ("grow_mask", -101, "grow_mask must be an integer between -100 and 100"),
    ("negative_prompt", 5, "negative_prompt must be a string or a list of strings"),
])
def test_native_field_errors(server, small_png, field, value, message):
    r = server.post({"prompt": "unicorn", "image": h.b64(small_png), field: value}, path=h.NATIVE)
    assert_error(r, 400, message)


@pytest.mark.parametrize("path", [h.NATIVE, h.COMPAT])
def test_multipart_upload(server, path):
    data = h.encode(h.open_image(h.png_bytes(30, 20)).convert("RGB"), "JPEG")
    r = server.session.post(server.url(path), files={"image": ("photo.jpg", data, "image/jpeg")},
                            data={"prompt": "unicorn", "return_mask": "true", "grow_mask": "3"}, timeout=60)
    assert r.status_code == 200, r.text
    if path == h.COMPAT:
        assert r.headers["Content-Type"] == "image/png"
        assert h.open_image(r.content).size == (30, 20)
    else:
        assert (r.json()["width"], r.json()["height"]) == (30, 20)


def test_multipart_field_errors(server):
    data = h.png_bytes(30, 20)
    r = server.session.post(server.url(h.COMPAT), files={"image": ("a.png", data, "image/png")},
                            data={"prompt": "unicorn", "grow_mask": "lots"}, timeout=60)
    assert_error(r, 400, "grow_mask must be an integer between 0 and 100")
    r = server.session.post(server.url(h.COMPAT), files={"image": ("a.png", data, "image/png")}, timeout=60)
    assert_error(r, 400, "prompt is required")


def test_multipart_over_body_limit_is_413(start_server):
    s = start_server("--max-body-bytes", "4096", name="multipart-limit")
    big = np.random.default_rng(3).integers(0, 255, 20_000, np.uint8).tobytes()
    r = s.session.post(s.url(h.NATIVE), files={"image": ("a.png", big, "image/png")}, data={"prompt": "unicorn"},
                       timeout=60)
    msg = assert_error(r, 413)
    assert msg == "request body is larger than the server's limit of 4096 bytes"
