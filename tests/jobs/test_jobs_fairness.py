"""Fair jobs: caps per key (jobs and bytes: 429, nothing charged), webhooks bounded per destination (a tarpit
receiver does not hold up others), pending webhooks taken over from a dead process of another host, storage errors
(503 with Retry-After, nothing charged), and a private default jobs file."""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import time

import jobs_helpers as h


def _wait(cond, what: str, server=None, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s" + (f"\n{server.log()[-3000:]}" if server else ""))
        time.sleep(0.05)


def test_caps_per_key_answer_429_and_charge_nothing(start_server, tmp_path, upstream):
    db = tmp_path / "keys.db"
    one_image = len(h.noisy_png(0))
    greedy = h.add_key(db, "greedy", 3)
    bulky = h.add_key(db, "bulky")
    other = h.add_key(db, "other")
    s = start_server("--keys-db", str(db), "--allow-private-urls", "--max-concurrent", "1", "--jobs-per-key", "2",
                     "--jobs-bytes-per-key", str(one_image + one_image // 2), name="caps")
    # The worker is held by a slow fetch: the key's jobs stay unfinished (PROCESSING, then QUEUED).
    slow = s.submit({"prompt": "dog", "image": upstream.url("/slow?s=6")}, greedy).json()["request_id"]
    _wait(lambda: s.status(slow, greedy).json()["status"] == "PROCESSING", "slow job running", s)
    queued = s.submit({"prompt": "dog", "image": h.b64(h.png(800))}, greedy)
    assert queued.status_code == 200, queued.text
    r = s.submit({"prompt": "dog", "image": h.b64(h.png(801))}, greedy)
    assert r.status_code == 429, r.text
    assert r.json()["error"] == ("this API key has 2 unfinished jobs, the most it may have: submit more when some "
                                 "finish")
    # another key is not held up by this one
    ok = s.submit({"prompt": "dog", "image": h.b64(h.png(802))}, other)
    assert ok.status_code == 200, ok.text

    # bytes: one noisy image fits, a second one does not; one bigger than the whole share is a 413
    first = s.submit({"prompt": "dog", "image": h.b64(h.noisy_png(0))}, bulky)
    assert first.status_code == 200, first.text
    r = s.submit({"prompt": "dog", "image": h.b64(h.noisy_png(1))}, bulky)
    assert r.status_code == 429 and "images of up to" in r.json()["error"], r.text
    r = s.submit({"prompt": "dog", "image": h.b64(h.noisy_png(2, 96))}, bulky)
    assert r.status_code == 413 and "more than one key's queued jobs may hold" in r.json()["error"], r.text

    # The refused submit took no credit: once the two jobs are done, the third credit is still there.
    for rid in (slow, queued.json()["request_id"]):
        assert s.wait_status(rid, greedy)["status"] == "COMPLETED"
    last = s.submit({"prompt": "dog", "image": h.b64(h.png(803))}, greedy)
    assert last.status_code == 200, last.text
    assert s.submit({"prompt": "dog", "image": h.b64(h.png(804))}, greedy).status_code == 406
    assert s.wait_status(last.json()["request_id"], greedy)["status"] == "COMPLETED"


def test_keys_take_turns_in_the_queue(start_server, tmp_path, upstream):
    """One worker, one key's backlog of jobs whose image URLs stall, then another key's job: the other key's job runs
    next (round robin between keys), not after the whole backlog."""
    db = tmp_path / "keys.db"
    flood, other = h.add_key(db, "flood"), h.add_key(db, "other")
    s = start_server("--keys-db", str(db), "--jobs-db", str(tmp_path / "jobs.db"), "--allow-private-urls",
                     "--max-concurrent", "1", name="turns")
    slow = [s.submit({"prompt": "dog", "image": upstream.url(f"/slow?s=3&n={i}")}, flood).json()["request_id"]
            for i in range(3)]
    _wait(lambda: s.status(slow[0], flood).json()["status"] == "PROCESSING", "the first slow job running", s)
    mine = s.submit({"prompt": "dog", "image": h.b64(h.png(820))}, other).json()["request_id"]
    assert s.wait_status(mine, other)["status"] == "COMPLETED"
    # The backlog's last job has not started: the other key's job went before it.
    assert s.status(slow[2], flood).json()["status"] == "QUEUED"
    for rid in slow:
        assert s.wait_status(rid, flood)["status"] == "COMPLETED"


def test_a_tarpit_webhook_does_not_delay_other_destinations(start_server, tmp_path, receiver, receiver2):
    s = start_server("--jobs-db", str(tmp_path / "jobs.db"), "--allow-private-urls",
                     "--jobs-webhook-timeout-ms", "300000", name="tarpit")
    try:
        slow = [s.submit({"prompt": "dog", "image": h.b64(h.png(810 + i)),
                          "webhook_url": receiver2.url(f"/tarpit/{i}")}).json()["request_id"] for i in range(3)]
        for rid in slow:
            assert s.wait_status(rid, None)["status"] == "COMPLETED"
        _wait(lambda: receiver2.in_flight == 2, "two webhook calls held by the tarpit", s)
        # The tarpit's host on another port is the same destination: its webhook, due first, waits its turn.
        other_port = h.Receiver("127.0.0.2")
        try:
            same_host = s.submit({"prompt": "dog", "image": h.b64(h.png(814)),
                                  "webhook_url": other_port.url("/hook/same-host")}).json()["request_id"]
            assert s.wait_status(same_host, None)["status"] == "COMPLETED"
            fast = s.submit({"prompt": "dog", "image": h.b64(h.png(813)), "webhook_url": receiver.url("/hook/fast")})
            rid = fast.json()["request_id"]
            _wait(lambda: receiver.calls_to("/hook/fast"), "the other destination's webhook", s)
            assert receiver.calls_to("/hook/fast")[0][2]["request_id"] == rid
            assert other_port.calls_to("/hook/same-host") == [], "a third call to the tarpit's host went out"
            # still held: at most 2 calls at once to one destination, the third waits its turn
            assert receiver2.in_flight == 2
        finally:
            receiver2.release.set()
            _wait(lambda: other_port.calls_to("/hook/same-host"), "the same host's webhook, once room was made", s)
            other_port.close()
    finally:
        receiver2.release.set()
    _wait(lambda: len([c for c in receiver2.calls if c[0].startswith("/tarpit/")]) == 3, "the tarpit calls", s)
    assert sorted(c[0] for c in receiver2.calls if c[0].startswith("/tarpit/")) == [f"/tarpit/{i}" for i in range(3)]


def test_pending_webhooks_of_a_dead_process_elsewhere_are_sent_once(start_server, tmp_path, receiver):
    jobs_db = tmp_path / "jobs.db"
    s = start_server("--jobs-db", str(jobs_db), "--allow-private-urls", name="takeover")
    rids = [s.submit({"prompt": "dog", "image": h.b64(h.png(820 + i))}).json()["request_id"] for i in range(2)]
    for rid in rids:
        assert s.wait_status(rid, None)["status"] == "COMPLETED"
    assert s.stop() == 0
    # As a replica on another machine leaves them: it finished the jobs, then died holding their webhooks. The
    # first lease has run out; the second is still held (a live process): it is not this process's to send.
    with sqlite3.connect(jobs_db) as db:
        for i, (rid, lease) in enumerate(zip(rids, (time.time() - 1, time.time() + 3600))):
            db.execute("UPDATE jobs SET webhook_url = ?, webhook_state = 1, webhook_owner = ?, webhook_lease = ? "
                       "WHERE id = ?", (receiver.url(f"/moved/{i}"), "elsewhere|1|abcdef", lease, rid))
    s.restart()
    _wait(lambda: receiver.calls_to("/moved/0"), "the taken-over webhook", s)
    time.sleep(1.5)  # no second call comes
    calls = receiver.calls_to("/moved/0")
    assert len(calls) == 1 and calls[0][2] == s.result(rids[0]).json()
    assert receiver.calls_to("/moved/1") == []
    with sqlite3.connect(jobs_db) as db:
        states = dict(db.execute("SELECT id, webhook_state FROM jobs"))
    assert states[rids[0]] == 2 and states[rids[1]] == 1  # delivered; still pending


def test_a_busy_jobs_database_is_a_503_and_charges_nothing(start_server, tmp_path):
    db = tmp_path / "keys.db"
    key = h.add_key(db, "k", 1)
    s = start_server("--keys-db", str(db), name="busy")  # the jobs file is made at start, beside the keys
    lock = sqlite3.connect(tmp_path / "keys-jobs.db", isolation_level=None, timeout=60)
    lock.execute("BEGIN EXCLUSIVE")  # every writer waits, then gives up (SQLITE_BUSY)
    try:
        r = s.submit({"prompt": "dog", "image": h.b64(h.png(831))}, key)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "the jobs database is unavailable (database is locked): retry shortly"
    assert r.headers["Retry-After"] == "2"
    assert "jobs database: database is locked" in s.log()
    # the key's one credit is still there
    ok = s.submit({"prompt": "dog", "image": h.b64(h.png(831))}, key)
    assert ok.status_code == 200, ok.text
    assert s.wait_status(ok.json()["request_id"], key)["status"] == "COMPLETED"


def _serve(env: dict, *args: str) -> subprocess.Popen:
    port = h.free_port()
    cmd = [str(h.BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--models", h.MODELS, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), port


def test_the_default_jobs_file_is_private(tmp_path):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"} | {"XDG_STATE_HOME": str(state)}
    proc, port = _serve(env)
    server = h.Server.__new__(h.Server)  # only for its API helpers, on this process's port
    server.port, server.proc = port, proc
    try:
        assert server._wait_ready(), proc.stdout.read() if proc.poll() is not None else "not ready"
        rid = server.submit({"prompt": "dog", "image": h.b64(h.png(840))}).json()["request_id"]
        deadline = time.monotonic() + 120
        while server.status(rid).json()["status"] not in h.FINAL:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(60)
    folder = state / "maskmaker"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / f"jobs-{port}.db").stat().st_mode) == 0o600

    # A folder others may write to is refused, not used.
    folder.chmod(0o777)
    proc, _ = _serve(env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert f"{folder} (for the jobs database) is not a folder of this user that only it may write to" in out, out
