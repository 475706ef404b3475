"""Fixtures for the scale-out tests: one PostgreSQL cluster for the session, three replicas and nginx."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scaleout_helpers as h  # noqa: E402


@pytest.fixture(scope="session")
def postgres():
    bindir = h.postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: "
                    "apt-get install postgresql (scripts/setup.sh does)")
    pg = h.Postgres(bindir)
    yield pg
    pg.close()


@pytest.fixture(scope="session")
def maskmaker_bin():
    if not h.BIN.is_file():
        pytest.fail(f"maskmaker binary not found at {h.BIN}: build it or set MASKMAKER_BIN")
    return h.BIN


@pytest.fixture(scope="session")
def nginx_bin():
    b = h.nginx_binary()
    if b is None:
        pytest.skip("nginx not found: apt-get install nginx (scripts/setup.sh does)")
    return b
