#!/usr/bin/env python3
"""Load benchmark against a running (or self-started) maskmaker server, loopback only, bounded in requests and time.

    bench/load.py [--url http://127.0.0.1:PORT] [--image FILE] [--prompt bus] [--requests 40] [--seconds 120]
                  [--concurrency 1 2 4 8] [--same-image] [--json out.json]

Without --url it starts `maskmaker serve` (MASKMAKER_BIN or build/maskmaker) on a free port and stops it after.
Each request posts the compatible endpoint's JSON body (image as base64, return_mask true). By default every
request uses a slightly different image (one pixel changed) so that the image-embedding cache cannot answer:
the cold path; --same-image measures the warm path.
"""
import argparse
import base64
import concurrent.futures as cf
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def variants(image_path, n, same):
    """n base64 bodies; each a PNG/JPEG of the image with one pixel changed (unless same)."""
    raw = Path(image_path).read_bytes()
    if same:
        return [base64.b64encode(raw).decode()] * n
    from PIL import Image
    img = Image.open(image_path).convert("RGB")
    out = []
    for i in range(n):
        im = img.copy()
        im.putpixel((i % im.width, 0), (i * 7 % 256, 0, 0))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=92)
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def post(url, body, timeout):
    req = urllib.request.Request(url + "/v1/inpaint-mask-maker", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except Exception:
        status = 0
    return status, (time.perf_counter() - t) * 1000


def run_level(url, bodies, concurrency, requests, seconds, timeout):
    deadline = time.monotonic() + seconds
    latencies, statuses = [], {}
    started = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        pending = set()
        sent = 0
        while sent < requests or pending:
            while sent < requests and len(pending) < concurrency and time.monotonic() < deadline:
                pending.add(pool.submit(post, url, bodies[sent % len(bodies)], timeout))
                sent += 1
            if not pending:
                break
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in done:
                status, ms = f.result()
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(ms)
            if time.monotonic() >= deadline:
                requests = sent
    wall = time.perf_counter() - started
    ranked = sorted(latencies)
    p95 = ranked[min(len(ranked) - 1, int(0.95 * (len(ranked) - 1) + 0.5))] if ranked else None
    return {"concurrency": concurrency, "requests": sum(statuses.values()), "statuses": statuses,
            "throughput_rps": round(statuses.get(200, 0) / wall, 3),
            "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "p95_ms": round(p95, 1) if latencies else None,
            "max_ms": round(max(latencies), 1) if latencies else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url")
    ap.add_argument("--image", default=str(ROOT.parent / "shared/data/samples/bus.jpg"))
    ap.add_argument("--prompt", default="bus")
    ap.add_argument("--requests", type=int, default=40, help="per concurrency level")
    ap.add_argument("--seconds", type=float, default=120, help="time bound per level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--same-image", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()

    server = None
    url = args.url
    if not url:
        port = free_port()
        binary = os.environ.get("MASKMAKER_BIN", str(ROOT / "build/maskmaker"))
        server = subprocess.Popen([binary, "serve", "--host", "127.0.0.1", "--port", str(port),
                                   "--queue-length", "64"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.1)
    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        sys.exit("load.py only targets loopback addresses")
    try:
        n = max(args.requests, 1)
        # Each level gets its own pixel-different images (unless --same-image), so no level is answered from the
        # image caches that an earlier one filled.
        bodies = [json.dumps({"prompt": args.prompt, "image": b, "return_mask": True}).encode()
                  for b in variants(args.image, n * len(args.concurrency) + 1, args.same_image)]
        post(url, bodies[-1], 120)  # warm-up
        results = []
        print(f"{'conc':>4} {'reqs':>5} {'rps':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  statuses")
        for level, c in enumerate(args.concurrency):
            r = run_level(url, bodies[level * n:(level + 1) * n], c, args.requests, args.seconds, timeout=120)
            results.append(r)
            print(f"{c:>4} {r['requests']:>5} {r['throughput_rps']:>7} {r['p50_ms']!s:>8} {r['p95_ms']!s:>8} "
                  f"{r['max_ms']!s:>8}  {r['statuses']}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"url": url, "image": args.image, "prompt": args.prompt,
                                                   "same_image": args.same_image, "levels": results}, indent=2))
        bad = [r for r in results if set(r["statuses"]) - {200, 503}]
        return 1 if bad else 0
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
