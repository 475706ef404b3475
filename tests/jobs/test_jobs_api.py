"""The v2 submit-and-poll contract against the real binary: results equal the synchronous endpoint's, failures,
ownership, validation at submit, URLs, methods, credits, 100 jobs at once with synchronous priority, metrics."""
from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

import jobs_helpers as h


def test_bus_result_equals_the_synchronous_answer(main, keys):
    key = keys["alice"]
    body = {"prompt": "bus", "image": h.b64(h.sample("bus.jpg")), "return_mask": True, "grow_mask": 5}
    r = main.submit(body, key)
    assert r.status_code == 200, r.text
    sub = r.json()
    rid = sub["request_id"]
    assert len(rid) == 32
    assert sub["status_url"] == main.url(f"/v2/requests/{rid}/status")
    assert sub["response_url"] == main.url(f"/v2/requests/{rid}")

    first = requests.get(sub["status_url"], headers={"x-api-key": key}, timeout=30)
    assert first.status_code == 200 and first.json()["status"] in ("QUEUED", "PROCESSING", "COMPLETED")
    pending = requests.get(sub["response_url"], headers={"x-api-key": key}, timeout=30)
    if pending.json()["status"] != "COMPLETED":
        assert pending.status_code == 202, pending.text

    assert main.wait_status(rid, key)["status"] == "COMPLETED"
    done = requests.get(sub["response_url"], headers={"x-api-key": key}, timeout=30)
    assert done.status_code == 200
    j = done.json()
    assert j["status"] == "COMPLETED" and j["request_id"] == rid
    out = j["output"]
    assert out["content_type"] == "image/png"
    assert out["detections"] >= 1 and out["unmatched"] == []
    assert len(out["instances"]) == out["detections"]
    inst = out["instances"][0]
    assert inst["phrase"] == "bus" and 0.5 <= inst["score"] <= 1 and len(inst["box"]) == 4
    for k in ("queue_time_ms", "inference_time_ms", "total_time_ms", "fetch_time_ms"):
        assert j["metrics"][k] >= 0
    assert j["metrics"]["inference_time_ms"] > 0
    assert j["metrics"]["remaining_credits"] == 999  # the credit is taken when the job completes

    mask = base64.b64decode(out["image"])
    sync = main.sync(body, key)
    assert sync.status_code == 200 and sync.headers["Content-Type"] == "image/png"
    assert mask == sync.content  # the same bytes as the synchronous endpoint
    assert int(sync.headers["X-Detections"]) == out["detections"]
    assert sync.headers["x-remaining-credits"] == "998"
    im = Image.open(io.BytesIO(mask))
    assert im.mode == "L" and im.size == (810, 1080)

    # the status stays COMPLETED and readable
    st = main.status(rid, key)
    assert st.status_code == 200 and st.json() == {"request_id": rid, "status": "COMPLETED"}


def test_annotated_and_base64_flag(main, keys):
    key = keys["bob"]
    small = io.BytesIO()
    Image.open(io.BytesIO(h.sample("bus.jpg"))).resize((270, 360)).save(small, "JPEG", quality=90)
    body = {"prompt": "bus, unicorn", "image": h.b64(small.getvalue()), "base64": True}
    rid = main.submit(body, key).json()["request_id"]
    assert main.wait_status(rid, key)["status"] == "COMPLETED"
    out = main.result(rid, key).json()["output"]
    assert out["content_type"] == "image/jpeg"
    sync = main.sync(body, key).json()  # base64: true answers JSON; its image is the job's image
    assert out["image"] == sync["image"]
    assert out["detections"] == sync["detections"]
    assert out.get("unmatched") == sync.get("unmatched", [])


def test_fetch_failure_is_a_failed_job(main, keys, upstream):
    key = keys["alice"]
    r = main.submit({"prompt": "bus", "image": upstream.url("/status/404")}, key)
    assert r.status_code == 200, r.text
    rid = r.json()["request_id"]
    st = main.wait_status(rid, key)
    assert st["status"] == "FAILED"
    s = main.status(rid, key)
    assert s.status_code == 422
    assert s.json() == {"request_id": rid, "status": "FAILED", "error": "the image URL answered HTTP 404"}
    res = main.result(rid, key)
    assert res.status_code == 422 and res.json() == s.json()


