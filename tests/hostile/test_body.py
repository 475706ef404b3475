"""Family "body": what arrives is not a usable JSON object (or not JSON at all, or too much of it)."""
import json

import pytest
import requests

from .common import COMPAT, NATIVE, Case, b64, check, health, record, sample_bytes
from .conftest import BODY_LIMIT

FAMILY = "body"
IMAGE = b64(sample_bytes("hopper.jpg"))
GOOD = {"prompt": "person", "image": IMAGE, "return_mask": True}
GOOD_TEXT = json.dumps(GOOD)


def cases():
    c = []

    def add(name, expect, raw=None, body=None, **kw):
        c.append(Case(FAMILY, name, expect, raw=raw, body=body, **kw))

    for path in (COMPAT, NATIVE):
        tag = "compat" if path == COMPAT else "native"
        add(f"{tag}: not JSON (plain text)", 400, raw=b"prompt=person&image=x", path=path)
        add(f"{tag}: not JSON (HTML)", 400, raw=b"<html><body>hi</body></html>", path=path)
        add(f"{tag}: 0 bytes", 400, raw=b"", path=path)
        add(f"{tag}: only whitespace", 400, raw=b"  \r\n\t ", path=path)
        add(f"{tag}: truncated JSON", 400, raw=GOOD_TEXT[: len(GOOD_TEXT) // 2].encode(), path=path)
        add(f"{tag}: truncated JSON (last brace missing)", 400, raw=GOOD_TEXT[:-1].encode(), path=path)
        add(f"{tag}: top-level array", 400, raw=json.dumps([GOOD]).encode(), path=path)
        add(f"{tag}: top-level string", 400, raw=b'"person"', path=path)
        add(f"{tag}: top-level number", 400, raw=b"42", path=path)
        add(f"{tag}: top-level null", 400, raw=b"null", path=path)
        add(f"{tag}: top-level true", 400, raw=b"true", path=path)
        add(f"{tag}: empty object", 400, body={}, path=path, field="prompt")
        add(f"{tag}: deeply nested arrays (100000 levels)", 400, raw=b"[" * 100_000 + b"]" * 100_000, path=path)
        add(f"{tag}: deeply nested objects (5000 levels)", 400, raw=b'{"a":' * 5000 + b"1" + b"}" * 5000, path=path)
        add(f"{tag}: unclosed nesting (50000 '[')", 400, raw=b"[" * 50_000, path=path)
        nested_field = GOOD_TEXT[:-1] + ', "extra": ' + "[" * 200 + "]" * 200 + "}"
        add(f"{tag}: nested 200 levels inside an unknown field", 400, raw=nested_field.encode(), path=path)
        add(f"{tag}: two JSON objects back to back", 400, raw=(GOOD_TEXT + GOOD_TEXT).encode(), path=path)
        add(f"{tag}: trailing garbage after the object", 400, raw=(GOOD_TEXT + " x").encode(), path=path)
        add(f"{tag}: single quotes", 400, raw=GOOD_TEXT.replace('"', "'").encode(), path=path)
        add(f"{tag}: comment inside", 400, raw=GOOD_TEXT.replace("{", "{ /* hi */ ", 1).encode(), path=path)
        add(f"{tag}: trailing comma", 400, raw=(GOOD_TEXT[:-1] + ",}").encode(), path=path)
        add(f"{tag}: UTF-16 encoded body", 400, raw=GOOD_TEXT.encode("utf-16"), path=path)
        add(f"{tag}: UTF-8 BOM before the object", 200, raw=b"\xef\xbb\xbf" + GOOD_TEXT.encode(), path=path)
        add(f"{tag}: NUL byte inside the body", 400, raw=GOOD_TEXT[:10].encode() + b"\0" + GOOD_TEXT[10:].encode(), path=path)
    # Duplicate keys: the last one wins (as Python's json and nlohmann::json do).
    add("duplicate key, last one valid", 200, raw=('{"prompt": 5, ' + GOOD_TEXT[1:]).encode())
    add("duplicate key, last one invalid", 400, raw=(GOOD_TEXT[:-1] + ', "prompt": 5}').encode(), field="prompt")
    add("duplicate key grow_mask, last out of range", 400, raw=(GOOD_TEXT[:-1] + ', "grow_mask": 1, "grow_mask": 500}').encode(),
        field="grow_mask")
    # Size limit (the strict server runs with --max-body-bytes BODY_LIMIT).
    big = json.dumps({"prompt": "person", "image": IMAGE, "padding": "x" * (BODY_LIMIT + 10)}).encode()
    add("body over --max-body-bytes", 413, raw=big)
    add("body over --max-body-bytes (native)", 413, raw=big, path=NATIVE)
    # Both apply; the body is read (under the limit) before the Content-Type is judged, so 413 comes first.
    add("body over --max-body-bytes, no Content-Type", 413, raw=big, headers={})
    under = json.dumps({"prompt": "person", "image": IMAGE, "return_mask": True,
                        "padding": "x" * (BODY_LIMIT - len(GOOD_TEXT) - 200)}).encode()
    add("body just under --max-body-bytes", 200, raw=under)
    # Content-Type
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "text/html", "application/xml",
                  "image/jpeg", "application/octet-stream", "text/json"):
        add(f"Content-Type {ctype}", 415, raw=GOOD_TEXT.encode(), headers={"Content-Type": ctype})
        add(f"Content-Type {ctype} (native)", 415, raw=GOOD_TEXT.encode(), headers={"Content-Type": ctype}, path=NATIVE)
    add("no Content-Type header", 415, raw=GOOD_TEXT.encode(), headers={})
    add("Content-Type application/json; charset=utf-8", 200, raw=GOOD_TEXT.encode(),
        headers={"Content-Type": "application/json; charset=utf-8"})
    add("Content-Type APPLICATION/JSON", 200, raw=GOOD_TEXT.encode(), headers={"Content-Type": "APPLICATION/JSON"})
    add("multipart without any field", 400, raw=b"--b\r\n\r\n--b--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=b"}, path=NATIVE)
    # Routes and methods
    add("GET on the compatible endpoint", 405, raw=b"", method="GET")
    add("PUT on the compatible endpoint", 405, raw=GOOD_TEXT.encode(), method="PUT")
    add("DELETE on the native endpoint", 405, raw=b"", method="DELETE", path=NATIVE)
    add("PATCH on the native endpoint", 405, raw=GOOD_TEXT.encode(), method="PATCH", path=NATIVE)
    add("POST to an unknown path", 404, raw=GOOD_TEXT.encode(), path="/v1/inpaint-mask-makers")
    add("POST to /v9/inpaint-mask-maker", 404, raw=GOOD_TEXT.encode(), path="/v9/inpaint-mask-maker")
    add("GET /../../etc/passwd", 404, raw=b"", method="GET", path="/../../etc/passwd")
    add("GET a path of 2000 characters", 404, raw=b"", method="GET", path="/" + "a" * 2000)
    return c


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_body(strict, case):
    check(strict, case)


