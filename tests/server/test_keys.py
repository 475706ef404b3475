"""Keys, credits and rate limits (SPEC section 4), and the hosted API's documented Python example (section 1)."""
from __future__ import annotations

import hashlib
import re
import sqlite3
import time

import pytest
import requests

import mm_helpers as h
from test_params import assert_error


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "keys.db"


@pytest.fixture(scope="module")
def keys(db):
    return {
        "open": h.add_key(db, "open"),
        "native-only": h.add_key(db, "native-only", "--endpoints", "/v1/masks"),
    }


@pytest.fixture(scope="module")
def keyed(start_module_server, db, keys):
    return start_module_server("--keys-db", str(db), "--allow-private-urls", name="keys")


@pytest.fixture(scope="module")
def tiny(small_png):
    return {"prompt": "unicorn", "image": h.b64(small_png), "return_mask": True}


def credits_of(r):
    return r.headers.get("x-credits-consumed"), r.headers.get("x-remaining-credits")


# ------------------------------------------------------------------------------------------- keys CLI

def test_keys_add_prints_only_the_key(db):
    out = h.keys_cli(db, "add", "cli-check", "--credits", "7")
    key = out.stdout.strip()
    assert key.startswith("mk_") and len(key) > 20 and out.stdout.count("\n") == 1
    assert key not in out.stderr
    listing = h.keys_cli(db, "list").stdout
    assert "cli-check" in listing and key not in listing and key[:7] in listing


def test_keys_are_stored_hashed(db, keys):
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT * FROM keys").fetchall()
        hashes = {r[0] for r in con.execute("SELECT key_hash FROM keys")}
    finally:
        con.close()
    dump = repr(rows)
    for key in keys.values():
        assert key not in dump
        assert hashlib.sha256(key.encode()).hexdigest() in hashes


def test_keys_cli_errors(db):
    r = h.keys_cli(db, "disable", "no-such-key", check=False)
    assert r.returncode != 0 and "no-such-key" in r.stderr
    r = h.keys_cli(db, "credit", "no-such-key", "5", check=False)
    assert r.returncode != 0
    r = h.keys_cli(db, "frobnicate", check=False)
    assert r.returncode == 2  # usage error


# ------------------------------------------------------------------------------------------- 401, 403

def test_missing_key_is_401(keyed, tiny):
    assert_error(keyed.post(tiny), 401, "missing x-api-key header")
    assert_error(keyed.post(tiny, key=""), 401, "missing x-api-key header")
    assert_error(keyed.post(tiny, path=h.NATIVE), 401, "missing x-api-key header")


def test_unknown_key_is_401(keyed, keys, tiny):
    assert_error(keyed.post(tiny, key="mk_0000"), 401, "unknown API key")
    assert_error(keyed.post(tiny, key=keys["open"] + "x"), 401, "unknown API key")
    assert_error(keyed.post(tiny, key=keys["open"].upper()), 401, "unknown API key")


def test_key_is_checked_before_the_body(keyed):
    assert_error(keyed.post(data=b"{not json", headers={"Content-Type": "application/json"}), 401,
                 "missing x-api-key header")


def test_header_name_is_case_insensitive(keyed, keys, tiny):
    r = keyed.post(tiny, headers={"X-API-KEY": keys["open"]})
    assert r.status_code == 200, r.text


def test_unlimited_key_headers(keyed, keys, tiny):
    r = keyed.post(tiny, key=keys["open"])
    assert r.status_code == 200, r.text
    assert credits_of(r) == ("1", "unlimited")


def test_key_limited_to_other_endpoints_is_403(keyed, keys, tiny):
    assert_error(keyed.post(tiny, key=keys["native-only"]), 403,
                 "this API key is not allowed to call /v1/inpaint-mask-maker")
    r = keyed.post(tiny, key=keys["native-only"], path=h.NATIVE)
    assert r.status_code == 200, r.text


def test_disabled_key_is_403_live(keyed, db, tiny):
    key = h.add_key(db, "to-disable")
    assert keyed.post(tiny, key=key).status_code == 200
    h.keys_cli(db, "disable", "to-disable")
    assert_error(keyed.post(tiny, key=key), 403, "this API key is disabled")
    h.keys_cli(db, "enable", "to-disable")
    assert keyed.post(tiny, key=key).status_code == 200