def test_a_url_image_completes(main, keys, upstream):
    key = keys["bob"]
    url = upstream.url("/file/" + "tiny.png")
    upstream.files["tiny.png"] = h.png(3)
    rid = main.submit({"prompt": "dog", "image": url, "return_mask": True}, key).json()["request_id"]
    assert main.wait_status(rid, key)["status"] == "COMPLETED"
    j = main.result(rid, key).json()
    assert j["metrics"]["fetch_time_ms"] > 0
    assert Image.open(io.BytesIO(base64.b64decode(j["output"]["image"]))).size == (64, 64)


def test_only_the_submitting_key_reads_a_job(main, keys):
    rid = main.submit({"prompt": "cat", "image": h.b64(h.png(1))}, keys["alice"]).json()["request_id"]
    main.wait_status(rid, keys["alice"])
    unknown = main.status("0" * 32, keys["bob"])
    assert unknown.status_code == 404
    for get in (main.status, main.result):
        other = get(rid, keys["bob"])
        assert other.status_code == 404
        # the same answer as an id that does not exist: ids cannot be probed
        assert other.json()["error"] == unknown.json()["error"].replace("0" * 32, rid)
    assert main.status(rid, None).status_code == 401
    assert main.status(rid, "mk_nope").status_code == 401
    assert main.status(rid, keys["alice"]).status_code == 200


