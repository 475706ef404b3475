"""Overload and faults, on loopback, bounded in time:
- twice the server's capacity for MASKMAKER_OVERLOAD_SECONDS (default 60): every request is answered 200, 429 or
  503 (none lost, none past its deadline), admitted requests keep a bounded latency, VmRSS stays flat;
- kill -9 under load with a keys database, then restart: credits consumed == 200s seen, within the window of the
  requests in flight at the kill (at most --max-concurrent: a credit is taken after the inference, just before
  the answer is written);
- SIGTERM under load: requests in flight finish with 200, new connections are refused, the exit status is 0.
Figures go to the session summary and to $MASKMAKER_TEST_OUT/hostile/overload.json."""
import concurrent.futures as cf
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import threading
import time

import pytest
import requests

from . import common
from .common import COMPAT, OUT, BIN, Server, b64, free_port, fresh_images, sample_bytes

LOAD_SECONDS = float(os.environ.get("MASKMAKER_OVERLOAD_SECONDS", "60"))
QUEUE = 4
REQUEST_TIMEOUT_MS = 30_000
FIGURES = common.FIGURES


def body(image_b64, prompt="person"):
    return json.dumps({"prompt": prompt, "image": image_b64, "return_mask": True}).encode()


def post(url, data, headers=None, timeout=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    t = time.monotonic()
    try:
        r = requests.post(url + COMPAT, data=data, headers=h, timeout=timeout or (REQUEST_TIMEOUT_MS / 1000 + 30))
        return r.status_code, time.monotonic() - t, r.headers
    except requests.RequestException as e:
        return type(e).__name__, time.monotonic() - t, {}


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def save_figures():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "overload.json").write_text(json.dumps(FIGURES, indent=2))


@pytest.fixture(scope="module")
def loaded_server():
    if not BIN.exists():
        pytest.skip(f"maskmaker binary not built at {BIN}")
    srv = Server("overload", "--threads", "2", "--max-concurrent", "1", "--queue-length", str(QUEUE),
                 "--request-timeout-ms", str(REQUEST_TIMEOUT_MS))
    yield srv
    srv.terminate()


