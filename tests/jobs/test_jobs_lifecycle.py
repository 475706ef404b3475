"""Jobs across restarts (kill -9, SIGTERM), the bounded queue, expiry by time and by the result budget, webhooks."""
from __future__ import annotations

import base64
import sqlite3
import time

import jobs_helpers as h


def _wait_processing(server, rid, key):
    return server.wait_status(rid, key, wanted=("PROCESSING",) + h.FINAL, timeout=60)


def test_kill9_queued_jobs_complete_after_restart_and_a_job_is_retried_once(start_server, tmp_path, upstream):
    db = tmp_path / "keys.db"
    key = h.add_key(db, "k")
    s = start_server("--keys-db", str(db), "--allow-private-urls", "--max-concurrent", "1", name="crashy")
    # The worker is busy fetching a slow image: the job is PROCESSING, the next ones wait in the queue.
    slow = s.submit({"prompt": "dog", "image": upstream.url("/slow?s=4")}, key).json()["request_id"]
    assert _wait_processing(s, slow, key)["status"] == "PROCESSING"
    queued = [s.submit({"prompt": "dog", "image": h.b64(h.png(200 + i)), "return_mask": True}, key)
              .json()["request_id"] for i in range(5)]
    assert all(s.status(rid, key).json()["status"] == "QUEUED" for rid in queued)
    assert s.status(queued[-1], key).json()["queue_position"] == 4
    s.kill9()

    s.restart()  # same flags, same database (jobs beside the keys: keys-jobs.db)
    assert (tmp_path / "keys-jobs.db").is_file()
    for rid in [slow] + queued:
        assert s.wait_status(rid, key, timeout=90)["status"] == "COMPLETED", s.log()[-3000:]
    assert s.result(slow, key).json()["metrics"]["attempts"] == 2  # taken again after the crash
    assert s.result(queued[0], key).json()["metrics"]["attempts"] == 1
    assert "queued again" in s.log()

    # A job whose server dies twice while running it is not tried a third time.
    twice = s.submit({"prompt": "dog", "image": upstream.url("/slow?s=5")}, key).json()["request_id"]
    assert _wait_processing(s, twice, key)["status"] == "PROCESSING"
    s.kill9()
    s.restart()
    deadline = time.monotonic() + 30  # found by the new process, queued again, then taken
    while f"job id={twice}: its server stopped while running it; queued again" not in s.log():
        assert time.monotonic() < deadline, s.log()[-3000:]
        time.sleep(0.1)
    assert _wait_processing(s, twice, key)["status"] == "PROCESSING"
    s.kill9()
    s.restart()
    final = s.wait_status(twice, key, timeout=30)
    assert final["status"] == "FAILED"
    assert "the server stopped while running this job, 2 times; it is not retried again" == final["error"]
    assert s.result(twice, key).status_code == 422
    m = s.metrics()
    assert h.metric(m, 'maskmaker_jobs_total{event="failed"}') == 1


def test_full_queue_503_and_sigterm_keeps_queued_jobs(start_server, tmp_path, upstream):
    jobs_db = tmp_path / "jobs.db"
    s = start_server("--jobs-db", str(jobs_db), "--allow-private-urls", "--max-concurrent", "1",
                     "--jobs-queue-length", "3", name="full")
    slow = s.submit({"prompt": "dog", "image": upstream.url("/slow?s=3")}).json()["request_id"]
    assert _wait_processing(s, slow, None)["status"] == "PROCESSING"
    queued = []
    for i in range(3):
        r = s.submit({"prompt": "dog", "image": h.b64(h.png(300 + i))})
        assert r.status_code == 200, r.text
        queued.append(r.json()["request_id"])
    r = s.submit({"prompt": "dog", "image": h.b64(h.png(399))})
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] and "job queue is full" in r.json()["error"]

    t = time.monotonic()
    assert s.stop() == 0  # SIGTERM: the job in hand finishes or goes back to the queue; queued ones stay
    assert time.monotonic() - t < 30
    assert "stopped" in s.log()
    with sqlite3.connect(jobs_db) as db:  # what is left for the next start
        left = dict(db.execute("SELECT id, status FROM jobs"))
    assert [left[rid] for rid in queued] == ["QUEUED"] * 3
    assert left[slow] in ("QUEUED", "COMPLETED")  # the job in hand: returned to the queue, or finished
    s.restart()
    for rid in [slow] + queued:
        assert s.wait_status(rid, None, timeout=60)["status"] == "COMPLETED"