def test_open_access_server_sends_no_credit_headers(server, tiny):
    r = server.post(tiny, key="anything")
    assert r.status_code == 200
    assert credits_of(r) == (None, None)


def test_log_names_the_key_id_never_the_key(keyed, keys, tiny):
    assert keyed.post(tiny, key=keys["open"]).status_code == 200
    assert keyed.post(tiny, key=keys["open"] + "x").status_code == 401
    time.sleep(0.2)
    log = keyed.log()
    assert re.search(r"request id=\w+ key=\d+ POST /v1/inpaint-mask-maker status=200", log), log[-2000:]
    for key in keys.values():
        assert key not in log
        assert key[3:] not in log


# ------------------------------------------------------------------------------------------- credits, 406

def test_credits_count_down_to_406(keyed, db, tiny):
    key = h.add_key(db, "three", "--credits", "3")
    # a request that fails costs nothing
    assert_error(keyed.post({**tiny, "grow_mask": -1}, key=key), 400)
    assert_error(keyed.post({**tiny, "image": "not base64!"}, key=key), 400)
    seen = []
    for _ in range(3):
        r = keyed.post(tiny, key=key)
        assert r.status_code == 200, r.text
        seen.append(credits_of(r))
    assert seen == [("1", "2"), ("1", "1"), ("1", "0")]
    r = keyed.post(tiny, key=key)
    assert_error(r, 406, "this API key has no credits left")
    assert r.headers.get("x-credits-consumed") in (None, "0")
    # a top-up from the CLI works on the running server
    assert h.keys_cli(db, "credit", "three", "2").stdout.strip() == "2"
    r = keyed.post(tiny, key=key)
    assert r.status_code == 200 and credits_of(r) == ("1", "1")
    # the native endpoint uses the same credits
    r = keyed.post(tiny, key=key, path=h.NATIVE)
    assert r.status_code == 200 and credits_of(r) == ("1", "0")
    assert_error(keyed.post(tiny, key=key, path=h.NATIVE), 406, "this API key has no credits left")
    listing = [line for line in h.keys_cli(db, "list").stdout.splitlines() if " three " in line][0]
    assert listing.split()[3:5] == ["0", "5"]  # credits 0, used 5


def test_zero_credit_key(keyed, db, tiny):
    key = h.add_key(db, "zero", "--credits", "0")
    assert_error(keyed.post(tiny, key=key), 406, "this API key has no credits left")


def test_credits_are_exact_under_concurrency(keyed, db, tiny):
    from concurrent.futures import ThreadPoolExecutor
    key = h.add_key(db, "five", "--credits", "5")
    with ThreadPoolExecutor(10) as pool:
        codes = sorted(pool.map(lambda _: requests.post(keyed.url(h.COMPAT), json=tiny, headers={"x-api-key": key},
                                                        timeout=h.REQUEST_TIMEOUT).status_code, range(10)))
    assert codes == [200] * 5 + [406] * 5


def test_credits_survive_a_restart(start_server, tmp_path, tiny):
    db = tmp_path / "restart.db"
    key = h.add_key(db, "persist", "--credits", "3")
    first = start_server("--keys-db", str(db), name="keys-before-restart")
    for left in ("2", "1"):
        r = first.post(tiny, key=key)
        assert r.status_code == 200 and credits_of(r) == ("1", left), r.text
    assert first.stop() == 0
    second = start_server("--keys-db", str(db), name="keys-after-restart")
    r = second.post(tiny, key=key)
    assert r.status_code == 200 and credits_of(r) == ("1", "0"), r.text
    assert_error(second.post(tiny, key=key), 406, "this API key has no credits left")
    assert second.stop() == 0
    listing = [line for line in h.keys_cli(db, "list").stdout.splitlines() if "persist" in line][0]
    assert listing.split()[3:5] == ["0", "3"]


def test_empty_key_database_refuses_everything(start_server, tmp_path, tiny):
    s = start_server("--keys-db", str(tmp_path / "empty.db"), name="keys-empty")
    assert_error(s.post(tiny, key="mk_whatever"), 401, "unknown API key")
    assert "holds no active key" in s.log()


