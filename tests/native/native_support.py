"""Helpers for tests/native: the server process, a checker that validates live answers against the OpenAPI
document the server serves, mask geometry in NumPy (erosion, distances), and the sample photo.

The binary is $MASKMAKER_BIN, else <repo>/build/maskmaker; the model pack $MASKMAKER_MODELS, else
<repo>/models/default; samples come from $MASKMAKER_SHARED/data/samples, else <repo>/../shared/data/samples.
"""
from __future__ import annotations

import base64
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image  # noqa: F401  (tests use ns.Image)

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: the suites' shared testlib.py
from testlib import REPO, SHARED, SAMPLES, BIN, MODELS, COMPAT, NATIVE, free_port, b64, encode, open_image  # noqa: E402,F401

CLIENT_SRC = REPO / "clients" / "python" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

TIMEOUT = 120
PHOTO = "darknet_person_dog_horse.jpg"  # 640 x 424: a person, a dog and a horse
PROMPT = "dog, horse, person"  # the reference request: confidence 0.3, grow_mask 0 (conftest.base)


# ------------------------------------------------------------------------------------------------ images

def mask_array(data: bytes) -> np.ndarray:
    im = open_image(data)
    assert im.mode == "L", im.mode
    return np.asarray(im).copy()


def png_data_uri_array(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,"), uri[:40]
    return mask_array(base64.b64decode(uri.split(",", 1)[1]))


# ------------------------------------------------------------------------------------------------ mask geometry

def disc_offsets(r: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r]


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels with no background pixel within Euclidean distance r (outside the image counts as inside)."""
    m = mask > 0
    p = np.pad(m, r, constant_values=True)
    out = np.ones_like(m)
    h, w = m.shape
    for dy, dx in disc_offsets(r):
        out &= p[r + dy:r + dy + h, r + dx:r + dx + w]
    return out


def distance_outside(mask: np.ndarray, limit: int) -> np.ndarray:
    """For each pixel outside `mask`, the exact Euclidean distance to the nearest pixel inside, where it is at most
    `limit` (+inf beyond, 0 inside): the minimum over the disc of offsets, by shifting."""
    m = mask > 0
    h, w = m.shape
    dist = np.full(m.shape, np.inf)
    dist[m] = 0.0
    p = np.pad(m, limit, constant_values=False)
    for dy, dx in disc_offsets(limit):
        d = float(np.hypot(dy, dx))
        hit = p[limit + dy:limit + dy + h, limit + dx:limit + dx + w]
        dist[hit & (dist > d)] = d
    return dist


# ------------------------------------------------------------------------------------------------ OpenAPI

class OpenApi:
    """Validates answers against an OpenAPI 3.1 document: the status is documented for the operation, the
    required headers are there and parse as their schema says, the Content-Type is one the answer lists, and a
    JSON body validates against its schema (JSON Schema 2020-12, "#/components/..." refs resolved in the
    document)."""

    def __init__(self, doc: dict):
        from jsonschema import Draft202012Validator, RefResolver

        self.doc = doc
        self._resolver = RefResolver.from_schema(doc)
        self._validator = Draft202012Validator
        self.checked: list[tuple[str, str, int, str]] = []  # (method, path, status, content type)

    def deref(self, obj: Any) -> Any:
        while isinstance(obj, dict) and "$ref" in obj:
            _, obj = self._resolver.resolve(obj["$ref"])
        return obj

    def validate(self, instance: Any, schema: dict) -> None:
        self._validator(schema, resolver=self._resolver).validate(instance)

    def errors(self, instance: Any, schema: dict) -> list[str]:
        return [e.message for e in self._validator(schema, resolver=self._resolver).iter_errors(instance)]

    def operation(self, method: str, path: str) -> dict | None:
        return self.doc["paths"].get(path, {}).get(method.lower())

    def response_spec(self, method: str, path: str, status: int) -> dict:
        op = self.operation(method, path)
        if op is None:
            responses = self.doc["components"]["responses"]
            if path not in self.doc["paths"]:
                assert status == 404, f"{method} {path}: undocumented path answered {status}"
                return self.deref(responses["NotFound"])
            assert status == 405, f"{method} {path}: undocumented method answered {status}"
            return self.deref(responses["MethodNotAllowed"])
        spec = op["responses"].get(str(status)) or op["responses"].get("default")
        assert spec is not None, f"{method} {path}: status {status} is not documented"
        return self.deref(spec)

    def check(self, response: requests.Response) -> None:
        req = response.request
        path = req.path_url.split("?", 1)[0]
        method = req.method
        spec = self.response_spec(method, path, response.status_code)
        where = f"{method} {path} -> {response.status_code}"
        for name, header in spec.get("headers", {}).items():
            header = self.deref(header)
            value = response.headers.get(name)
            if value is None:
                assert not header.get("required"), f"{where}: required header {name} is missing"
                continue
            schema = header.get("schema", {})
            typ = schema.get("type")
            parsed: Any = value
            if typ == "integer":
                assert value.strip().lstrip("-").isdigit(), f"{where}: header {name}: {value!r} is not an integer"
                parsed = int(value)
            elif typ == "number":
                parsed = float(value)
            errs = self.errors(parsed, schema)
            assert not errs, f"{where}: header {name}={value!r}: {errs}"
        content = spec.get("content")
        ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not content:
            assert not response.content, f"{where}: a body where the document describes none"
            self.checked.append((method, path, response.status_code, ""))
            return
        assert ctype in content, f"{where}: Content-Type {ctype!r} is not one of {sorted(content)}"
        schema = content[ctype].get("schema", {})
        if ctype == "application/json":
            body = response.json()
            errs = self.errors(body, schema)
            assert not errs, f"{where}: the body does not match the document: {errs[:5]}"
        elif ctype.startswith("image/"):
            im = open_image(response.content)
            assert im.format.lower() == ctype.split("/")[1], f"{where}: a {im.format} body served as {ctype}"
        self.checked.append((method, path, response.status_code, ctype))


def checked_session(api: OpenApi) -> requests.Session:
    """A requests session whose every answer is validated against the document (an AssertionError in the test
    that made the request otherwise)."""
    s = requests.Session()

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        api.check(response)

    s.hooks["response"].append(hook)
    return s


# ------------------------------------------------------------------------------------------------ the server

class Server:
    """One `maskmaker serve` on 127.0.0.1 and a free port; its log in a temporary file."""

    def __init__(self, *args: str, name: str = "native", wait_ready: bool = True):
        if not BIN.is_file():
            raise RuntimeError(f"maskmaker binary not found at {BIN}: build it or set MASKMAKER_BIN")
        self.name = name
        self._log = tempfile.NamedTemporaryFile(prefix=f"maskmaker-{name}-", suffix=".log", delete=False)
        self.session = requests.Session()
        for attempt in range(5):  # the port may be taken between free_port() and the bind: try another
            self.port = free_port()
            cmd = [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--models", MODELS, *args]
            self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait("/healthz", 30):
                break
            if attempt == 4:
                raise RuntimeError(f"{name}: maskmaker serve did not start:\n{self.log()}")
        if wait_ready:
            self.wait_ready()

    def _wait(self, path: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if requests.get(self.url(path), timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.03)
        return False

    def wait_ready(self, timeout: float = 180) -> None:
        if not self._wait("/readyz", timeout):
            raise RuntimeError(f"{self.name}: not ready after {timeout} s:\n{self.log()}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def post(self, body: dict | None = None, *, path: str = NATIVE, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", TIMEOUT)
        if body is not None:
            kw["json"] = body
        return self.session.post(self.url(path), **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url(path), timeout=kw.pop("timeout", 30), **kw)

    def log(self) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int:
        self.session.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        rc = self.proc.returncode
        if rc == 0:
            Path(self._log.name).unlink(missing_ok=True)
        return rc


class Silent:
    """A listening socket that accepts connections and never answers (an image host that hangs)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def keys_cli(db: Path, *args: str) -> str:
    out = subprocess.run([str(BIN), "keys", "--db", str(db), *args], capture_output=True, text=True, timeout=60,
                         check=True)
    return out.stdout.strip()
