"""Image URLs (SPEC section 1): fetched from a local HTTP server on 127.0.0.1. Allowed with --allow-private-urls,
refused (400) without; redirects re-checked at every hop; 413 over --fetch-max-bytes; 502 when the URL cannot
be fetched; 504 past --fetch-timeout-ms."""
from __future__ import annotations

import time

import numpy as np
import pytest

import mm_helpers as h
from test_params import assert_error

FETCH_MAX = 60_000
FETCH_TIMEOUT_MS = 700


@pytest.fixture(scope="module")
def private(start_module_server):
    """A server that may fetch from 127.0.0.1, with small fetch limits."""
    return start_module_server("--allow-private-urls", "--fetch-timeout-ms", str(FETCH_TIMEOUT_MS),
                               "--fetch-max-bytes", str(FETCH_MAX), name="private-urls")


@pytest.fixture(scope="module")
def images(upstream):
    photo = h.open_image(h.png_bytes(64, 40, (10, 200, 30)))
    return {
        "png": upstream.add("small.png", h.encode(photo, "PNG"), "image/png"),
        "jpeg": upstream.add("small.jpg", h.encode(photo, "JPEG"), "image/jpeg"),
        # the Content-Type the host sends does not matter: the bytes are sniffed
        "mislabelled": upstream.add("mislabelled.bin", h.encode(photo, "PNG"), "text/html"),
        "text": upstream.add("page.html", b"<html><body>not an image</body></html>", "text/html"),
        "big": upstream.add("big.png", np.random.default_rng(1).integers(0, 255, FETCH_MAX + 1, np.uint8)
                            .tobytes(), "image/png"),
        "exact": upstream.add("exact.png", h.png_bytes(64, 40) + b"\0" * (FETCH_MAX - len(h.png_bytes(64, 40))),
                              "image/png"),
    }


def req(url, **kw):
    return {"prompt": "unicorn", "image": url, "return_mask": True, **kw}


# ------------------------------------------------------------------------------------------- allowed / refused

@pytest.mark.parametrize("kind", ["png", "jpeg", "mislabelled"])
def test_private_url_allowed_with_flag(private, images, kind):
    r = private.post(req(images[kind]))
    assert r.status_code == 200, r.text
    assert h.open_image(r.content).size == (64, 40)


def test_annotated_output_of_a_fetched_jpeg_is_jpeg(private, images):
    r = private.post(req(images["jpeg"], return_mask=False))
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"


def test_private_url_refused_without_flag(server, upstream, images):
    hits = len(upstream.hits)
    msg = assert_error(server.post(req(images["png"])), 400)
    assert msg == ("image URL host '127.0.0.1' resolves to a forbidden address (loopback); private URLs are not "
                   "allowed on this server")
    assert len(upstream.hits) == hits  # refused before any connection


def test_localhost_name_refused_without_flag(server, upstream):
    msg = assert_error(server.post(req(f"http://localhost:{upstream.port}/file/small.png")), 400)
    assert "forbidden address (loopback)" in msg


