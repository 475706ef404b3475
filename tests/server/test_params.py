"""Every field of POST /v1/inpaint-mask-maker: types, ranges, defaults, null, unknown fields (SPEC section 1).

Requests that must pass validation use the prompt "unicorn": the closed-set detector knows no such class, so the
server answers without running a model and these tests stay fast. The effect of the values on real masks is
tested in test_outputs.py.
"""
from __future__ import annotations

import json

import pytest

import mm_helpers as h

UNIT_MSG = "{} must be a number between 0 and 1"
BOOL_MSG = "{} must be a boolean (true or false)"
GROW_MSG = "grow_mask must be an integer between 0 and 100"


@pytest.fixture(scope="module")
def img(small_png):
    return h.b64(small_png)


def body(img, **fields):
    b = {"prompt": "unicorn", "image": img}
    b.update(fields)
    return b


def assert_error(r, status, message=None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    payload = r.json()
    assert set(payload) == {"error"}, payload
    if message is not None:
        assert payload["error"] == message
    return payload["error"]


def assert_ok(r):
    assert r.status_code == 200, r.text
    return r


# ------------------------------------------------------------------------------------------- required fields

def test_minimal_request_is_enough(server, img):
    r = assert_ok(server.post({"prompt": "unicorn", "image": img}))
    # defaults: return_mask false -> annotated image, PNG input -> PNG output, raw bytes (base64 false)
    assert r.headers["Content-Type"] == "image/png"
    assert r.content.startswith(b"\x89PNG")


@pytest.mark.parametrize("payload,message", [
    ({"image": "x"}, "prompt is required"),
    ({"prompt": None, "image": "x"}, "prompt is required"),
    ({"prompt": "", "image": "x"}, "prompt is empty: give one or more phrases separated by commas"),
    ({"prompt": "   ", "image": "x"}, "prompt is empty: give one or more phrases separated by commas"),
    ({"prompt": " , ,, ", "image": "x"}, "prompt is empty: give one or more phrases separated by commas"),
    ({"prompt": 5, "image": "x"}, "prompt must be a string"),
    ({"prompt": ["dog"], "image": "x"}, "prompt must be a string"),
    ({"prompt": {"a": 1}, "image": "x"}, "prompt must be a string"),
    ({"prompt": True, "image": "x"}, "prompt must be a string"),
    ({"prompt": "dog"}, "image is required"),
    ({"prompt": "dog", "image": None}, "image is required"),
    ({"prompt": "dog", "image": ""}, "image is empty: give an http(s) URL, a data URI or base64"),
    ({"prompt": "dog", "image": 12}, "image must be a string"),
    ({"prompt": "dog", "image": ["aGk="]}, "image must be a string"),
    ({}, "prompt is required"),
])
def test_required_fields(server, payload, message):
    assert_error(server.post(payload), 400, message)


def test_prompt_with_too_many_phrases(server, img):
    prompt = ", ".join(f"thing{i}" for i in range(65))
    assert_error(server.post(body(img, prompt=prompt)), 400,
                 "prompt has 65 phrases; at most 64 are allowed")


def test_prompt_phrases_are_trimmed_and_merged(server, img):
    r = assert_ok(server.post(body(img, prompt=" unicorn ,, Unicorn,  dragon ", base64=True)))
    assert r.json()["unmatched"] == ["unicorn", "dragon"]
    assert r.headers["X-Unmatched-Phrases"] == "unicorn,dragon"


# ------------------------------------------------------------------------------------------- thresholds

@pytest.mark.parametrize("name", ["confidence_thresh", "iou_thresh"])
@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, 0.5, 1e-9, 0.999999])
def test_unit_interval_accepts(server, img, name, value):
    assert_ok(server.post(body(img, **{name: value})))