def test_overload_twice_capacity(loaded_server):
    srv = loaded_server
    # Every request carries never-seen pixels: a repeated image is answered from the caches in milliseconds, and
    # the test would then measure the Python client rather than the server.
    # 20 > the 16 image embeddings the pipeline caches (PipelineOptions::image_cache_entries): the caches are full
    # before the memory baseline is taken, so what grows after it is the server's, not a cache filling up.
    warm = [body(b64(im)) for im in fresh_images(20)]
    # Warm-up and capacity: sequential requests, one inference slot; the first two warm the sessions up.
    lat = []
    for data in warm:
        status, dt, _ = post(srv.url, data)
        assert status == 200
        lat.append(dt)
    service = statistics.median(lat[2:])
    capacity = 1.0 / service  # requests per second with --max-concurrent 1
    rate = 2.0 * capacity
    # At twice the capacity the backlog grows by about one request in two: enough arrivals that it outgrows the
    # queue (some 503s) however slow this machine's service time is.
    n = max(int(LOAD_SECONDS * rate), 4 * (QUEUE + 1))
    bodies = [body(b64(im)) for im in fresh_images(n)]
    rss_warm = srv.rss_kib()

    # Open-loop arrivals at twice the capacity; a pool large enough that no arrival waits for a client thread.
    results = []
    lock = threading.Lock()
    rss = []
    stop = threading.Event()

    def sample_rss():
        while not stop.is_set():
            rss.append((time.monotonic(), srv.rss_kib()))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    t0 = time.monotonic()

    def one(i):
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        status, dt, headers = post(srv.url, bodies[i])
        with lock:
            results.append((status, dt, "Retry-After" in headers))

    with cf.ThreadPoolExecutor(max_workers=64) as pool:
        list(pool.map(one, range(n)))
    elapsed = time.monotonic() - t0
    stop.set()
    sampler.join()

    statuses = {}
    for s, _, _ in results:
        statuses[str(s)] = statuses.get(str(s), 0) + 1
    ok_lat = [dt for s, dt, _ in results if s == 200]
    busy_lat = [dt for s, dt, _ in results if s in (429, 503)]
    after_warm = [v for t, v in rss if t >= t0 + 0.25 * elapsed]
    baseline = statistics.median([v for t, v in rss if t < t0 + 0.25 * elapsed] or [rss_warm])
    end = statistics.median(after_warm[-10:]) if after_warm else baseline
    peak = max(after_warm) if after_warm else baseline
    # An admitted request waits for at most QUEUE requests ahead of it plus the one running, each a full
    # inference; the service time is this run's own (warm-up, sequential), with 4x headroom for the CPU that the
    # HTTP threads turning requests away and the client itself take under load.
    bound = (QUEUE + 1) * max(lat[2:]) * 4
    FIGURES["overload"] = {
        "seconds": round(elapsed, 1), "service_time_s": round(service, 3), "capacity_rps": round(capacity, 2),
        "offered_rps": round(rate, 2), "requests": n, "answered": len(results), "statuses": statuses,
        "latency_200_s": {"p50": round(percentile(ok_lat, 50), 3), "p95": round(percentile(ok_lat, 95), 3),
                          "max": round(max(ok_lat, default=0), 3)},
        "latency_busy_s": {"p50": round(percentile(busy_lat, 50), 4), "max": round(max(busy_lat, default=0), 4)},
        "latency_bound_s": round(bound, 2),
        "rss_kib": {"after_warmup_requests": rss_warm, "baseline": baseline, "end": end, "peak": peak,
                    "end_vs_baseline_pct": round(100.0 * (end - baseline) / baseline, 2),
                    "peak_vs_baseline_pct": round(100.0 * (peak - baseline) / baseline, 2)},
    }
    save_figures()
    assert len(results) == n, "requests lost"
    assert set(statuses) <= {"200", "429", "503"}, statuses
    assert statuses.get("200", 0) > 0 and statuses.get("503", 0) > 0, statuses
    assert all(h for s, _, h in results if s in (429, 503)), "a 429/503 without Retry-After"
    assert max(ok_lat) <= bound, f"admitted latency {max(ok_lat):.2f} s over the bound {bound:.2f} s"
    assert max(dt for _, dt, _ in results) < REQUEST_TIMEOUT_MS / 1000, "a request hung past its deadline"
    # Bounded, not flat. Inference runs on a fixed set of threads (one per admission slot), so the malloc arenas
    # that keep what an inference freed are theirs only: +1.7 % at the end and peak in a loaded run of 2026-11-30
    # (+0.9 to +5.4 % end, +6.7 to +11.3 % peak when any HTTP worker ran it). A per-request leak would grow with the
    # several hundred requests and exceed these bounds.
    assert abs(end - baseline) <= 0.10 * baseline, FIGURES["overload"]["rss_kib"]
    # The peak also holds what the requests in flight hold at once (up to QUEUE + 1 admitted bodies, decoded
    # images and answers, and the turned-away bodies being read).
    assert peak <= 1.20 * baseline, FIGURES["overload"]["rss_kib"]
    assert srv.alive()


def keys_cli(db, *args):
    return subprocess.run([str(BIN), "keys", "--db", str(db), *args], check=True, capture_output=True, text=True).stdout


