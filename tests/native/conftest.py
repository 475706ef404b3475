"""Fixtures for tests/native: the native API (/v1/masks), multipart uploads, the OpenAPI document against live
answers, the Python client (clients/python, imported from its src folder), and `maskmaker run --output`.

- `srv`: one open-access server for the session; its `session` validates every answer against /openapi.json;
- `api`: that document, as a validator;
- `photo_png`: the sample photo as PNG (exact pixels: the cutout's colours can be compared), and `photo_rgb`;
- `base`: the reference answer every photo test compares with: "dog, horse, person" at confidence 0.3,
  grow_mask 0, RLE masks, output mask.
"""
from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import native_support as ns  # noqa: E402

PROMPT = ns.PROMPT


@pytest.fixture(scope="session")
def srv():
    try:
        s = ns.Server(name="native")
    except RuntimeError as e:
        pytest.fail(str(e))
    r = s.get("/openapi.json")
    assert r.status_code == 200, r.text
    s.api = ns.OpenApi(r.json())
    s.session = ns.checked_session(s.api)
    yield s
    rc = s.stop()
    assert rc == 0, f"maskmaker serve exited with {rc} on SIGTERM:\n{s.log()[-4000:]}"


@pytest.fixture(scope="session")
def api(srv) -> ns.OpenApi:
    return srv.api


@pytest.fixture(scope="session")
def photo_rgb():
    path = ns.SAMPLES / ns.PHOTO
    if not path.is_file():
        pytest.skip(f"sample photo {path} is missing (set MASKMAKER_SHARED)")
    return ns.np.asarray(ns.Image.open(path).convert("RGB")).copy()


@pytest.fixture(scope="session")
def photo_png(photo_rgb) -> bytes:
    return ns.encode(ns.Image.fromarray(photo_rgb), "PNG", compress_level=1)


@pytest.fixture(scope="session")
def base(srv, photo_png) -> dict:
    """The reference answer, with the union mask of the output image decoded (`mask_png`)."""
    r = srv.post({"prompt": PROMPT, "image": ns.b64(photo_png), "confidence_thresh": 0.3, "grow_mask": 0})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["output"] == "mask" and j["image_content_type"] == "image/png"
    j["mask_png"] = ns.mask_array(base64.b64decode(j["image"]))
    j["headers"] = dict(r.headers)
    return j


@pytest.fixture(scope="session")
def strict(tmp_path_factory, api):
    """A second server: keys (`keys`: name -> key; `db`), private URLs allowed, 0.5 s fetch timeout, 300 kB bodies,
    bursts of one. Its session validates answers against the document too."""
    db = tmp_path_factory.mktemp("keys") / "keys.db"
    keys = {
        "ok": ns.keys_cli(db, "add", "ok", "--credits", "100"),
        "empty": ns.keys_cli(db, "add", "empty", "--credits", "0"),
        "off": ns.keys_cli(db, "add", "off"),
        "native": ns.keys_cli(db, "add", "native", "--endpoints", ns.NATIVE),
        "slow": ns.keys_cli(db, "add", "slow", "--rate", "1"),
    }
    ns.keys_cli(db, "disable", "off")
    try:
        s = ns.Server("--keys-db", str(db), "--allow-private-urls", "--fetch-timeout-ms", "500",
                      "--max-body-bytes", "300000", "--rate-burst", "1", name="native-strict", wait_ready=False)
    except RuntimeError as e:
        pytest.fail(str(e))
    s.session = ns.checked_session(api)
    # Right after the start the models are loading: 503 with Retry-After (if this machine loads them faster than
    # one request, the answer is what a request without a key gets: 401; both are checked against the document).
    tiny = ns.encode(ns.Image.new("RGB", (64, 40), (90, 140, 200)), "PNG")
    r = s.post({"prompt": "dog", "image": ns.b64(tiny)}, path=ns.COMPAT)
    assert r.status_code in (503, 401), r.text
    s.wait_ready()
    s.keys = keys
    s.db = db
    yield s
    rc = s.stop()
    assert rc == 0, s.log()[-3000:]