def test_validation_errors_answer_the_submit(main, keys, upstream):
    key = keys["alice"]
    img = h.b64(h.png(2))
    cases = [
        ({"image": img}, 400, "prompt is required"),
        ({"prompt": "dog", "image": img, "confidence_thresh": 2}, 400, "confidence_thresh"),
        ({"prompt": "dog", "image": img, "grow_mask": 1.5}, 400, "grow_mask"),
        ({"prompt": "dog", "image": "ftp://example.com/a.png"}, 400, "scheme 'ftp' is not allowed"),
        ({"prompt": "dog", "image": "%%%"}, 400, "neither an http(s) URL"),
        ({"prompt": "dog", "image": h.b64(b"hello, not an image")}, 400, "unsupported image format"),
        ({"prompt": "dog", "image": img, "webhook_url": 12}, 400, "webhook_url must be a string"),
        ({"prompt": "dog", "image": img, "webhook_url": "ftp://x.example/"}, 400, "webhook_url must be an http(s) URL"),
    ]
    for body, status, message in cases:
        r = main.submit(body, key)
        assert r.status_code == status, (body, r.text)
        assert message in r.json()["error"], (body, r.text)
    assert main.submit({"prompt": "dog", "image": img}, None).status_code == 401
    assert main.submit({"prompt": "dog", "image": img}, "mk_unknown").status_code == 401
    r = main.submit({"prompt": "dog", "image": img}, keys["broke"])
    assert r.status_code == 406, r.text
    r = requests.post(main.url(h.SUBMIT), data="prompt=dog", headers={"x-api-key": key,
                                                                       "Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 415
    r = requests.post(main.url(h.SUBMIT), data="{not json", headers={"x-api-key": key,
                                                                      "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


def test_guarded_server_refuses_private_urls_at_submit(start_server, tmp_path, upstream, receiver):
    s = start_server("--jobs-db", str(tmp_path / "jobs.db"), "--public-url", "https://masks.example.com/base/",
                     name="guarded")
    img = h.b64(h.png(4))
    r = s.submit({"prompt": "dog", "image": upstream.url("/file/x.png")})
    assert r.status_code == 400
    assert "forbidden address (loopback)" in r.json()["error"]
    r = s.submit({"prompt": "dog", "image": img, "webhook_url": receiver.url("/hook")})
    assert r.status_code == 400 and "webhook_url host '127.0.0.1' resolves to a forbidden address" in r.json()["error"]
    # open access: no key needed; --public-url makes the URLs
    r = s.submit({"prompt": "dog", "image": img})
    assert r.status_code == 200, r.text
    rid = r.json()["request_id"]
    assert r.json()["status_url"] == f"https://masks.example.com/base/v2/requests/{rid}/status"
    assert r.json()["response_url"] == f"https://masks.example.com/base/v2/requests/{rid}"
    assert s.wait_status(rid, None)["status"] == "COMPLETED"
    assert s.result(rid).status_code == 200


def test_urls_follow_the_host_header(main, keys):
    img = h.b64(h.png(5))
    r = main.submit({"prompt": "dog", "image": img}, keys["bob"], headers={"Host": "masks.example.org:8443"})
    rid = r.json()["request_id"]
    assert r.json()["status_url"] == f"http://masks.example.org:8443/v2/requests/{rid}/status"
    r = main.submit({"prompt": "dog", "image": img}, keys["bob"],
                    headers={"Host": "internal:8080", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.org"})
    rid = r.json()["request_id"]
    assert r.json()["response_url"] == f"https://api.example.org/v2/requests/{rid}"


def test_methods_and_unknown_paths(main, keys):
    r = requests.get(main.url(h.SUBMIT), timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "POST, OPTIONS"
    r = requests.post(main.url("/v2/requests/abc"), json={}, timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, OPTIONS"
    r = requests.delete(main.url("/v2/requests/abc/status"), timeout=30)
    assert r.status_code == 405
    r = requests.options(main.url("/v2/requests/abc"), timeout=30)
    assert r.status_code == 204 and "x-api-key" in r.headers["Access-Control-Allow-Headers"]
    assert requests.get(main.url("/v2/requests/abc/other"), timeout=30).status_code == 404
    assert requests.get(main.url("/v2/requests/"), timeout=30).status_code == 404
    r = main.status("f" * 32, keys["alice"])
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    assert requests.head(main.url("/v2/requests/abc"), headers={"x-api-key": keys["alice"]}, timeout=30).status_code == 404


def test_credits_are_reserved_at_submit_and_given_back_when_a_job_fails(main, keys, upstream):
    key = h.add_key(keys["db"], "two-credits", 2)
    # A credit is taken when a job is accepted: a key cannot queue more jobs than it can pay for.
    rids = [main.submit({"prompt": "dog", "image": h.b64(h.png(10 + i))}, key) for i in range(2)]
    assert [r.status_code for r in rids] == [200, 200], [r.text for r in rids]
    r = main.submit({"prompt": "dog", "image": h.b64(h.png(12))}, key)
    assert r.status_code == 406 and "no credits left" in r.json()["error"], r.text
    finals = [main.wait_status(r.json()["request_id"], key) for r in rids]
    assert [f["status"] for f in finals] == ["COMPLETED", "COMPLETED"]
    assert main.result(rids[1].json()["request_id"], key).json()["metrics"]["remaining_credits"] == 0

    # A job that fails gives its credit back (once): the key can submit again, and only once.
    one = h.add_key(keys["db"], "one-credit", 1)
    before = h.metric(main.metrics(), 'maskmaker_jobs_total{event="refunded"}')
    bad = main.submit({"prompt": "dog", "image": upstream.url("/status/404")}, one)
    assert bad.status_code == 200, bad.text
    assert main.wait_status(bad.json()["request_id"], one)["status"] == "FAILED"
    assert h.metric(main.metrics(), 'maskmaker_jobs_total{event="refunded"}') == before + 1
    again = main.submit({"prompt": "dog", "image": h.b64(h.png(13))}, one)
    assert again.status_code == 200, again.text
    assert main.submit({"prompt": "dog", "image": h.b64(h.png(14))}, one).status_code == 406
    assert main.wait_status(again.json()["request_id"], one)["status"] == "COMPLETED"


def test_100_jobs_at_once_and_sync_requests_keep_priority(main, keys):
    key = keys["bob"]
    started = time.monotonic()

    def submit(i):
        r = main.submit({"prompt": "dog, cat", "image": h.b64(h.png(100 + i)), "return_mask": True}, key)
        assert r.status_code == 200, r.text
        return r.json()["request_id"]

    with ThreadPoolExecutor(16) as ex:
        rids = list(ex.map(submit, range(100)))
    assert len(set(rids)) == 100

    # A synchronous request sent now is not queued behind the 100 jobs: it takes the next free slot.
    t = time.monotonic()
    sync = main.sync({"prompt": "dog", "image": h.b64(h.png(7)), "return_mask": True}, key)
    sync_s = time.monotonic() - t
    assert sync.status_code == 200
    queued_after_sync = sum(main.status(rid, key).json()["status"] == "QUEUED" for rid in rids)
    assert queued_after_sync > 20, f"sync request took {sync_s:.1f} s; jobs still queued: {queued_after_sync}"

    m = main.metrics()
    assert h.metric(m, 'maskmaker_jobs{state="queued"}') > 0

    left = set(rids)
    deadline = time.monotonic() + 150
    while left and time.monotonic() < deadline:
        for rid in list(left):
            if main.status(rid, key).json()["status"] in h.FINAL:
                left.discard(rid)
        time.sleep(0.5)
    assert not left, f"{len(left)} jobs unfinished after {time.monotonic() - started:.0f} s"
    for rid in rids[:5] + rids[-5:]:
        j = main.result(rid, key).json()
        assert j["status"] == "COMPLETED", j
        assert Image.open(io.BytesIO(base64.b64decode(j["output"]["image"]))).size == (64, 64)


def test_metrics(main, keys, upstream):
    bad = main.submit({"prompt": "dog", "image": upstream.url("/status/404")}, keys["bob"]).json()["request_id"]
    assert main.wait_status(bad, keys["bob"])["status"] == "FAILED"
    m = main.metrics()
    assert h.metric(m, 'maskmaker_jobs_total{event="completed"}') >= 100
    assert h.metric(m, 'maskmaker_jobs_total{event="failed"}') >= 1
    assert h.metric(m, 'maskmaker_jobs_total{event="submitted"}') >= 100
    assert 'maskmaker_jobs{state="queued"}' in m and 'maskmaker_jobs{state="processing"}' in m
    assert h.metric(m, 'maskmaker_job_duration_seconds_count{phase="total"}') >= 100
    assert 'maskmaker_job_duration_seconds_bucket{phase="queue",le="1"}' in m
    assert 'maskmaker_jobs_total{event="expired"}' in m
    assert h.metric(m, 'maskmaker_requests_total{route="/v2/requests/{id}/status",status="200"}') > 0
    assert 'route="/v2/requests/{id}",status="404"' in m
    # the ids never become labels
    assert "/v2/requests/0" not in m and "/v2/requests/f" not in m


def test_answers_match_the_openapi_document(main, keys, upstream):
    """The served /openapi.json describes the v2 answers (its response schemas are closed: an undocumented field
    fails here)."""
    from jsonschema import Draft202012Validator, RefResolver

    doc = requests.get(main.url("/openapi.json"), timeout=30).json()
    resolver = RefResolver.from_schema(doc)

    def check(response, path, status=None):
        method = response.request.method.lower()
        spec = doc["paths"][path][method]["responses"][str(status or response.status_code)]
        while "$ref" in spec:
            _, spec = resolver.resolve(spec["$ref"])
        schema = spec["content"]["application/json"]["schema"]
        errors = [e.message for e in Draft202012Validator(schema, resolver=resolver).iter_errors(response.json())]
        assert not errors, (path, response.status_code, response.text[:300], errors[:5])

    key = keys["bob"]
    item, status = "/v2/requests/{request_id}", "/v2/requests/{request_id}/status"
    # a slow URL first, so that the next job is seen QUEUED
    slow = main.submit({"prompt": "dog", "image": upstream.url("/slow?s=1")}, key)
    check(slow, "/v2/inpaint-mask-maker")
    r = main.submit({"prompt": "dog", "image": h.b64(h.png(600)), "return_mask": True}, key)
    check(r, "/v2/inpaint-mask-maker")
    rid = r.json()["request_id"]
    pending = main.result(rid, key)
    if pending.status_code == 202:
        check(pending, item)
        assert "Retry-After" in pending.headers
    check(main.status(rid, key), status)
    main.wait_status(rid, key)
    check(main.status(rid, key), status)
    check(main.result(rid, key), item)
    bad = main.submit({"prompt": "dog", "image": upstream.url("/status/404")}, key).json()["request_id"]
    main.wait_status(bad, key)
    check(main.status(bad, key), status)
    check(main.result(bad, key), item)
    check(main.result("0" * 32, key), item)
    check(main.status(rid, None), status)
    check(main.submit({"prompt": "dog"}, key), "/v2/inpaint-mask-maker")
    main.wait_status(slow.json()["request_id"], key)


def test_multipart_submit(main, keys, receiver):
    key = keys["bob"]
    r = requests.post(main.url(h.SUBMIT), headers={"x-api-key": key}, timeout=60,
                      files={"image": ("tiny.png", h.png(700), "image/png")},
                      data={"prompt": "dog", "return_mask": "true", "grow_mask": "0",
                            "webhook_url": receiver.url("/hook/multipart")})
    assert r.status_code == 200, r.text
    rid = r.json()["request_id"]
    assert main.wait_status(rid, key)["status"] == "COMPLETED"
    out = main.result(rid, key).json()["output"]
    assert out["content_type"] == "image/png" and (out["width"], out["height"]) == (64, 64)
    deadline = time.monotonic() + 20
    while not receiver.calls_to("/hook/multipart") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert receiver.calls_to("/hook/multipart")[0][2]["request_id"] == rid
