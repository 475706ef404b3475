"""Operations (SPEC section 3): /healthz, /readyz, /metrics, CORS preflight, concurrency, admission control (503
queue full, 504 waiting too long), graceful SIGTERM, start-up failures."""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

import mm_helpers as h
from test_params import assert_error


# ------------------------------------------------------------------------------------------- health, ready, metrics

def test_healthz(server):
    r = server.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert server.session.head(server.url("/healthz")).status_code == 200


def test_readyz(server):
    r = server.get("/readyz")
    assert r.status_code == 200
    j = r.json()
    assert j["status"] == "ready" and isinstance(j.get("pack"), str) and j["pack"]


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(4))
            found = True
    assert found, f"no sample {name}{labels}"
    return total


def test_metrics_prometheus_text(server, small_png):
    before = server.get("/metrics").text
    ok_before = metric(before, "maskmaker_requests_total", route="/v1/inpaint-mask-maker", status="200") \
        if 'status="200"' in before and "/v1/inpaint-mask-maker" in before else 0.0
    server.post({"prompt": "unicorn", "image": h.b64(small_png)})
    server.post({"prompt": "unicorn"})  # 400
    server.get("/no-such-page")  # 404
    r = server.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    t = r.text
    assert "# TYPE maskmaker_requests_total counter" in t
    assert "# TYPE maskmaker_request_duration_seconds histogram" in t
    assert metric(t, "maskmaker_requests_total", route="/v1/inpaint-mask-maker", status="200") >= ok_before + 1
    assert metric(t, "maskmaker_requests_total", route="/v1/inpaint-mask-maker", status="400") >= 1
    assert metric(t, "maskmaker_requests_total", route="other", status="404") >= 1
    assert metric(t, "maskmaker_request_duration_seconds_count", route="/v1/inpaint-mask-maker") >= 2
    assert metric(t, "maskmaker_request_duration_seconds_bucket", route="/v1/inpaint-mask-maker", le="+Inf") >= 2
    assert metric(t, "maskmaker_ready") == 1
    assert metric(t, "maskmaker_inference", state="active") >= 0
    assert metric(t, "maskmaker_inference", state="queued") == 0
    assert "maskmaker_stage_duration_seconds" in t
    assert "maskmaker_cache_events_total" in t


def test_metrics_stage_histograms_after_inference(server, bus_small):
    r = server.post({"prompt": "bus", "image": h.b64(bus_small), "return_mask": True})
    assert r.status_code == 200, r.text
    t = server.get("/metrics").text
    assert metric(t, "maskmaker_stage_duration_seconds_count", stage="detect") >= 1
    assert metric(t, "maskmaker_stage_duration_seconds_count", stage="decode") >= 1


def test_options_preflight(server):
    r = server.session.options(server.url(h.COMPAT), headers={
        "Origin": "http://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key"}, timeout=30)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    allowed = r.headers["Access-Control-Allow-Headers"].lower()
    assert "x-api-key" in allowed and "content-type" in allowed


def test_cors_headers_on_answers(server, small_png):
    r = server.post({"prompt": "unicorn", "image": h.b64(small_png)})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    exposed = r.headers["Access-Control-Expose-Headers"]
    for name in ("X-Detections", "X-Inference-Time-Ms", "X-Unmatched-Phrases", "x-remaining-credits"):
        assert name in exposed


def test_web_page(server):
    r = server.get("/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")


