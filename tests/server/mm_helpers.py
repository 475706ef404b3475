"""Helpers for the HTTP tests of `maskmaker serve`: paths, a server process wrapper, a local upstream HTTP server
that plays the role of the image host, key management through the CLI, and small image builders.

Nothing here talks to the network beyond 127.0.0.1 (and, for one redirect test, this machine's own non-private
interface address when it has one).
"""
from __future__ import annotations

import io
import ipaddress
import os
import shutil
import signal
import socket
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
from testlib import REPO, SHARED, SAMPLES, BIN, MODELS, COMPAT, NATIVE, free_port, b64, sample, encode, open_image  # noqa: E402,F401
from PIL import Image



# A generous bound for one request: a full-size inference is ~1 s, but CI machines are shared and slow.
REQUEST_TIMEOUT = 120


# ------------------------------------------------------------------------------------------------ images

def png_bytes(width: int, height: int, color=(120, 30, 40), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    if mode == "RGBA" and len(color) == 3:
        color = (*color, 128)
    Image.new(mode, (width, height), color).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ ports

def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connection refused)."""
    return free_port()


# ------------------------------------------------------------------------------------------------ the server

class ServerStartError(RuntimeError):
    pass


class MaskmakerServer:
    """One `maskmaker serve` process on 127.0.0.1 and a free port."""

    def __init__(self, *args: str, env: dict | None = None, wait_ready: bool = True, name: str = "server",
                 port: int | None = None):
        if not BIN.is_file():
            raise ServerStartError(f"maskmaker binary not found at {BIN}: build it (ninja -C build maskmaker) "
                                   f"or set MASKMAKER_BIN")
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.name = name
        self.proc: subprocess.Popen | None = None
        self._logfile = tempfile.NamedTemporaryFile(prefix=f"maskmaker-{name}-", suffix=".log", delete=False)
        self.log_path = Path(self._logfile.name)
        self.session = requests.Session()
        # Another process may take the port between free_port() and the server's bind: the server then exits 1
        # ("cannot listen"), and we try another port.
        for attempt in range(5):
            self.port = port or free_port()
            self._spawn()
            if self._wait_listening():
                break
            if port is not None or attempt == 4:
                raise ServerStartError(f"{name}: maskmaker serve did not start:\n{self.log()}")
        if wait_ready:
            self.wait_ready()

    # -- process
    def _spawn(self):
        cmd = [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if "--models" not in self.args:
            cmd += ["--models", MODELS]
        cmd += self.args
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self._logfile, stderr=subprocess.STDOUT, env=self.env,
                                     stdin=subprocess.DEVNULL)

    def _wait_listening(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = requests.get(self.url("/healthz"), timeout=2)
                if r.status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.02)
        return False

    def wait_ready(self, timeout: float = 180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"{self.name}: exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = requests.get(self.url("/readyz"), timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise ServerStartError(f"{self.name}: not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        """Stops the process (SIGTERM, then SIGKILL after `timeout`) and returns its exit status."""
        self.session.close()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self._logfile.close()
                return -9
        self._logfile.close()
        return self.proc.returncode

    def cleanup(self):
        if self.alive():
            self.stop()
        try:
            self.log_path.unlink()
        except OSError:
            pass

    # -- HTTP
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def post(self, body=None, *, path: str = COMPAT, key: str | None = None, headers: dict | None = None,
             data=None, timeout: float = REQUEST_TIMEOUT, **kw) -> requests.Response:
        h = {}
        if key is not None:
            h["x-api-key"] = key
        h.update(headers or {})
        if data is not None:
            return self.session.post(self.url(path), data=data, headers=h, timeout=timeout, **kw)
        return self.session.post(self.url(path), json=body, headers=h, timeout=timeout, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.url(path), timeout=kw.pop("timeout", 30), **kw)


# ------------------------------------------------------------------------------------------------ keys

def keys_cli(db: Path | str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), "keys", "--db", str(db), *args], capture_output=True, text=True, timeout=60,
                          check=check)


def add_key(db: Path | str, name: str, *args: str) -> str:
    out = keys_cli(db, "add", name, *args)
    key = out.stdout.strip()
    assert key and "\n" not in key, f"keys add printed {out.stdout!r}"
    return key


# ------------------------------------------------------------------------------------------------ the image host

class Upstream:
    """A local HTTP server standing in for the site that hosts the images.

    Routes: /file/<name> serves a registered body; /status/<code>; /slow?s=SECONDS (then a small PNG);
    /redirect?to=URL (302); /loop/<n> (redirects forever); /nolength/<name> (body without Content-Length,
    connection closed at the end). Every request path is recorded in `hits`.
    """

    def __init__(self, host: str = "127.0.0.1"):
        self.files: dict[str, tuple[bytes, str]] = {}
        self.hits: list[str] = []
        self.slow_started = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/octet-stream", extra=None,
                      length: bool = True):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass

            def do_GET(self):
                upstream.hits.append(self.path)
                u = urlparse(self.path)
                parts = u.path.strip("/").split("/")
                q = parse_qs(u.query)
                if parts[0] == "file" and len(parts) == 2 and parts[1] in upstream.files:
                    body, ctype = upstream.files[parts[1]]
                    return self._send(200, body, ctype)
                if parts[0] == "nolength" and len(parts) == 2 and parts[1] in upstream.files:
                    body, ctype = upstream.files[parts[1]]
                    return self._send(200, body, ctype, length=False)
                if parts[0] == "status" and len(parts) == 2:
                    return self._send(int(parts[1]), b"<html>nope</html>", "text/html")
                if parts[0] == "slow":
                    upstream.slow_started.set()
                    time.sleep(float(q.get("s", ["2"])[0]))
                    return self._send(200, png_bytes(24, 16), "image/png")
                if parts[0] == "redirect":
                    return self._send(302, b"", "text/plain", {"Location": q["to"][0]})
                if parts[0] == "loop":
                    n = int(parts[1]) + 1 if len(parts) > 1 else 1
                    return self._send(302, b"", "text/plain", {"Location": f"/loop/{n}"})
                return self._send(404, b"not here", "text/plain")

        server_class = ThreadingHTTPServer
        if ":" in host:
            class ServerV6(ThreadingHTTPServer):
                address_family = socket.AF_INET6
            server_class = ServerV6
        self.httpd = server_class((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"upstream-{host}", daemon=True)
        self.thread.start()

    def add(self, name: str, body: bytes, ctype: str = "image/png") -> str:
        self.files[name] = (body, ctype)
        return self.url(f"/file/{name}")

    def url(self, path: str, host: str | None = None) -> str:
        host = host or self.host
        return f"http://[{host}]:{self.port}{path}" if ":" in host else f"http://{host}:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# Address ranges maskmaker refuses without --allow-private-urls (src/server/url_fetch.cpp).
_FORBIDDEN_V4 = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4")]


def local_unguarded_address() -> str | None:
    """An IPv4 address of this machine that maskmaker's URL guard does not refuse, if there is one (a machine
    with a public or documentation-range address). Used to test that a redirect to loopback is refused."""
    candidates = set()
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            f = line.split()
            if "inet" in f:
                candidates.add(f[f.index("inet") + 1].split("/")[0])
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            candidates.add(info[4][0])
    except OSError:
        pass
    for a in sorted(candidates):
        ip = ipaddress.ip_address(a)
        if any(ip in n for n in _FORBIDDEN_V4):
            continue
        try:  # must be bindable here
            with socket.socket() as s:
                s.bind((a, 0))
            return a
        except OSError:
            continue
    return None


def has_tool(name: str) -> bool:
    return shutil.which(name) is not None