def test_expiry_by_time_and_by_result_budget(start_server, main, keys, tmp_path):
    # The size of one result: a 64x64 mask of nothing, as the synchronous endpoint makes it.
    body = {"prompt": "unicorn", "image": h.b64(h.png(400)), "return_mask": True}
    one = len(main.sync(body, keys["bob"]).content)

    budget = start_server("--jobs-db", str(tmp_path / "b.db"), "--jobs-max-result-bytes", str(2 * one + one // 2),
                          name="budget")
    rids = []
    for i in range(3):  # one after the other: the oldest result goes first
        rid = budget.submit(body).json()["request_id"]
        assert budget.wait_status(rid, None)["status"] == "COMPLETED"
        rids.append(rid)
    gone = budget.result(rids[0])
    assert gone.status_code == 404 and "expired" in gone.json()["error"]
    assert budget.status(rids[0]).status_code == 404
    for rid in rids[1:]:
        r = budget.result(rid)
        assert r.status_code == 200 and len(base64.b64decode(r.json()["output"]["image"])) == one
    assert h.metric(budget.metrics(), 'maskmaker_jobs_total{event="expired"}') == 1

    # Fair to the keys: a key whose results overflow the budget loses its own oldest, not another key's answer.
    fair = start_server("--jobs-db", str(tmp_path / "f.db"), "--keys-db", str(keys["db"]),
                        "--jobs-max-result-bytes", str(3 * one + one // 2), name="budget-fair")
    victim = fair.submit(body, keys["bob"]).json()["request_id"]
    assert fair.wait_status(victim, keys["bob"])["status"] == "COMPLETED"
    flood = []
    for i in range(3):
        rid = fair.submit(body, keys["alice"]).json()["request_id"]
        assert fair.wait_status(rid, keys["alice"])["status"] == "COMPLETED"
        flood.append(rid)
    r = fair.result(victim, keys["bob"])
    assert r.status_code == 200, r.text  # the oldest result overall, kept: its key holds the least
    gone = fair.result(flood[0], keys["alice"])
    assert gone.status_code == 404 and "expired" in gone.json()["error"]
    for rid in flood[1:]:
        assert fair.result(rid, keys["alice"]).status_code == 200

    ttl = start_server("--jobs-db", str(tmp_path / "t.db"), "--jobs-ttl-seconds", "2", name="ttl")
    rid = ttl.submit(body).json()["request_id"]
    assert ttl.wait_status(rid, None)["status"] == "COMPLETED"
    deadline = time.monotonic() + 15
    while ttl.result(rid).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
    r = ttl.result(rid)
    assert r.status_code == 404, r.text
    assert "expired" in r.json()["error"] and "kept 2 s" in r.json()["error"]
    assert ttl.status(rid).status_code == 404
    assert h.metric(ttl.metrics(), 'maskmaker_jobs_total{event="expired"}') == 1
    # an id that never existed says so, not "expired"
    assert "expired" not in ttl.result("a" * 32).json()["error"]


def test_webhooks_are_called_once_per_job(main, keys, upstream, receiver):
    key = keys["alice"]
    ok = main.submit({"prompt": "dog", "image": h.b64(h.png(500)), "webhook_url": receiver.url("/hook/ok")},
                     key).json()["request_id"]
    bad = main.submit({"prompt": "dog", "image": upstream.url("/status/404"), "webhook_url": receiver.url("/hook/bad")},
                      key).json()["request_id"]
    flaky = main.submit({"prompt": "dog", "image": h.b64(h.png(501)), "webhook_url": receiver.url("/flaky/1")},
                        key).json()["request_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (receiver.calls_to("/hook/ok") and receiver.calls_to("/hook/bad")
                                               and len(receiver.calls_to("/flaky/1")) >= 2):
        time.sleep(0.1)
    time.sleep(1.5)  # no second call comes

    calls = receiver.calls_to("/hook/ok")
    assert len(calls) == 1
    assert calls[0][2] == main.result(ok, key).json()  # the final body, the image included
    assert calls[0][2]["status"] == "COMPLETED" and calls[0][2]["output"]["image"]

    calls = receiver.calls_to("/hook/bad")
    assert len(calls) == 1
    assert calls[0][2] == {"request_id": bad, "status": "FAILED", "error": "the image URL answered HTTP 404"}

    calls = receiver.calls_to("/flaky/1")  # a failed try (500) is retried after a back-off
    assert [c[1] for c in calls] == [500, 200]
    assert calls[1][2]["request_id"] == flaky

    m = main.metrics()
    assert h.metric(m, 'maskmaker_webhook_deliveries_total{result="delivered"}') >= 3
    assert h.metric(m, 'maskmaker_webhook_deliveries_total{result="retried"}') >= 1