def test_openapi_document(server):
    r = server.get("/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert h.COMPAT in doc["paths"] and h.NATIVE in doc["paths"]


@pytest.mark.parametrize("method,path,status", [("POST", "/healthz", 405), ("GET", "/nope", 404),
                                                ("POST", "/nope", 404), ("GET", "/healthz", 413),
                                                ("OPTIONS", h.COMPAT, 204), ("PUT", h.COMPAT, 405),
                                                ("POST", "/", 405)])
def test_unread_body_does_not_poison_keep_alive(server, method, path, status):
    """A body the server answers without reading must not be parsed as the next request of the connection."""
    s = requests.Session()
    try:
        body = b'{"prompt": "dog", "image": "x"}' * 50
        for _ in range(2):
            r = s.request(method, server.url(path), data=body, headers={"Content-Type": "application/json"},
                          timeout=30)
            assert r.status_code == status, r.text
            after = s.get(server.url("/healthz"), timeout=30)
            assert after.status_code == 200 and after.json() == {"status": "ok"}
    finally:
        s.close()


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded"])
def test_415_with_large_body_then_next_request(server, ctype):
    s = requests.Session()
    try:
        r = s.post(server.url(h.COMPAT), data=b"prompt=" + b"x" * 200_000, headers={"Content-Type": ctype},
                   timeout=30)
        assert_error(r, 415, f"Content-Type must be application/json or multipart/form-data, not '{ctype}'")
        assert s.get(server.url("/healthz"), timeout=30).status_code == 200
    finally:
        s.close()


# ------------------------------------------------------------------------------------------- concurrency

def test_sixteen_concurrent_requests(server, bus_small):
    """16 threads at once: each gets 200 and its own correct mask (sizes differ per request; the photos' masks
    equal the one computed alone, or its complement when inverted)."""
    base = {"prompt": "bus", "image": h.b64(bus_small), "confidence_thresh": 0.3, "return_mask": True}
    ref = server.post(base)
    assert ref.status_code == 200 and int(ref.headers["X-Detections"]) >= 1
    ref_mask = np.asarray(h.open_image(ref.content))
    assert 0 < (ref_mask == 255).mean() < 1

    jobs = []
    for i in range(16):
        if i % 4 == 0:
            jobs.append(("bus", i % 8 == 4, dict(base, invert_mask=i % 8 == 4)))
        else:  # half of them through the detector, half answered without a model ("unicorn" is no COCO class)
            w, hh = 40 + i, 30 + 2 * i
            jobs.append(((w, hh), i % 2 == 1, {"prompt": "bus" if i % 3 else "unicorn",
                                               "image": h.b64(h.png_bytes(w, hh, (i * 9, 80, 40))),
                                               "return_mask": True, "invert_mask": i % 2 == 1}))
    barrier = threading.Barrier(16)

    def run(job):
        barrier.wait()
        return requests.post(server.url(h.COMPAT), json=job[2], timeout=h.REQUEST_TIMEOUT)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(run, jobs))
    for (what, inverted, _), r in zip(jobs, answers):
        assert r.status_code == 200, r.text
        m = np.asarray(h.open_image(r.content))
        if what == "bus":
            assert np.array_equal(m, 255 - ref_mask if inverted else ref_mask)
        else:
            assert m.shape == (what[1], what[0])
            assert (m == (255 if inverted else 0)).all()


# ------------------------------------------------------------------------------------------- admission: 503, 504

def _slow_request():
    """A request that keeps the only inference slot busy for a while: a fresh full-size photo with several
    instances to segment (no cached embedding on a new server)."""
    return {"prompt": "bus, person", "image": h.b64(h.sample("bus.jpg")), "confidence_thresh": 0.25,
            "return_mask": True}


def test_queue_full_503_and_wait_timeout_504(start_server, small_png):
    s = start_server("--max-concurrent", "1", "--queue-length", "1", "--request-timeout-ms", "400", name="queue")
    tiny = {"prompt": "unicorn", "image": h.b64(small_png)}
    busy = {}

    def long_one():
        busy["t0"] = time.monotonic()
        busy["r"] = requests.post(s.url(h.COMPAT), json=_slow_request(), timeout=h.REQUEST_TIMEOUT)
        busy["t1"] = time.monotonic()

    t = threading.Thread(target=long_one)
    t.start()
    statuses = []
    try:
        time.sleep(0.15)
        deadline = time.monotonic() + 20
        while t.is_alive() and time.monotonic() < deadline and not {503, 504} <= set(statuses):
            with ThreadPoolExecutor(2) as pool:
                rs = list(pool.map(lambda _: requests.post(s.url(h.COMPAT), json=tiny, timeout=30), range(2)))
            for r in rs:
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert_error(r, 503, "the server is busy (queue full): retry shortly")
                    assert r.headers["Retry-After"] == "2"
                elif r.status_code == 504:
                    assert_error(r, 504, "the request waited longer than 400 ms for a free worker")
    finally:
        t.join()
    assert busy["r"].status_code == 200
    if not {503, 504} <= set(statuses):
        pytest.skip(f"the long request ({busy['t1'] - busy['t0']:.2f} s) ended before both could be seen: "
                    f"{statuses}")
    # afterwards the server answers normally
    assert s.post(tiny).status_code == 200


def test_queue_length_zero(start_server, small_png):
    s = start_server("--max-concurrent", "1", "--queue-length", "0", name="queue0")
    tiny = {"prompt": "unicorn", "image": h.b64(small_png)}
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=requests.post(s.url(h.COMPAT), json=_slow_request(), timeout=h.REQUEST_TIMEOUT)))
    t.start()
    seen = []
    try:
        time.sleep(0.15)
        while t.is_alive() and 503 not in seen:
            r = requests.post(s.url(h.COMPAT), json=tiny, timeout=30)
            seen.append(r.status_code)
            if r.status_code == 503:
                assert_error(r, 503, "the server is busy (queue full): retry shortly")
                assert r.headers["Retry-After"] == "2"
            time.sleep(0.05)
    finally:
        t.join()
    assert result["r"].status_code == 200
    if 503 not in seen:
        pytest.skip("the long request ended before a second one arrived")
    assert s.post(tiny).status_code == 200


