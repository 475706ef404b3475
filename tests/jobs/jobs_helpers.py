"""Helpers for the asynchronous jobs tests (POST /v2/inpaint-mask-maker, GET /v2/requests/...): a `maskmaker serve`
process that can be killed and restarted on the same database, keys through the CLI, a local image host and a
local webhook receiver (both on 127.0.0.1), polling, and small images.

The binary is $MASKMAKER_BIN, else <repo>/build/maskmaker; the model pack $MASKMAKER_MODELS, else
<repo>/models/default; sample photos $MASKMAKER_SHARED/data/samples, else <repo>/../shared/data/samples.
"""
from __future__ import annotations

import io
import json
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import requests

import sys

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: the suites' shared testlib.py
from testlib import REPO, SHARED, SAMPLES, BIN, MODELS, COMPAT, free_port, b64, sample  # noqa: E402,F401
from PIL import Image


SUBMIT = "/v2/inpaint-mask-maker"
SYNC = COMPAT
FINAL = ("COMPLETED", "FAILED")


def png(i: int = 0, size: int = 64) -> bytes:
    """A small PNG, a different colour for each i (so that no two jobs share an image)."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), ((i * 37) % 256, (i * 91) % 256, (i * 13 + 60) % 256)).save(buf, "PNG")
    return buf.getvalue()


def noisy_png(i: int, size: int = 64) -> bytes:
    """A PNG of noise (it does not compress: about 3 * size * size bytes), a different one for each i."""
    import random
    buf = io.BytesIO()
    Image.frombytes("RGB", (size, size), random.Random(i).randbytes(3 * size * size)).save(buf, "PNG")
    return buf.getvalue()


def add_key(db: Path, name: str, credits: int | None = None) -> str:
    cmd = [str(BIN), "keys", "--db", str(db), "add", name]
    if credits is not None:
        cmd += ["--credits", str(credits)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


class Server:
    """One `maskmaker serve` on 127.0.0.1; restart() starts it again with the same flags (and database)."""

    def __init__(self, *args: str, name: str = "jobs"):
        if not BIN.is_file():
            raise RuntimeError(f"maskmaker binary not found at {BIN}: build it or set MASKMAKER_BIN")
        self.args = list(args)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"maskmaker-{name}-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        self.start()

    def start(self):
        for attempt in range(5):  # another process may take the free port before the server binds it
            self.port = free_port()
            cmd = [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--models", MODELS, *self.args]
            self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait_ready():
                return
            if self.proc.poll() is None:
                break
        raise RuntimeError(f"{self.name}: maskmaker serve did not become ready:\n{self.log()[-4000:]}")

    def _wait_ready(self, timeout: float = 180) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if requests.get(self.url("/readyz"), timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.05)
        return False

    def restart(self):
        self.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cleanup(self):
        self._log.close()
        self.log_path.unlink(missing_ok=True)

    # -- the API
    def submit(self, body: dict, key: str | None = None, **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if key:
            headers["x-api-key"] = key
        return requests.post(self.url(SUBMIT), json=body, headers=headers, timeout=60, **kw)

    def sync(self, body: dict, key: str | None = None) -> requests.Response:
        return requests.post(self.url(SYNC), json=body, headers={"x-api-key": key} if key else {}, timeout=120)

    def status(self, rid: str, key: str | None = None) -> requests.Response:
        return requests.get(self.url(f"/v2/requests/{rid}/status"), headers={"x-api-key": key} if key else {},
                            timeout=30)

    def result(self, rid: str, key: str | None = None) -> requests.Response:
        return requests.get(self.url(f"/v2/requests/{rid}"), headers={"x-api-key": key} if key else {}, timeout=30)

    def wait_status(self, rid: str, key: str | None, wanted=FINAL, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(rid, key).json()
            if body.get("status") in wanted:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {rid} still {body} after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def metrics(self) -> str:
        return requests.get(self.url("/metrics"), timeout=30).text


def metric(text: str, name: str) -> float:
    """The value of one sample (`name` with its labels, as written) in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


class Upstream:
    """An image host on 127.0.0.1: /file/NAME, /status/CODE, /slow?s=SECONDS (a small PNG, late)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, code: int, body: bytes, ctype: str):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                u = urlparse(self.path)
                parts = u.path.strip("/").split("/")
                if parts[0] == "file" and len(parts) == 2 and parts[1] in upstream.files:
                    return self._send(200, upstream.files[parts[1]], "image/png")
                if parts[0] == "slow":
                    time.sleep(float(parse_qs(u.query).get("s", ["3"])[0]))
                    return self._send(200, png(99, 24), "image/png")
                return self._send(404, b"not here", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Receiver:
    """A webhook receiver on `host` (127.0.0.1): records every POST (path, JSON body); /flaky/N paths answer 500 to their
    first try, then 200; /tarpit/N paths hold the request until `release` is set (`in_flight` counts them)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.calls: list[tuple[str, int, dict | None]] = []  # (path, status answered, body)
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if self.path.startswith("/tarpit/"):
                    with receiver.lock:
                        receiver.in_flight += 1
                    receiver.release.wait(300)
                    with receiver.lock:
                        receiver.in_flight -= 1
                with receiver.lock:
                    seen = sum(1 for c in receiver.calls if c[0] == self.path)
                    code = 500 if self.path.startswith("/flaky/") and seen == 0 else 200
                    receiver.calls.append((self.path, code, body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def calls_to(self, path: str) -> list:
        with self.lock:
            return [c for c in self.calls if c[0] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
