"""The OpenAPI document (/openapi.json) against the live server: it is the generated one, its schemas are valid
JSON Schema 2020-12, and every answer validates against it: the 200s of both endpoints in all their forms, every
error status a client can provoke (through a second server with keys, private URLs allowed, a short fetch timeout
and a small body limit), the CORS preflight and the operational endpoints. Every request made through a test
server's session in tests/native is checked the same way (native_support.checked_session); here the checks are
made explicit, and the request schemas are held to what the server accepts and refuses."""
from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys

import pytest

import native_support as ns

SCHEMAS = {ns.COMPAT: "CompatibleRequest", ns.NATIVE: "NativeRequest"}


def tiny(fmt: str = "PNG") -> bytes:
    return ns.encode(ns.Image.new("RGB", (64, 40), (90, 140, 200)), fmt)


def request_schema(api: ns.OpenApi, path: str) -> dict:
    return api.doc["components"]["schemas"][SCHEMAS[path]]


# ------------------------------------------------------------------------------------------------ the document

def test_served_document_is_the_generated_one(srv, tmp_path):
    served = srv.get("/openapi.json").json()
    on_disk = json.loads((ns.REPO / "web" / "openapi.json").read_text())
    assert served == on_disk, "the binary serves another document than web/openapi.json: rebuild it"
    out = tmp_path / "openapi.json"
    subprocess.run([sys.executable, str(ns.REPO / "scripts" / "gen_openapi.py"), str(out)], check=True, timeout=60)
    assert json.loads(out.read_text()) == on_disk, "web/openapi.json is stale: run scripts/gen_openapi.py"


def test_document_is_valid_openapi_31(api):
    from jsonschema import Draft202012Validator

    doc = api.doc
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs
    for r in refs:
        assert r.startswith("#/components/"), r
        api.deref({"$ref": r})  # resolves
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["responses"], f"{method} {path}: no responses"
            for status, resp in op["responses"].items():
                resp = api.deref(resp)
                assert resp["description"], f"{method} {path} {status}"
                for media in resp.get("content", {}).values():
                    Draft202012Validator.check_schema(media["schema"])
                for header in resp.get("headers", {}).values():
                    Draft202012Validator.check_schema(api.deref(header)["schema"])
            for media in op.get("requestBody", {}).get("content", {}).values():
                Draft202012Validator.check_schema(media["schema"])
    # Both mask endpoints document every error status of SPEC's list.
    for path in (ns.COMPAT, ns.NATIVE):
        statuses = set(doc["paths"][path]["post"]["responses"])
        assert statuses >= {"200", "400", "401", "403", "405", "406", "413", "415", "429", "500", "502", "503", "504"}
        assert set(doc["paths"][path]["post"]["requestBody"]["content"]) == {"application/json", "multipart/form-data"}


def test_the_document_lists_every_native_field(api):
    props = request_schema(api, ns.NATIVE)["properties"]
    for name in ["prompt", "phrases", "image", "negative_prompt", "invert_mask", "confidence_thresh", "iou_thresh",
                 "grow_mask", "feather", "max_detections", "output", "mask_format", "instance_masks"]:
        assert name in props and "description" in props[name], name
    assert props["grow_mask"]["minimum"] == -100
    multipart = api.doc["paths"][ns.NATIVE]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(multipart["properties"]) == set(props)


# ------------------------------------------------------------------------------------------------ 200s

@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("return_mask", [True, False])
@pytest.mark.parametrize("as_base64", [True, False])
def test_compatible_200_forms(srv, fmt, return_mask, as_base64):
    body = {"prompt": "dog, unicorn", "image": ns.b64(tiny(fmt)), "return_mask": return_mask, "base64": as_base64}
    r = srv.post(body, path=ns.COMPAT)  # validated against the document by the session
    assert r.status_code == 200, r.text
    expected = "image/png" if return_mask or fmt == "PNG" else "image/jpeg"
    if as_base64:
        assert r.headers["Content-Type"] == "application/json"
        j = r.json()
        assert j["unmatched"] == ["unicorn"]
        assert ns.open_image(base64.b64decode(j["image"])).format == expected.split("/")[1].upper()
    else:
        assert r.headers["Content-Type"] == expected
    assert r.headers["X-Unmatched-Phrases"] == "unicorn"


@pytest.mark.parametrize("output,mask_format", [("mask", "rle"), ("annotated", "png"), ("cutout", "rle"),
                                                ("none", "png"), (None, None)])
def test_native_200_forms(srv, api, output, mask_format):
    body = {"phrases": ["dog"], "image": "data:image/jpeg;base64," + ns.b64(tiny("JPEG")), "output": output,
            "mask_format": mask_format, "instance_masks": False}
    assert not api.errors(body, request_schema(api, ns.NATIVE))
    r = srv.post(body)
    assert r.status_code == 200, r.text
    j = r.json()
    assert ("image" in j) == (output != "none")
    if output == "annotated":
        assert j["image_content_type"] == "image/jpeg"
    if mask_format == "png":
        assert j["mask"].startswith("data:image/png;base64,")
    else:
        assert j["mask"]["size"] == [40, 64]


