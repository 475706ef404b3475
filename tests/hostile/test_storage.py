"""Storage faults: a keys database that cannot be written is a 503 with Retry-After (the client retries), never a
401 "unknown API key" or 406 "no credits left", and nothing is charged.

Tests run as root, for whom file permissions do not make a file read-only, so the fault is another process holding
the database's write lock (SQLITE_BUSY once the server's busy timeout, 5 s, has passed)."""
import json
import sqlite3
import subprocess

import pytest
import requests

from .common import BIN, COMPAT, Server, b64, fresh_images


def keys_cli(db, *args):
    return subprocess.run([str(BIN), "keys", "--db", str(db), *args], check=True, capture_output=True, text=True).stdout


def credits_row(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT credits, used FROM keys WHERE name = 'storage'").fetchone()


def post(srv, key):
    body = {"prompt": "person", "image": b64(fresh_images(1)[0]), "return_mask": True}
    return requests.post(srv.url + COMPAT, data=json.dumps(body),
                         headers={"Content-Type": "application/json", "x-api-key": key}, timeout=120)


@pytest.fixture()
def keyed_server(tmp_path):
    if not BIN.exists():
        pytest.skip(f"maskmaker binary not built at {BIN}")
    db = tmp_path / "keys.db"
    key = keys_cli(db, "add", "storage", "--credits", "5").strip()
    srv = Server("storage", "--threads", "2", "--max-concurrent", "1", "--keys-db", str(db))
    yield srv, db, key
    srv.terminate()


def test_locked_keys_database_is_503_and_charges_nothing(keyed_server):
    srv, db, key = keyed_server
    r = post(srv, key)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["x-remaining-credits"] == "4"
    assert credits_row(db) == (4, 1)

    # Another process takes the write lock (WAL: readers go on, writers wait) and keeps it past the busy timeout.
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = post(srv, key)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers.get("Retry-After") == "2"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"error": "the keys database is unavailable (database is locked): retry shortly"}
    assert "x-credits-consumed" not in r.headers
    assert credits_row(db) == (4, 1), "a request answered 503 was charged"
    assert srv.alive()
    log = srv.log_path.read_text(errors="replace")
    assert "keys database: database is locked" in log, log[-2000:]

    # The lock gone, the same key works and counts on from where it was.
    r = post(srv, key)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["x-remaining-credits"] == "3"
    assert credits_row(db) == (3, 2)