@pytest.mark.parametrize("name", ["confidence_thresh", "iou_thresh"])
@pytest.mark.parametrize("value", [-0.01, -1, 1.0001, 2, 100, "0.5", "", True, False, [0.5], {"v": 0.5}])
def test_unit_interval_rejects(server, img, name, value):
    assert_error(server.post(body(img, **{name: value})), 400, UNIT_MSG.format(name))


@pytest.mark.parametrize("name", ["confidence_thresh", "iou_thresh"])
def test_unit_interval_rejects_huge_exponent(server, img, name):
    # 1e999 is valid JSON but not a finite double: either "not valid JSON" or the field's range error
    raw = json.dumps(body(img)).replace('"prompt"', f'"{name}": 1e999, "prompt"')
    r = server.post(data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] in ("request body is not valid JSON", UNIT_MSG.format(name))


# ------------------------------------------------------------------------------------------- grow_mask

@pytest.mark.parametrize("value", [0, 1, 10, 99, 100, 10.0, 0.0])
def test_grow_mask_accepts(server, img, value):
    assert_ok(server.post(body(img, grow_mask=value)))


@pytest.mark.parametrize("value", [-1, -100, 101, 1000, 2**63, 2**64 - 1, -(2**63), 10.5, 0.1, 99.999,
                                   "10", True, False, [10], {"px": 10}])
def test_grow_mask_rejects(server, img, value):
    assert_error(server.post(body(img, grow_mask=value)), 400, GROW_MSG)


def test_grow_mask_rejects_large_float(server, img):
    assert_error(server.post(body(img, grow_mask=1e300)), 400, GROW_MSG)


# ------------------------------------------------------------------------------------------- booleans

BOOLS = ["invert_mask", "return_mask", "base64"]


@pytest.mark.parametrize("name", BOOLS)
@pytest.mark.parametrize("value", [True, False])
def test_booleans_accept(server, img, name, value):
    assert_ok(server.post(body(img, **{name: value})))


@pytest.mark.parametrize("name", BOOLS)
@pytest.mark.parametrize("value", ["true", "false", "", 0, 1, 0.0, [True], {"v": True}])
def test_booleans_reject(server, img, name, value):
    assert_error(server.post(body(img, **{name: value})), 400, BOOL_MSG.format(name))


# ------------------------------------------------------------------------------------------- null, unknown, order

def test_null_optional_fields_take_their_defaults(server, img):
    nulls = {k: None for k in ["invert_mask", "confidence_thresh", "iou_thresh", "return_mask", "grow_mask",
                               "base64"]}
    a = assert_ok(server.post(body(img, return_mask=True)))
    b = assert_ok(server.post(body(img, **{**nulls, "return_mask": True})))
    assert b.headers["Content-Type"] == "image/png"
    assert a.content == b.content
    # return_mask null -> default false -> annotated image
    c = assert_ok(server.post(body(img, **nulls)))
    assert c.headers["Content-Type"] == "image/png"


def test_unknown_fields_are_ignored(server, img):
    r = assert_ok(server.post(body(img, model="yolo-world", version=2, nested={"a": [1, 2, {"b": None}]},
                                   negative_prompt="dog", feather=5, output="cutout", Prompt=7)))
    assert r.headers["Content-Type"] == "image/png"  # the compatible endpoint knows no `output` field


def test_first_invalid_field_is_named(server, img):
    # several bad fields: the answer names one of them and is a 400, not a crash
    r = server.post(body(img, confidence_thresh=7, iou_thresh="x", grow_mask=-3, invert_mask="yes"))
    msg = assert_error(r, 400)
    assert any(f in msg for f in ("confidence_thresh", "iou_thresh", "grow_mask", "invert_mask"))


def test_compatible_endpoint_refuses_negative_grow_that_native_allows(server, img):
    assert_error(server.post(body(img, grow_mask=-5)), 400, GROW_MSG)
    r = server.post(body(img, grow_mask=-5), path=h.NATIVE)
    assert r.status_code == 200, r.text
