"""Error statuses of SPEC section 1 that need no keys and no image host: 400, 404, 405, 413, 415, and the JSON
error body `{"error": ...}` they all share."""
from __future__ import annotations

import gzip
import json
import re
import socket
import struct
import zlib

import pytest

import mm_helpers as h
from test_params import assert_error

UNSUPPORTED = "unsupported image format: expected JPEG, PNG, WebP, BMP, GIF or TIFF"


def req(image, **kw):
    return {"prompt": "unicorn", "image": image, **kw}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


# ------------------------------------------------------------------------------------------- 400: the body

@pytest.mark.parametrize("raw,message", [
    ("{", "request body is not valid JSON"),
    ('{"prompt": "dog", "image": "x",}', "request body is not valid JSON"),
    ("{'prompt': 'dog'}", "request body is not valid JSON"),
    ('{"prompt": "dog"} trailing', "request body is not valid JSON"),
    ("NaN", "request body is not valid JSON"),
    ("", "request body is empty: send a JSON object"),
    ("[]", "request body must be a JSON object"),
    ('["prompt", "image"]', "request body must be a JSON object"),
    ('"prompt"', "request body must be a JSON object"),
    ("42", "request body must be a JSON object"),
    ("null", "request body must be a JSON object"),
    ("[" * 40 + "]" * 40, "request body is nested deeper than 32 levels"),
    ('{"prompt": "dog", "image": "x", "deep": ' + "[" * 33 + "]" * 33 + "}",
     "request body is nested deeper than 32 levels"),
])
def test_malformed_body(server, raw, message):
    r = server.post(data=raw.encode(), headers={"Content-Type": "application/json"})
    assert_error(r, 400, message)


def test_invalid_utf8_is_a_400(server):
    r = server.post(data=b'{"prompt": "\xff\xfe", "image": "x"}', headers={"Content-Type": "application/json"})
    assert_error(r, 400, "request body is not valid JSON")


def test_brackets_inside_strings_do_not_count_as_nesting(server, small_png):
    r = server.post(req(h.b64(small_png), note="[" * 100 + "{" * 100))
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------------- 400: the image