# ------------------------------------------------------------------------------------------- rate limits, 429

@pytest.fixture(scope="module")
def rated(start_module_server, tmp_path_factory):
    db = tmp_path_factory.mktemp("rate") / "keys.db"
    k = {"a": h.add_key(db, "a", "--credits", "100"), "b": h.add_key(db, "b"),
         "slow": h.add_key(db, "slow", "--rate", "1")}
    # 20 a minute: a token every 3 s, so the test does not depend on how fast the first requests are answered
    s = start_module_server("--keys-db", str(db), "--rate-limit", "20", "--rate-burst", "2", name="rate-limit")
    return s, k


def test_rate_limit_429_with_retry_after(rated, tiny):
    s, k = rated
    bad = {**tiny, "grow_mask": 1000}  # rejected after the key checks: cheap requests that still take a token
    for _ in range(2):
        assert_error(s.post(bad, key=k["a"]), 400)
    r = s.post(tiny, key=k["a"])
    assert r.status_code == 429, r.text
    wait = r.headers["Retry-After"]
    assert wait in ("2", "3")
    assert_error(r, 429, f"rate limit exceeded for this API key: retry in {wait} s")
    # another key has its own bucket
    assert s.post(tiny, key=k["b"]).status_code == 200
    # the 429 cost no credit; after Retry-After the key works again
    time.sleep(int(r.headers["Retry-After"]) + 0.1)
    r = s.post(tiny, key=k["a"])
    assert r.status_code == 200, r.text
    assert credits_of(r) == ("1", "99")


def test_key_rate_overrides_server_rate(rated, tiny):
    s, k = rated
    for _ in range(2):  # the burst
        assert s.post(tiny, key=k["slow"]).status_code == 200
    r = s.post(tiny, key=k["slow"])
    assert r.status_code == 429
    assert 30 <= int(r.headers["Retry-After"]) <= 60  # 1 a minute


# ------------------------------------------------------------------------------------------- the hosted example

def test_hosted_api_python_example(keyed, keys, upstream):
    """The Inpaint Mask Maker documentation's Python example, unchanged but for the URL (and an http:// image URL
    served from 127.0.0.1, allowed by --allow-private-urls)."""
    KEY = keys["open"]
    image_url = upstream.add("horses.jpg", h.sample("darknet_horses.jpg"), "image/jpeg")
    url = keyed.url("/v1/inpaint-mask-maker")

    # ---- as documented ----
    response = requests.post(
        url,
        headers={"x-api-key": KEY, "Content-Type": "application/json"},
        json={
            "prompt": "white horse",
            "image": image_url,
            "invert_mask": False,
            "confidence_thresh": 0.5,
            "iou_thresh": 0.2,
            "return_mask": False,
            "grow_mask": 10,
            "base64": False,
        },
    )
    if response.status_code == 200:
        result = response.content
    else:
        print(response.text)
    # -----------------------

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/jpeg"
    im = h.open_image(result)
    assert im.format == "JPEG" and im.size == (773, 512)
    assert int(response.headers["X-Detections"]) >= 1
    assert response.headers["x-credits-consumed"] == "1"


# ------------------------------------------------------------------------------------------- cache scope

def test_cache_entries_are_not_shared_between_keys(keyed, keys, db):
    """The per-image caches are scoped by API key: another key sending the same image is a miss (a fast, cached
    answer would tell it that someone sent this image before), its own repeat a hit."""
    from test_ops import metric

    other = h.add_key(db, "cache-scope")
    body = {"prompt": "person", "image": h.b64(h.png_bytes(61, 47, (9, 99, 199))), "return_mask": True}

    def detections(event):
        return metric(keyed.get("/metrics").text, "maskmaker_cache_events_total", cache="detections", event=event)

    seen = []
    for key in (keys["open"], keys["open"], other, other):
        hit, miss = detections("hit"), detections("miss")
        r = keyed.post(body, key=key)
        assert r.status_code == 200, r.text[:300]
        seen.append((detections("hit") - hit, detections("miss") - miss))
    assert seen == [(0, 1), (1, 0), (0, 1), (1, 0)], seen