def test_native_answer_with_instances_validates(base, api):
    j = {k: v for k, v in base.items() if k not in ("mask_png", "headers")}
    assert j["instances"] and all("mask" in i for i in j["instances"])
    api.validate(j, api.doc["components"]["schemas"]["NativeResponse"])
    broken = copy.deepcopy(j)
    broken["instances"][0]["box"] = [1, 2, 3]
    assert api.errors(broken, api.doc["components"]["schemas"]["NativeResponse"]), "the schema checks nothing"
    broken = dict(j, surprise=1)
    assert api.errors(broken, api.doc["components"]["schemas"]["NativeResponse"]), "undocumented fields pass"


def test_request_schema_boundaries_are_accepted(srv, api):
    """Every field at its documented minimum, maximum, default, and null: valid by the schema, 200 by the server."""
    for path in (ns.COMPAT, ns.NATIVE):
        schema = request_schema(api, path)
        variants: dict[str, dict] = {"minimum": {}, "maximum": {}, "default": {}, "null": {}}
        for name, prop in schema["properties"].items():
            if name in ("prompt", "image", "phrases"):
                continue
            if "minimum" in prop:
                variants["minimum"][name] = prop["minimum"]
                variants["maximum"][name] = prop["maximum"]
            if "default" in prop:
                variants["default"][name] = prop["default"]
            variants["null"][name] = None
        for label, fields in variants.items():
            body = {"prompt": "unicorn", "image": ns.b64(tiny()), **fields}
            assert not api.errors(body, schema), (path, label, api.errors(body, schema))
            r = srv.post(body, path=path)
            assert r.status_code == 200, (path, label, r.text)


def _violations(name: str, prop: dict) -> list:
    """Values of a field that its schema refuses."""
    bad: list = []
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "anyOf" in prop:
        bad += [5, [5], {"a": 1}]
    elif "enum" in prop:
        bad += ["bogus", 3]
    elif "boolean" in types:
        bad += ["true", 1]
    elif "integer" in types:
        bad += [prop["minimum"] - 1, prop["maximum"] + 1, 1.5, "3"]
    elif "number" in types:
        bad += [prop["minimum"] - 0.5, prop["maximum"] + 0.5, "0.5", True]
    elif "string" in types:
        bad += [5, ""]
        if "maxLength" in prop:
            bad.append("a" * (prop["maxLength"] + 1))
    if "anyOf" in prop:
        for alt in prop["anyOf"]:
            if alt.get("type") == "array" and "maxItems" in alt:
                bad.append([f"thing {i}" for i in range(alt["maxItems"] + 1)])
            if alt.get("type") == "string" and "maxLength" in alt:
                bad.append("a" * (alt["maxLength"] + 1))
    return bad


def test_request_schema_violations_are_400s_naming_the_field(srv, api):
    """Each value the document refuses, the server refuses too, with a 400 that names the field (and the other way
    round for the boundaries, above)."""
    count = 0
    for path in (ns.COMPAT, ns.NATIVE):
        schema = request_schema(api, path)
        for name, prop in schema["properties"].items():
            for value in _violations(name, prop):
                body = {"prompt": "unicorn", "image": ns.b64(tiny()), name: value}
                if name == "phrases":
                    body.pop("prompt")
                assert api.errors(body, schema), f"{path}: the schema accepts {name}={value!r:.40}"
                r = srv.post(body, path=path)
                assert r.status_code == 400, (path, name, repr(value)[:40], r.status_code, r.text)
                message = r.json()["error"]
                assert name in message or (name == "image" and value == ""), (path, name, message)
                count += 1
    assert count > 60


# ------------------------------------------------------------------------------------------------ errors