@pytest.mark.parametrize("image,message", [
    ("not base64 at all!", "image is neither an http(s) URL, a data URI nor valid base64"),
    ("====", "image is neither an http(s) URL, a data URI nor valid base64"),
    ("A", "image is neither an http(s) URL, a data URI nor valid base64"),
    ("data:image/png;base64", "image data URI has no ',' before its data"),
    ("data:image/png,iVBORw0KGgo=", "image data URI must be base64-encoded (data:image/...;base64,...)"),
    ("data:image/png;base64,@@@@", "image data URI does not hold valid base64"),
    (h.b64(b"hello world, this is text"), UNSUPPORTED),
    (h.b64(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), UNSUPPORTED),
    (h.b64(b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>"), UNSUPPORTED),
    ("data:image/png;base64,", "image is empty (0 bytes)"),
])
def test_image_field_errors(server, image, message):
    assert_error(server.post(req(image)), 400, message)


def test_truncated_image_is_a_400(server):
    data = h.encode(h.open_image(h.png_bytes(64, 64)).convert("RGB"), "JPEG")
    for broken in (data[: len(data) // 2], h.png_bytes(300, 200, (1, 2, 3))[:60]):
        msg = assert_error(server.post(req(h.b64(broken))), 400)
        assert re.search(r"truncated|corrupt|cannot read the", msg), msg


def test_zero_sized_image_is_a_400(server):
    msg = assert_error(server.post(req(h.b64(png_header_only(0, 10)))), 400)
    assert "zero width or height" in msg or "cannot read" in msg


def test_pixel_limit_default_is_read_from_the_header(server):
    # 10000 x 10000 = 1e8 pixels, over the default 5e7: refused from the header, before any decoding
    assert_error(server.post(req(h.b64(png_header_only(10000, 10000)))), 400,
                 "image is 10000x10000 = 100000000 pixels, over the limit of 50000000")


@pytest.mark.parametrize("scheme", ["file:///etc/passwd", "ftp://example.com/a.jpg", "gopher://example.com/",
                                    "ssh://example.com/", "dict://127.0.0.1:11211/stat"])
def test_url_schemes_other_than_http_are_refused(server, scheme):
    name = scheme.split(":")[0]
    assert_error(server.post(req(scheme)), 400,
                 f"image URL scheme '{name}' is not allowed: use http(s), a data URI or base64")


@pytest.mark.parametrize("url,reason", [
    ("http://127.0.0.1:9/a.jpg", "loopback"),
    ("http://127.1.2.3/a.jpg", "loopback"),
    ("http://localhost:9/a.jpg", "loopback"),
    ("http://[::1]:9/a.jpg", "loopback"),
    ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
    ("http://0.0.0.0/a.jpg", "unspecified/this-network"),
    ("http://10.1.2.3/a.jpg", "private"),
    ("http://172.16.5.4/a.jpg", "private"),
    ("http://192.168.1.1/a.jpg", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://169.254.1.1/a.jpg", "link-local"),
    ("http://[fe80::1]/a.jpg", "link-local"),
    ("http://[fd00::1]/a.jpg", "private (unique local)"),
    ("http://100.64.0.1/a.jpg", "shared/carrier-grade NAT"),
    ("http://2130706433/a.jpg", "loopback"),  # 127.0.0.1 as one number
    ("http://0x7f.0.0.1/a.jpg", "loopback"),
    ("HTTP://127.0.0.1/a.jpg", "loopback"),
    ("https://127.0.0.1/a.jpg", "loopback"),
])
def test_forbidden_addresses_are_refused(server, url, reason):
    msg = assert_error(server.post(req(url)), 400)
    assert f"resolves to a forbidden address ({reason}); private URLs are not allowed on this server" in msg, msg


def test_invalid_url_is_a_400(server):
    assert_error(server.post(req("http://")), 400, "image URL is not a valid URL")


# ------------------------------------------------------------------------------------------- 404, 405, 415

@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("POST", "/nope"), ("GET", "/v1"),
                                         ("POST", "/v1/inpaint-mask-maker/extra"), ("GET", "/v2/masks"),
                                         ("DELETE", "/nothing"), ("GET", "/missing.js")])
def test_unknown_path_is_a_json_404(server, method, path):
    r = server.session.request(method, server.url(path), json={"a": 1}, timeout=30)
    assert_error(r, 404)
    assert path in r.json()["error"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", [h.COMPAT, h.NATIVE])
def test_wrong_method_on_api_is_405_with_allow(server, method, path):
    r = server.session.request(method, server.url(path), timeout=30)
    assert_error(r, 405, f"method {method} is not allowed on {path}; allowed: POST, OPTIONS")
    assert r.headers["Allow"] == "POST, OPTIONS"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_wrong_method_on_operations_is_405(server, path):
    r = server.session.post(server.url(path), json={}, timeout=30)
    assert_error(r, 405, f"method POST is not allowed on {path}; allowed: GET, HEAD")
    assert r.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "image/png",
                                   "application/xml", "text/json"])
def test_non_json_content_type_is_415(server, small_png, ctype):
    raw = json.dumps(req(h.b64(small_png)))
    r = server.post(data=raw, headers={"Content-Type": ctype})
    assert_error(r, 415, f"Content-Type must be application/json or multipart/form-data, not '{ctype}'")


def test_missing_content_type_is_415(server, small_png):
    r = server.post(data=json.dumps(req(h.b64(small_png))).encode())
    assert "Content-Type" not in r.request.headers
    assert_error(r, 415, "Content-Type must be application/json or multipart/form-data, not '(none)'")


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON",
                                   "application/vnd.api+json"])
