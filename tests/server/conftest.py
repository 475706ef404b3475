"""Fixtures for the HTTP tests of `maskmaker serve`.

The binary is $MASKMAKER_BIN, else <repo>/build/maskmaker; the model pack is $MASKMAKER_MODELS, else
<repo>/models/default; sample photos come from $MASKMAKER_SHARED/data/samples, else <repo>/../shared/data/samples.

- `server`: one open-access server for the whole session (most tests use it);
- `upstream`: a local HTTP server on 127.0.0.1 that hosts test images;
- `start_server(*args)`: starts an extra server with other flags; stopped when the test (or module) ends.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mm_helpers as h  # noqa: E402


def _stop_all(servers, check_exit: bool):
    errors = []
    for s in servers:
        if s.alive():
            rc = s.stop()
            if check_exit and rc != 0:
                errors.append(f"{s.name} exited with {rc} on SIGTERM:\n{s.log()[-4000:]}")
        s.cleanup()
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture(scope="session")
def server():
    try:
        s = h.MaskmakerServer(name="session")
    except h.ServerStartError as e:
        pytest.fail(str(e))
    yield s
    _stop_all([s], check_exit=True)


@pytest.fixture(scope="session")
def upstream():
    u = h.Upstream("127.0.0.1")
    yield u
    u.close()


def _factory():
    started = []

    def start(*args, **kw):
        try:
            s = h.MaskmakerServer(*args, **kw)
        except h.ServerStartError as e:
            pytest.fail(str(e))
        started.append(s)
        return s

    return start, started


@pytest.fixture
def start_server():
    start, started = _factory()
    yield start
    _stop_all(started, check_exit=True)


@pytest.fixture(scope="module")
def start_module_server():
    start, started = _factory()
    yield start
    _stop_all(started, check_exit=True)


@pytest.fixture(scope="session")
def small_png() -> bytes:
    return h.png_bytes(48, 32)


@pytest.fixture(scope="session")
def bus_small() -> bytes:
    """bus.jpg at a third of its size (270 x 360), one JPEG for every test that needs a real photo: the session
    server then encodes its image embedding once and answers later requests from its cache."""
    return h.encode(h.open_image(h.sample("bus.jpg")).resize((270, 360)), "JPEG", quality=90)
