"""Fixtures for tests/hostile: a strict server (private URLs refused, small limits so the limit cases are cheap),
a server that allows private URLs (to reach the local upstream), and the upstream itself. The table of every case
(family, cases, passed, expected statuses) is printed at the end of the session and written to
$MASKMAKER_TEST_OUT/hostile/summary.txt."""
import json

import pytest

from . import common
from .common import Server, Upstream, sample_bytes

BODY_LIMIT = 1_048_576
FETCH_LIMIT = 262_144
FETCH_TIMEOUT_MS = 1500


def _limits():
    return ["--threads", "2", "--max-concurrent", "1", "--queue-length", "64",
            "--max-body-bytes", str(BODY_LIMIT), "--fetch-timeout-ms", str(FETCH_TIMEOUT_MS),
            "--fetch-max-bytes", str(FETCH_LIMIT)]


@pytest.fixture(scope="session")
def strict():
    if not common.BIN.exists():
        pytest.skip(f"maskmaker binary not built at {common.BIN}")
    srv = Server("hostile-strict", *_limits())
    yield srv
    srv.terminate()


@pytest.fixture(scope="session")
def private():
    if not common.BIN.exists():
        pytest.skip(f"maskmaker binary not built at {common.BIN}")
    srv = Server("hostile-private", *_limits(), "--allow-private-urls")
    yield srv
    srv.terminate()


@pytest.fixture(scope="session")
def upstream():
    up = Upstream(sample_bytes("hopper.jpg"))
    yield up
    up.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    common.OUT.mkdir(parents=True, exist_ok=True)
    if common.RESULTS:
        lines = common.summary_lines()
        terminalreporter.section("hostile inputs: summary")
        for line in lines:
            terminalreporter.write_line(line)
        (common.OUT / "summary.txt").write_text("\n".join(lines) + "\n")
    if common.FIGURES:
        terminalreporter.section("overload and faults: figures")
        for name, figures in common.FIGURES.items():
            terminalreporter.write_line(f"{name}: {json.dumps(figures)}")