def test_error_answers_of_the_open_server(srv, api):
    photo = ns.b64(tiny())
    cases = [
        (ns.COMPAT, {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
        (ns.NATIVE, {"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}}, 400, "JSON object"),
        (ns.NATIVE, {"data": b"", "headers": {"Content-Type": "application/json"}}, 400, "empty"),
        (ns.NATIVE, {"json": {"prompt": "dog"}}, 400, "image is required"),
        (ns.NATIVE, {"json": {"image": photo}}, 400, "prompt is required"),
        (ns.NATIVE, {"json": {"prompt": "dog", "image": "%%%"}}, 400, "neither an http(s) URL"),
        (ns.NATIVE, {"json": {"prompt": "dog", "image": ns.b64(b"GIF87a-but-not-really" * 3)}}, 400, "image"),
        (ns.NATIVE, {"json": {"prompt": "dog", "image": ns.b64(b"plain text, no image")}}, 400, "unsupported image format"),
        (ns.NATIVE, {"json": {"prompt": "dog", "image": "http://127.0.0.1:1/x.png"}}, 400, "forbidden address"),
        (ns.NATIVE, {"json": {"prompt": "dog", "image": "ftp://example.com/x.png"}}, 400, "scheme 'ftp'"),
        (ns.NATIVE, {"data": b"prompt=dog", "headers": {"Content-Type": "text/plain"}}, 415, "Content-Type"),
        (ns.COMPAT, {"files": {"image": ("a.png", tiny(), "image/png")}, "data": {"grow_mask": "-1", "prompt": "x"}},
         400, "grow_mask"),
    ]
    for path, kw, status, text in cases:
        r = srv.session.post(srv.url(path), timeout=ns.TIMEOUT, **kw)
        assert r.status_code == status, (path, kw.get("json") or kw.get("data"), r.text)
        assert text in r.json()["error"], r.json()
    for method, path, status in [("GET", ns.NATIVE, 405), ("PUT", ns.COMPAT, 405), ("POST", "/healthz", 405),
                                 ("GET", "/v1/nothing", 404), ("POST", "/nope", 404), ("DELETE", "/metrics", 405)]:
        r = srv.session.request(method, srv.url(path), timeout=30)
        assert r.status_code == status, (method, path, r.text)
        if status == 405:
            assert "POST" in r.headers["Allow"] or "GET" in r.headers["Allow"]


def test_preflight_and_operational_endpoints(srv, api):
    for path in (ns.COMPAT, ns.NATIVE):
        r = srv.session.options(srv.url(path), headers={"Origin": "https://example.com",
                                                         "Access-Control-Request-Method": "POST"}, timeout=30)
        assert r.status_code == 204 and "x-api-key" in r.headers["Access-Control-Allow-Headers"]
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/"]:
        r = srv.get(path)
        assert r.status_code == 200, path
    seen = {(m, p) for m, p, _, _ in api.checked}
    assert {("OPTIONS", ns.NATIVE), ("GET", "/readyz"), ("GET", "/")} <= seen


def test_error_answers_with_keys_and_fetching(strict, api):
    tiny_b64 = ns.b64(tiny())
    body = {"prompt": "unicorn", "image": tiny_b64}
    silent = ns.Silent()
    closed = ns.free_port()
    try:
        cases = [
            (ns.NATIVE, None, body, 401, "missing x-api-key header"),
            (ns.NATIVE, "mk_not_a_key", body, 401, "unknown API key"),
            (ns.NATIVE, strict.keys["off"], body, 403, "disabled"),
            (ns.COMPAT, strict.keys["native"], body, 403, "not allowed to call /v1/inpaint-mask-maker"),
            (ns.NATIVE, strict.keys["empty"], body, 406, "no credits left"),
            (ns.NATIVE, strict.keys["ok"], {"prompt": "dog", "image": "A" * 400_000}, 413, "larger than"),
            (ns.NATIVE, strict.keys["ok"], {"prompt": "dog", "image": f"http://127.0.0.1:{closed}/a.png"}, 502, "fetch"),
            (ns.NATIVE, strict.keys["ok"], {"prompt": "dog", "image": f"http://127.0.0.1:{silent.port}/a.png"}, 504,
             "timed out"),
            (ns.NATIVE, strict.keys["slow"], {"prompt": "dog", "image": "%%"}, 400, "image"),
            (ns.NATIVE, strict.keys["slow"], body, 429, "rate limit exceeded"),
        ]
        for path, key, b, status, text in cases:
            headers = {"x-api-key": key} if key else {}
            r = strict.post(b, path=path, headers=headers)
            assert r.status_code == status, (path, status, r.text)
            assert text in r.json()["error"], r.json()
            if status == 429:
                assert int(r.headers["Retry-After"]) >= 1
    finally:
        silent.close()
    seen = {status for _, path, status, _ in api.checked}
    assert seen >= {400, 401, 403, 406, 413, 429, 502, 504}
    # A 200 with the credit headers, on both endpoints, in JSON and multipart.
    r = strict.post(body, path=ns.NATIVE, headers={"x-api-key": strict.keys["ok"]})
    assert r.status_code == 200 and r.headers["x-credits-consumed"] == "1"
    left = int(r.headers["x-remaining-credits"])
    r = strict.session.post(strict.url(ns.COMPAT), headers={"x-api-key": strict.keys["ok"]},
                            files={"image": ("t.png", tiny(), "image/png")},
                            data={"prompt": "unicorn", "return_mask": "true"}, timeout=ns.TIMEOUT)
    assert r.status_code == 200 and int(r.headers["x-remaining-credits"]) == left - 1
    assert r.headers["Content-Type"] == "image/png"


def test_the_checker_catches_a_mismatch(srv, api):
    """The session's checks do fail: a document that asks for a field the answer lacks, or lists another type."""
    r = srv.post({"prompt": "unicorn", "image": ns.b64(tiny())})
    doc = copy.deepcopy(api.doc)
    doc["components"]["schemas"]["NativeResponse"]["required"].append("no_such_field")
    with pytest.raises(AssertionError, match="no_such_field"):
        ns.OpenApi(doc).check(r)
    doc = copy.deepcopy(api.doc)
    doc["components"]["headers"]["X-Detections"]["schema"] = {"type": "integer", "minimum": 5}
    with pytest.raises(AssertionError, match="X-Detections"):
        ns.OpenApi(doc).check(r)
    doc = copy.deepcopy(api.doc)
    del doc["paths"][ns.NATIVE]["post"]["responses"]["200"]
    with pytest.raises(AssertionError, match="not documented"):
        ns.OpenApi(doc).check(r)