def test_body_keep_alive_after_early_answers(strict):
    """Answers given before the body is read (404, 405, 415, 413) must not leave that body on a keep-alive
    connection to be parsed as the next request: the same session then gets the right answer."""
    session = requests.Session()
    body = GOOD_TEXT.encode() + b" " * 20_000
    steps = [("PUT", COMPAT, {"Content-Type": "application/json"}, body, 405),
             ("POST", "/v1/nowhere", {"Content-Type": "application/json"}, body, 404),
             ("POST", COMPAT, {"Content-Type": "text/plain"}, body, 415),
             ("POST", COMPAT, {"Content-Type": "application/x-www-form-urlencoded"}, b"a=" + b"x" * 50_000, 415),
             ("POST", COMPAT, {"Content-Type": "application/json"}, b" " * (BODY_LIMIT + 1), 413),
             ("DELETE", NATIVE, {"Content-Type": "application/json"}, body, 405)]
    for method, path, headers, data, expect in steps:
        r = session.request(method, strict.url + path, data=data, headers=headers, timeout=60)
        ok = r.status_code == expect and r.headers.get("Content-Type", "").startswith("application/json")
        record(FAMILY, f"keep-alive: {method} {path} with a body -> {expect}", expect, r.status_code, ok)
        assert ok, (method, path, r.status_code, r.text[:200])
        r = session.get(strict.url + "/healthz", timeout=30)
        ok = r.status_code == 200 and r.json() == {"status": "ok"}
        record(FAMILY, f"keep-alive: /healthz on the same session after {expect}", 200, r.status_code, ok)
        assert ok, (r.status_code, r.text[:200])


def test_body_health(strict):
    health(strict, FAMILY)
