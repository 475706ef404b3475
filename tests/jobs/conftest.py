"""Fixtures of the asynchronous jobs tests.

- `main`: one server for the session, with a keys database (keys in `keys`: alice 1000 credits, bob unlimited,
  broke 0 credits) and --allow-private-urls (so that jobs may fetch from `upstream` and call `receiver`);
- `upstream`: a local image host; `receiver`, `receiver2`: local webhook receivers (on 127.0.0.1, two ports);
- `start_server(*args)`: another server, stopped when the test ends.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jobs_helpers as h  # noqa: E402


def _stop(servers):
    errors = []
    for s in servers:
        if s.alive():
            rc = s.stop()
            if rc != 0:
                errors.append(f"{s.name} exited with {rc} on SIGTERM:\n{s.log()[-3000:]}")
                continue
        s.cleanup()  # its log, kept when something failed
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture(scope="session")
def upstream():
    u = h.Upstream()
    yield u
    u.close()


@pytest.fixture(scope="session")
def receiver():
    r = h.Receiver()
    yield r
    r.close()


@pytest.fixture(scope="session")
def receiver2():
    r = h.Receiver("127.0.0.2")  # another host than `receiver` (webhooks are bounded per host)
    yield r
    r.close()


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    db = tmp_path_factory.mktemp("keys") / "keys.db"
    return {"db": db, "alice": h.add_key(db, "alice", 1000), "bob": h.add_key(db, "bob"),
            "broke": h.add_key(db, "broke", 0)}


@pytest.fixture(scope="session")
def main(keys):
    try:
        # 100 jobs of one key at once (test_100_jobs_...): over the default cap of unfinished jobs per key
        s = h.Server("--keys-db", str(keys["db"]), "--allow-private-urls", "--jobs-per-key", "200", name="main")
    except RuntimeError as e:
        pytest.fail(str(e))
    yield s
    _stop([s])


@pytest.fixture
def start_server():
    started = []

    def start(*args, name="extra"):
        try:
            s = h.Server(*args, name=name)
        except RuntimeError as e:
            pytest.fail(str(e))
        started.append(s)
        return s

    yield start
    _stop(started)
