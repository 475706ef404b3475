"""What the pytest suites share: where the binary, the model pack and the shared data are, and small helpers.

Each suite's helper module (server/mm_helpers.py, jobs/jobs_helpers.py, native/native_support.py,
scaleout/scaleout_helpers.py) re-exports these, so tests keep using `h.b64`, `h.BIN`, ...

The binary is $MASKMAKER_BIN, else <repo>/build/maskmaker; the model pack $MASKMAKER_MODELS, else
<repo>/models/default; sample photos $MASKMAKER_SHARED/data/samples, else <repo>/../shared/data/samples.
"""
from __future__ import annotations

import base64
import io
import os
import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKMAKER_SHARED") or (REPO.parent / "shared")).resolve()
SAMPLES = SHARED / "data" / "samples"
BIN = Path(os.environ.get("MASKMAKER_BIN") or (REPO / "build" / "maskmaker"))
MODELS = os.environ.get("MASKMAKER_MODELS") or str(REPO / "models" / "default")

COMPAT = "/v1/inpaint-mask-maker"
NATIVE = "/v1/masks"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sample(name: str) -> bytes:
    """A sample photo's bytes; skips the test when ../shared is not there."""
    path = SAMPLES / name
    if not path.is_file():
        import pytest
        pytest.skip(f"sample image {path} is missing (set MASKMAKER_SHARED)")
    return path.read_bytes()


def encode(image, fmt: str, **kw) -> bytes:
    """A PIL image saved in memory as `fmt`."""
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def open_image(data: bytes):
    """A fully loaded PIL image from encoded bytes."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    return im