def test_kill9_under_load_keeps_credits_consistent(tmp_path):
    if not BIN.exists():
        pytest.skip(f"maskmaker binary not built at {BIN}")
    db = tmp_path / "keys.db"
    credits = 100_000
    key = keys_cli(db, "add", "load", "--credits", str(credits)).strip()
    args = ["--threads", "2", "--max-concurrent", "1", "--queue-length", str(QUEUE), "--keys-db", str(db)]
    srv = Server("kill9", *args)
    seen = {"200": 0, "503": 0, "other": 0, "error": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            # Never-seen pixels: a full inference, so that the kill lands inside one rather than between cached
            # answers of a few milliseconds.
            data = body(b64(fresh_images(1)[0]))
            status, _, _ = post(srv.url, data, {"x-api-key": key}, timeout=60)
            with lock:
                k = "200" if status == 200 else "503" if status == 503 else "error" if isinstance(status, str) else "other"
                seen[k] += 1
            if status == 503:
                time.sleep(0.05)  # busy: come back shortly (Retry-After says 2 s; this keeps the queue full)

    threads = [threading.Thread(target=client) for _ in range(QUEUE + 2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while seen["200"] < 15 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.37)  # land the kill at an arbitrary point of a request
    stop.set()  # clients finish what they have in flight (it fails with the kill) and send nothing more
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait()
    for t in threads:
        t.join(90)

    # The database after the crash: intact, and the credits add up.
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        remaining, used = con.execute("SELECT credits, used FROM keys WHERE name = 'load'").fetchone()
    assert remaining + used == credits
    ok = seen["200"]
    FIGURES["kill9"] = {"answered_200": ok, "answered_503": seen["503"], "connection_errors": seen["error"],
                        "other": seen["other"], "credits_used": used, "used_minus_200": used - ok}
    save_figures()
    assert seen["other"] == 0, seen
    # No 200 without a credit; at most --max-concurrent (1) credits for requests cut at the kill.
    assert ok <= used <= ok + 1, FIGURES["kill9"]

    # Restart on the same database: serves, and counts on from where it was.
    srv2 = Server("kill9-restart", *args)
    try:
        status, _, headers = post(srv2.url, body(b64(sample_bytes("hopper.jpg"))), {"x-api-key": key})
        assert status == 200
        assert int(headers["x-remaining-credits"]) == credits - used - 1
    finally:
        assert srv2.terminate() == 0


def test_sigterm_under_load_drains_and_exits_0():
    if not BIN.exists():
        pytest.skip(f"maskmaker binary not built at {BIN}")
    srv = Server("sigterm", "--threads", "2", "--max-concurrent", "1", "--queue-length", "16")
    # Distinct images (no embedding-cache hits), each a few hundred ms of work.
    from PIL import Image
    import io
    base = Image.open(io.BytesIO(sample_bytes("bus.jpg"))).convert("RGB").resize((240, 320))
    bodies = []
    for i in range(4):
        buf = io.BytesIO()
        base.rotate(i * 3).save(buf, "JPEG", quality=85)
        bodies.append(body(b64(buf.getvalue()), "person, bus"))
    results = [None] * len(bodies)

    def one(i):
        results[i] = post(srv.url, bodies[i], timeout=120)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    # Wait until the server holds them all (one running, the rest queued): a connection still in the listen
    # backlog at SIGTERM is a new connection, and is refused.
    held = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = requests.get(srv.url + "/metrics", timeout=5).text
        active = queued = 0.0
        for line in m.splitlines():
            if line.startswith('maskmaker_inference{state="active"}'):
                active = float(line.split()[-1])
            if line.startswith('maskmaker_inference{state="queued"}'):
                queued = float(line.split()[-1])
        if active + queued >= len(bodies):
            held = True
            break
        time.sleep(0.05)
    assert held, "the requests never all reached the server"
    t_term = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # New connections are refused while the old ones finish.
    refused = False
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
    except OSError:
        refused = True
    code = srv.proc.wait(120)
    drained = time.monotonic() - t_term
    for t in threads:
        t.join(10)
    statuses = [r[0] if r else None for r in results]
    FIGURES["sigterm"] = {"in_flight": len(bodies), "statuses": statuses, "drain_seconds": round(drained, 2),
                          "new_connection_refused": refused, "exit_code": code}
    save_figures()
    assert refused, "a new connection was accepted after SIGTERM"
    assert statuses == [200] * len(bodies), statuses
    assert code == 0