# ------------------------------------------------------------------------------------------- shutdown, start-up

def test_sigterm_lets_the_request_in_flight_finish(start_server, upstream):
    s = start_server("--allow-private-urls", "--fetch-timeout-ms", "20000", name="sigterm")
    upstream.slow_started.clear()
    result = {}

    def call():
        try:
            result["r"] = requests.post(s.url(h.COMPAT), json={"prompt": "unicorn", "image": upstream.url("/slow?s=2"),
                                                                "return_mask": True}, timeout=60)
        except requests.RequestException as e:  # pragma: no cover - reported below
            result["e"] = e

    t = threading.Thread(target=call)
    t.start()
    assert upstream.slow_started.wait(20), "the request never reached the upstream"
    time.sleep(0.2)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # no new connections once stopping
    with pytest.raises(requests.ConnectionError):
        requests.get(s.url("/healthz"), timeout=5)
    t.join(60)
    assert "e" not in result, result.get("e")
    r = result["r"]
    assert r.status_code == 200, r.text
    assert h.open_image(r.content).size == (24, 16)
    assert s.proc.wait(30) == 0
    log = s.log()
    assert "signal 15 received" in log and "stopped" in log


def test_sigint_exits_zero(start_server):
    s = start_server(name="sigint")
    assert s.stop(signal.SIGINT) == 0


def test_sigterm_while_models_load_exits_zero(start_server):
    s = start_server(wait_ready=False, name="sigterm-early")
    assert s.stop(timeout=60) == 0


def test_503_before_ready(start_server, small_png):
    s = start_server(wait_ready=False, name="not-ready")
    r = s.get("/readyz")
    p = s.post({"prompt": "unicorn", "image": h.b64(small_png)})
    if r.status_code == 200 and p.status_code == 200:
        pytest.skip("the models loaded before the first request")
    if r.status_code == 503:
        assert_error(r, 503, "models are loading")
        assert r.headers["Retry-After"] == "2"
    if p.status_code == 503:
        assert_error(p, 503, "the server is starting: models are loading")
        assert p.headers["Retry-After"] == "2"
    s.wait_ready()
    assert s.post({"prompt": "unicorn", "image": h.b64(small_png)}).status_code == 200


@pytest.mark.parametrize("attempt", range(3))
def test_missing_model_pack_exits_1(tmp_path, attempt):
    """A pack that cannot load stops the server with status 1 (promptly, however early the failure)."""
    port = h.free_port()
    p = subprocess.run([str(h.BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--models",
                        str(tmp_path / "no-such-pack")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "cannot load models" in p.stdout + p.stderr


def test_second_server_on_the_same_port_fails(server):
    p = subprocess.run([str(h.BIN), "serve", "--host", "127.0.0.1", "--port", str(server.port), "--models",
                        h.MODELS], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "cannot listen" in p.stdout + p.stderr
    assert server.get("/healthz").status_code == 200


def test_port_taken_by_another_program_fails():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        p = subprocess.run([str(h.BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--models", h.MODELS],
                           capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "cannot listen" in p.stdout + p.stderr


def test_unusable_keys_database_exits_nonzero(tmp_path):
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not SQLite" * 100)
    for db in (tmp_path / "no" / "such" / "dir" / "k.db", bad):
        p = subprocess.run([str(h.BIN), "serve", "--host", "127.0.0.1", "--port", str(h.free_port()), "--models",
                            h.MODELS, "--keys-db", str(db)], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0
        assert "keys database" in p.stdout + p.stderr


def test_bad_flags_are_usage_errors():
    for args in (["--port", "70000"], ["--max-concurrent", "0"], ["--no-such-flag"]):
        p = subprocess.run([str(h.BIN), "serve", *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, (args, p.stdout, p.stderr)


def test_metrics_count_detection_embedding_and_mask_cache_hits(server, bus_small):
    body = {"image": h.b64(bus_small), "return_mask": True}
    before = server.get("/metrics").text
    events = lambda text, cache: metric(text, "maskmaker_cache_events_total", cache=cache, event="hit")
    for prompt in ("bus", "person", "bus, person"):
        r = server.post({**body, "prompt": prompt})
        assert r.status_code == 200, r.text
    after = server.get("/metrics").text
    # The first request may already hit (other tests posted this image); the next two must reuse its boxes.
    assert events(after, "detections") >= events(before, "detections") + 2
    # "person" finds new boxes: their masks need the cached embedding. "bus, person" has every mask cached.
    assert events(after, "image") >= events(before, "image") + 1
    assert events(after, "masks") >= events(before, "masks") + 2