def test_json_content_types_are_accepted(server, small_png, ctype):
    r = server.post(data=json.dumps(req(h.b64(small_png))), headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------------- 413 and --max-pixels

@pytest.fixture(scope="module")
def limited(start_module_server):
    return start_module_server("--max-body-bytes", "4096", "--max-pixels", "10000", name="limits")


BODY_413 = "request body is larger than the server's limit of 4096 bytes"


def test_body_over_limit_is_413(limited):
    big = json.dumps(req("A" * 5000))
    r = limited.post(data=big, headers={"Content-Type": "application/json"})
    msg = assert_error(r, 413)
    assert msg.startswith(BODY_413)
    # and the server still answers after it
    assert limited.get("/healthz").status_code == 200


def test_body_far_over_limit_is_413_not_a_reset(limited):
    big = json.dumps(req("A" * 3_000_000))
    r = limited.post(data=big, headers={"Content-Type": "application/json"})
    assert_error(r, 413)


def test_body_at_limit_is_accepted(limited, small_png):
    base = json.dumps(req(h.b64(small_png), pad=""))
    raw = base.replace('"pad": ""', '"pad": "' + "x" * (4096 - len(base)) + '"')
    assert len(raw) == 4096
    r = limited.post(data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_chunked_body_over_limit_is_413(limited, small_png):
    # no Content-Length: the limit must hold for chunked transfer encoding too
    raw = json.dumps(req(h.b64(small_png) + "\n" * 20000)).encode()

    def chunks():
        for i in range(0, len(raw), 1000):
            yield raw[i:i + 1000]

    r = limited.post(data=chunks(), headers={"Content-Type": "application/json"})
    msg = assert_error(r, 413)
    assert msg.startswith(BODY_413)


def test_chunked_body_under_limit_is_accepted(limited, small_png):
    raw = json.dumps(req(h.b64(small_png))).encode()
    r = limited.post(data=iter([raw[:50], raw[50:]]), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_compressed_body_limit_applies_to_the_decompressed_size(limited, small_png):
    # 40 kB of JSON gzipped to a few hundred bytes: a decompression bomb must not get past the body limit
    raw = json.dumps(req(h.b64(small_png) + "\n" * 40000)).encode()
    gz = gzip.compress(raw)
    assert len(gz) < 4096
    r = limited.post(data=gz, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    msg = assert_error(r, 413)
    assert msg.startswith(BODY_413)


def test_compressed_body_under_limit_is_accepted(limited, small_png):
    raw = json.dumps(req(h.b64(small_png))).encode()
    r = limited.post(data=gzip.compress(raw), headers={"Content-Type": "application/json",
                                                        "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text


def test_deflate_body_is_accepted(limited, small_png):
    raw = json.dumps(req(h.b64(small_png))).encode()
    r = limited.post(data=zlib.compress(raw), headers={"Content-Type": "application/json",
                                                        "Content-Encoding": "deflate"})
    assert r.status_code == 200, r.text


def test_undecodable_compressed_body_is_400(server):
    r = server.post(data=b"this is not gzip data", headers={"Content-Type": "application/json",
                                                            "Content-Encoding": "gzip"})
    assert_error(r, 400, "the request body could not be read (truncated, or a bad chunked or Content-Encoding "
                         "framing)")
    assert server.get("/healthz").status_code == 200


def test_pixel_limit_flag(limited):
    assert_error(limited.post(req(h.b64(h.png_bytes(101, 100)))), 400,
                 "image is 101x100 = 10100 pixels, over the limit of 10000")
    r = limited.post(req(h.b64(h.png_bytes(100, 100)), return_mask=True))
    assert r.status_code == 200, r.text


def test_413_on_unknown_path_with_chunked_body_does_not_buffer_it(limited):
    # A chunked body to an unknown path: the server answers 404 (or 413) and does not read megabytes first.
    s = socket.create_connection(("127.0.0.1", limited.port), timeout=10)
    try:
        s.sendall(b"POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
        sent = 0
        try:
            for _ in range(200):  # up to 13 MB
                s.sendall(chunk)
                sent += 1
        except OSError:
            pass
        s.settimeout(10)
        head = b""
        try:
            while b"\r\n" not in head:
                d = s.recv(4096)
                if not d:
                    break
                head += d
        except OSError:
            pass
        assert head.startswith(b"HTTP/1.1 404") or head.startswith(b"HTTP/1.1 413"), head[:100]
    finally:
        s.close()
