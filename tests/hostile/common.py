"""Shared helpers for the hostile-input and overload suites: finding the binary and ../shared, starting a real
`maskmaker serve`, a scriptable upstream HTTP server on 127.0.0.1, image builders and the results table."""
from __future__ import annotations

import base64
import dataclasses
import http.server
import io
import json
import os
import pathlib
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time
import zlib

import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("MASKMAKER_SHARED", str(ROOT.parent / "shared")))
SAMPLES = SHARED / "data" / "samples"
OUT = pathlib.Path(os.environ.get("MASKMAKER_TEST_OUT", str(ROOT / "out" / "test"))) / "hostile"


def find_binary() -> pathlib.Path:
    env = os.environ.get("MASKMAKER_BIN")
    if env:
        return pathlib.Path(env)
    for d in ("build-hostile", "build"):
        p = ROOT / d / "maskmaker"
        if p.exists():
            return p
    return ROOT / "build" / "maskmaker"


BIN = find_binary()
MODELS = os.environ.get("MASKMAKER_MODELS_DIR", str(ROOT / "models" / "default"))
COMPAT = "/v1/inpaint-mask-maker"
NATIVE = "/v1/masks"
# Generous: an admitted request on a loaded 2-core CI machine, or an ASan build, can take tens of seconds.
CLIENT_TIMEOUT = float(os.environ.get("MASKMAKER_HOSTILE_TIMEOUT", "120"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the server under test

class Server:
    """One `maskmaker serve` process on a free loopback port; its log goes to OUT/<name>.log."""

    def __init__(self, name: str, *args: str, env: dict | None = None, ready_timeout: float = 300):
        OUT.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [str(BIN), "serve", "--port", str(self.port), "--models", MODELS, *args]
        self.log_path = OUT / f"{name}.log"
        self.env = dict(os.environ, **(env or {}))
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + self.ready_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: maskmaker exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"{self.name}: not ready after {self.ready_timeout} s; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def rss_kib(self) -> int:
        for line in pathlib.Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def post(self, path: str, body=None, data: bytes | None = None, headers: dict | None = None, **kw):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        if data is None and body is not None:
            data = json.dumps(body).encode()
        return requests.post(self.url + path, data=data, headers=h, timeout=kw.pop("timeout", CLIENT_TIMEOUT), **kw)


# ---------------------------------------------------------------- images

def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_fresh_counter = iter(range(1, 1 << 62))


def fresh_images(n: int, name: str = "hopper.jpg") -> list[bytes]:
    """n lossless PNG copies of a sample photo, each with a few pixels changed so that no two (and none sent
    before in this test session) have the same pixels: every request on one misses the server's image, detection
    and mask caches and costs a full inference, as a never-seen client image would."""
    from PIL import Image

    base = Image.open(io.BytesIO(sample_bytes(name))).convert("RGB")
    w = base.width
    out = []
    for _ in range(n):
        i = next(_fresh_counter)
        copy = base.copy()
        # The counter written into the first pixels' colours (3 bytes per pixel): unique per copy.
        for k in range(3):
            v = (i >> (24 * k)) & 0xFFFFFF
            copy.putpixel((k % w, k // w), (v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF))
        out.append(pil_bytes(copy, "PNG", compress_level=1))
    return out


def pil_bytes(image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_raw(width: int, height: int, bit_depth: int = 8, colour_type: int = 2, rows: bytes | None = None,
            idat: bytes | None = None) -> bytes:
    """A PNG built by hand: any declared size (also 0x0 or 30000x30000), any depth; `rows` is the filtered raw
    scanline data (compressed here) or `idat` the compressed stream as is."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(rows if rows is not None else b"")
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png16_rgb(width: int, height: int) -> bytes:
    row = b"\x00" + b"".join(struct.pack(">HHH", (x * 4000) % 65536, 30000, 65535 - x * 1000 % 65536) for x in range(width))
    return png_raw(width, height, 16, 2, row * height)


def jpeg_with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """Inserts an APP1 segment holding `payload` right after SOI (the length field counts itself)."""
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def jpeg_sof_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrites the first SOF marker's declared size."""
    i = 2
    while i + 4 <= len(jpeg):
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]
        i += 2 + length
    raise ValueError("no SOF")


# ---------------------------------------------------------------- upstream HTTP server for URL cases

class Upstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 with routes for every URL case; `hits` counts requests by path."""

    def __init__(self, image: bytes):
        self.image = image
        self.gzip_bomb: bytes | None = None
        self.hits: dict[str, int] = {}
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send(self, status, body=b"", ctype="application/octet-stream", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                up.hits[path] = up.hits.get(path, 0) + 1
                port = self.server.server_address[1]
                try:
                    self.route(path, port)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def route(self, path, port):
                if path == "/image.jpg":
                    return self.send(200, up.image, "image/jpeg")
                if path == "/image-no-type":
                    return self.send(200, up.image, "")
                if path == "/404":
                    return self.send(404, b"not here", "text/plain")
                if path == "/500":
                    return self.send(500, b"oops", "text/plain")
                if path == "/html":
                    return self.send(200, b"<!doctype html><html><body>hello</body></html>", "text/html")
                if path == "/empty":
                    return self.send(200, b"", "image/jpeg")
                if path == "/slow":  # headers only after the fetch deadline
                    time.sleep(4)
                    return self.send(200, up.image, "image/jpeg")
                if path == "/trickle":  # headers at once, then a byte every 300 ms, past the deadline
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(up.image)))
                    self.end_headers()
                    for i in range(20):
                        self.wfile.write(up.image[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.3)
                    return
                if path == "/big":  # Content-Length over the fetch limit
                    return self.send(200, b"\xff\xd8\xff" + b"\0" * 600_000, "image/jpeg")
                if path == "/big-chunked":  # no Content-Length: the limit must hold while reading
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    block = b"\0" * 65536
                    for _ in range(10):
                        self.wfile.write(b"%x\r\n" % len(block) + block + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if path == "/gzip-bomb":  # 20 KB on the wire, 20 MB decoded
                    if up.gzip_bomb is None:
                        gz = zlib.compressobj(9, zlib.DEFLATED, 31)
                        up.gzip_bomb = gz.compress(b"\xff\xd8\xff" + b"\0" * 20_000_000) + gz.flush()
                    return self.send(200, up.gzip_bomb, "image/jpeg", [("Content-Encoding", "gzip")])
                if path == "/lying-length":  # says 1000 bytes, closes after 10
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    self.wfile.write(up.image[:10])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if path == "/close":  # closes without any answer
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if path == "/redirect-image":
                    return self.send(302, extra=[("Location", "/image.jpg")])
                if path == "/redirect-absolute":
                    return self.send(301, extra=[("Location", f"http://127.0.0.1:{port}/image.jpg")])
                if path == "/redirect-loop":
                    return self.send(302, extra=[("Location", "/redirect-loop")])
                if path == "/redirect-no-location":
                    return self.send(302)
                if path == "/redirect-file":
                    return self.send(302, extra=[("Location", "file:///etc/passwd")])
                if path == "/redirect-gopher":
                    return self.send(307, extra=[("Location", "gopher://127.0.0.1:70/")])
                if path == "/redirect-private":
                    return self.send(302, extra=[("Location", f"http://127.0.0.1:{port}/image.jpg")])
                if path == "/redirect-metadata":
                    return self.send(302, extra=[("Location", "http://169.254.169.254/latest/meta-data/")])
                return self.send(404, b"unknown route", "text/plain")

        class Threading(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Threading(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- cases and the results table

@dataclasses.dataclass
class Case:
    family: str
    name: str
    expect: int
    body: object = None           # JSON-serialisable object, or
    raw: bytes | None = None      # the exact body bytes
    path: str = COMPAT
    method: str = "POST"
    headers: dict | None = None   # replaces the default Content-Type header when given
    field: str | None = None      # an error message must name this field
    server: str = "strict"        # which server: strict | private
    size: tuple | None = None     # a 200 PNG mask must have this (width, height)

    @property
    def id(self) -> str:
        return self.name


RESULTS: list[tuple[str, str, int, int | str, bool]] = []  # family, case, expected, got, passed
FIGURES: dict = {}  # overload/fault figures, printed at the end of the session


def record(family: str, name: str, expected: int, got, passed: bool):
    RESULTS.append((family, name, expected, got, passed))


def send(server: Server, case: Case) -> requests.Response:
    headers = {"Content-Type": "application/json"} if case.headers is None else dict(case.headers)
    data = case.raw if case.raw is not None else (json.dumps(case.body).encode() if case.body is not None else b"")
    return requests.request(case.method, server.url + case.path, data=data, headers=headers, timeout=CLIENT_TIMEOUT)


def check(server: Server, case: Case):
    """Sends the case, records it, and asserts: the SPEC status; errors as JSON {"error": "..."} (naming the
    field where there is one); successes as an image or JSON with an image; the server still alive."""
    got: int | str = "exception"
    ok = False
    try:
        r = send(server, case)
        got = r.status_code
        problems = []
        if r.status_code != case.expect:
            problems.append(f"status {r.status_code}, expected {case.expect}: {r.text[:300]!r}")
        ctype = r.headers.get("Content-Type", "")
        if r.status_code >= 400:
            if not ctype.startswith("application/json"):
                problems.append(f"error Content-Type {ctype!r}")
            else:
                err = r.json()
                if not isinstance(err, dict) or not isinstance(err.get("error"), str) or not err["error"].strip():
                    problems.append(f"error body {r.text[:200]!r}")
                elif case.field and case.expect == r.status_code and case.field not in err["error"]:
                    problems.append(f"message does not name {case.field!r}: {err['error']!r}")
                if r.status_code in (503, 429) and "Retry-After" not in r.headers:
                    problems.append("no Retry-After")
                if r.status_code == 405 and "Allow" not in r.headers:
                    problems.append("no Allow header")
        elif r.status_code == 200:
            if not (ctype.startswith("image/") or ctype.startswith("application/json")) or not r.content:
                problems.append(f"200 with Content-Type {ctype!r} and {len(r.content)} bytes")
            elif case.size and ctype == "image/png":
                from PIL import Image
                got_size = Image.open(io.BytesIO(r.content)).size
                if got_size != tuple(case.size):
                    problems.append(f"mask is {got_size}, expected {case.size}")
        ok = not problems
        assert ok, "; ".join(problems)
        assert server.alive(), "the server died"
    finally:
        record(case.family, case.name, case.expect, got, ok)


def health(server: Server, family: str):
    """A normal request still works: the small real image + a prompt -> 200 PNG mask."""
    ok = False
    got: int | str = "exception"
    try:
        assert server.alive(), f"the server died during the {family} family"
        r = server.post(COMPAT, {"prompt": "person", "image": b64(sample_bytes("hopper.jpg")), "return_mask": True})
        got = r.status_code
        ok = r.status_code == 200 and r.headers.get("Content-Type") == "image/png" and r.content[:4] == b"\x89PNG"
        assert ok, f"health check after {family}: {r.status_code} {r.text[:200]!r}"
    finally:
        record(family, "health check (hopper.jpg, 'person')", 200, got, ok)


def summary_lines() -> list[str]:
    families: dict[str, list] = {}
    for fam, name, exp, got, passed in RESULTS:
        families.setdefault(fam, []).append((name, exp, got, passed))
    lines = [f"{'family':<14}{'cases':>7}{'passed':>8}  expected statuses", "-" * 72]
    total = passed_total = 0
    for fam, rows in families.items():
        statuses: dict[int, int] = {}
        for _, exp, _, _ in rows:
            statuses[exp] = statuses.get(exp, 0) + 1
        exp_text = " ".join(f"{s}x{n}" for s, n in sorted(statuses.items()))
        p = sum(1 for r in rows if r[3])
        total += len(rows)
        passed_total += p
        lines.append(f"{fam:<14}{len(rows):>7}{p:>8}  {exp_text}")
    lines.append("-" * 72)
    lines.append(f"{'total':<14}{total:>7}{passed_total:>8}")
    failed = [(f, n, e, g) for f, n, e, g, p in RESULTS if not p]
    for f, n, e, g in failed:
        lines.append(f"FAILED {f}: {n}: expected {e}, got {g}")
    return lines