def test_ipv6_literal_urls(private, upstream, images):
    """IPv6 literals: the IPv4-mapped form reaches the IPv4 upstream; [::1] an IPv6 one (where there is ::1)."""
    r = private.post(req(f"http://[::ffff:127.0.0.1]:{upstream.port}/file/small.png"))
    assert r.status_code == 200, r.text
    try:
        v6 = h.Upstream("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        v6.add("small.png", h.png_bytes(20, 10))
        r = private.post(req(v6.url("/file/small.png")))
        assert r.status_code == 200, r.text
        assert h.open_image(r.content).size == (20, 10)
    finally:
        v6.close()


def test_fetched_text_is_unsupported_format(private, images):
    assert_error(private.post(req(images["text"])), 400,
                 "unsupported image format: expected JPEG, PNG, WebP, BMP, GIF or TIFF")


# ------------------------------------------------------------------------------------------- redirects

def test_redirect_followed_when_allowed(private, upstream, images):
    r = private.post(req(upstream.url("/redirect?to=/file/small.png")))
    assert r.status_code == 200, r.text
    r = private.post(req(upstream.url("/redirect?to=" + images["jpeg"])))
    assert r.status_code == 200, r.text


def test_redirect_to_other_scheme_refused(private, upstream):
    for target in ("file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1:70/"):
        msg = assert_error(private.post(req(upstream.url("/redirect?to=" + target))), 400)
        assert msg == f"image URL scheme '{target.split(':')[0]}' is not allowed: use http or https", msg


def test_redirect_loop_is_502(private, upstream):
    assert_error(private.post(req(upstream.url("/loop/0"))), 502, "the image URL redirected more than 5 times")


def test_redirect_to_private_address_refused(server):
    """The guard is applied to every hop: a URL on an address the guard accepts that redirects to loopback is
    refused. Needs an address of this machine that the guard accepts (not loopback/private/link-local)."""
    addr = h.local_unguarded_address()
    if addr is None:
        pytest.skip("this machine has no non-private address to serve the first hop from")
    outer = h.Upstream(addr)
    inner = h.Upstream("127.0.0.1")
    try:
        inner.add("small.png", h.png_bytes(20, 10))
        outer.add("small.png", h.png_bytes(20, 10))
        # control: the first hop alone is allowed on the strict server
        ok = server.post(req(outer.url("/file/small.png")))
        assert ok.status_code == 200, ok.text
        for target in (inner.url("/file/small.png"), f"http://localhost:{inner.port}/file/small.png",
                       "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png"):
            r = server.post(req(outer.url("/redirect?to=" + target)))
            msg = assert_error(r, 400)
            assert "resolves to a forbidden address" in msg, msg
        assert not inner.hits  # the private server was never contacted
    finally:
        outer.close()
        inner.close()


# ------------------------------------------------------------------------------------------- 413, 502, 504

def test_fetched_image_over_limit_is_413(private, images):
    assert_error(private.post(req(images["big"])), 413,
                 f"the image at the URL is larger than the limit of {FETCH_MAX} bytes")


def test_fetched_image_over_limit_without_content_length_is_413(private, upstream, images):
    assert_error(private.post(req(upstream.url("/nolength/big.png"))), 413,
                 f"the image at the URL is larger than the limit of {FETCH_MAX} bytes")


def test_fetched_image_at_limit_is_accepted(private, upstream, images):
    r = private.post(req(upstream.url("/nolength/exact.png")))
    assert r.status_code == 200, r.text
    r = private.post(req(images["exact"]))
    assert r.status_code == 200, r.text


def test_inline_image_over_fetch_limit_is_413(private):
    blob = np.random.default_rng(2).integers(0, 255, FETCH_MAX + 1, np.uint8).tobytes()
    for image in (h.b64(blob), "data:image/png;base64," + h.b64(blob)):
        assert_error(private.post(req(image)), 413, f"image is larger than the limit of {FETCH_MAX} bytes")


@pytest.mark.parametrize("path", ["/v1/inpaint-mask-maker", "/v1/masks", "/v2/inpaint-mask-maker"])
def test_uploaded_image_over_fetch_limit_is_413_as_inline(private, path):
    """An upload is an inline image like base64: the same limit and the same 413 on every endpoint."""
    blob = h.png_bytes(64, 40) + b"\0" * (FETCH_MAX + 1 - len(h.png_bytes(64, 40)))
    r = private.post(data={"prompt": "unicorn"}, files={"image": ("big.png", blob, "image/png")}, path=path)
    assert_error(r, 413, f"image is larger than the limit of {FETCH_MAX} bytes")
    exact = blob[:FETCH_MAX]
    r = private.post(data={"prompt": "unicorn"}, files={"image": ("exact.png", exact, "image/png")}, path=path)
    assert r.status_code in (200, 202), r.text


@pytest.mark.parametrize("code", [404, 403, 410, 500, 503])
def test_upstream_error_status_is_502(private, upstream, code):
    assert_error(private.post(req(upstream.url(f"/status/{code}"))), 502, f"the image URL answered HTTP {code}")


def test_connection_refused_is_502(private):
    port = h.closed_port()
    msg = assert_error(private.post(req(f"http://127.0.0.1:{port}/x.png")), 502)
    assert msg.startswith("cannot fetch the image URL: "), msg


def test_unresolvable_host_is_502(private):
    t = time.monotonic()
    r = private.post(req("http://no-such-host.invalid/x.png"), timeout=60)
    if time.monotonic() - t > 20:
        pytest.skip("the resolver here is too slow to answer for .invalid")
    assert_error(r, 502, "cannot resolve the image URL's host 'no-such-host.invalid'")


def test_slow_upstream_is_504(private, upstream):
    t = time.monotonic()
    r = private.post(req(upstream.url("/slow?s=3")))
    elapsed = time.monotonic() - t
    assert_error(r, 504, "fetching the image URL timed out")
    assert elapsed < 2.5, elapsed  # cut at --fetch-timeout-ms (700 ms), not after the upstream's 3 s


def test_server_still_serves_after_fetch_errors(private, images):
    r = private.post(req(images["png"]))
    assert r.status_code == 200, r.text
