"""/v2 jobs on any replica: the PostgreSQL job store (issue 17).

Three `maskmaker serve --threads 1 --max-concurrent 1` replicas on 127.0.0.1 share one PostgreSQL database for
keys and jobs (the jobs follow a PostgreSQL --keys-db by default), with nginx in front. Checks: 200 jobs submitted
round-robin all complete, each readable byte-identical from every replica and through nginx, the work spread over
the three, a replica killed with SIGKILL mid-run losing no job and charging each job once; a silent owner's job
taken over after --jobs-lease-s (retried once, then FAILED with its credit back); the results budget across
replicas; a webhook delivered once; the database down -> 503 with Retry-After. A few minutes on two cores.
"""
from __future__ import annotations

import base64
import collections
import itertools
import statistics
import sys
import time
from pathlib import Path

import pytest
import requests

import scaleout_helpers as h

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
import jobs_helpers as jh  # noqa: E402  (small images, the image host and the webhook receiver)

TIMEOUT = 60
_dbs = itertools.count()


def new_db(pg: h.Postgres) -> str:
    name = f"jobs{next(_dbs)}"
    pg.createdb(name)
    return name


def submit(base: str, body: dict, key: str | None = None) -> requests.Response:
    return requests.post(base + "/v2/inpaint-mask-maker", json=body, headers={"x-api-key": key} if key else {},
                         timeout=TIMEOUT)


def get(base: str, rid: str, key: str | None = None, status: bool = False) -> requests.Response:
    return requests.get(f"{base}/v2/requests/{rid}" + ("/status" if status else ""),
                        headers={"x-api-key": key} if key else {}, timeout=TIMEOUT)


def job_body(i: int, **extra) -> dict:
    return {"prompt": "dog", "image": jh.b64(jh.png(i, 48)), "return_mask": True, **extra}


def completed_count(r: h.Replica) -> float:
    return jh.metric(requests.get(r.base + "/metrics", timeout=TIMEOUT).text, 'maskmaker_jobs_total{event="completed"}')


def wait_for(what: str, cond, timeout: float, log=lambda: ""):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f} s\n{log()}")
        time.sleep(0.2)


def statuses(pg: h.Postgres, db: str) -> dict[str, int]:
    out = pg.sql("SELECT status, COUNT(*) FROM maskmaker_jobs GROUP BY status", db)
    return {s: int(n) for s, n in (line.split("|") for line in out.splitlines() if line)}


def key_row(pg: h.Postgres, db: str, name: str) -> tuple[int, int]:
    credits, used = pg.sql(f"SELECT credits, used FROM maskmaker_keys WHERE name = '{name}'", db).split("|")
    return int(credits), int(used)


def start(n: int, url: str, *extra: str) -> list[h.Replica]:
    """n replicas with keys (and so jobs) in the database `url`."""
    replicas = [h.Replica(f"jobs{i}", url, *extra) for i in range(n)]
    for r in replicas:
        r.wait_ready()
    return replicas


class Open(jh.Server):
    """A replica without keys (open access), its jobs in the database `url`."""

    def __init__(self, url: str, *extra: str, name: str = "jobs"):
        super().__init__("--jobs-db", url, "--threads", "1", "--max-concurrent", "1", *extra, name=name)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.stop()
        self.cleanup()


# ------------------------------------------------------------------------------------------------ 200 jobs

def test_200_jobs_spread_over_three_replicas_and_survive_a_kill9(postgres, nginx_bin, maskmaker_bin):
    db = new_db(postgres)
    url = postgres.url(db)
    key = h.keys_cli(url, "add", "bulk", "--credits", "1000").stdout.strip()
    replicas = start(3, url, "--jobs-per-key", "1000")
    nginx = h.Nginx(nginx_bin, [r.port for r in replicas])
    logs = lambda: "\n".join(f"--- {r.name}\n{r.log()[-2000:]}" for r in replicas)  # noqa: E731
    try:
        # One job first: its time sets the waits below (no wall-clock assertion, only generous limits).
        t0 = time.monotonic()
        first = submit(replicas[0].base, job_body(0), key)
        assert first.status_code == 200, first.text
        ids = [first.json()["request_id"]]
        wait_for("the first job", lambda: get(nginx.base, ids[0], key, True).json()["status"] == "COMPLETED",
                 120, logs)
        one = max(0.2, time.monotonic() - t0)
        for i in range(1, 200):
            r = submit(replicas[i % 3].base, job_body(i), key)
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
        budget = 60 + one * 200 * 3

        # Every replica takes work from the shared queue; then one dies mid-run (it is running a job, or about to).
        wait_for("every replica completing jobs", lambda: all(completed_count(r) > 0 for r in replicas), budget, logs)
        before_kill = [completed_count(r) for r in replicas]
        print(f"\ncompleted per replica before the kill: {before_kill}")
        assert statuses(postgres, db).get("QUEUED", 0) > 0, "the run ended before the kill: nothing was tested"
        victim = replicas[2]
        victim.kill9()

        wait_for("200 jobs finished", lambda: statuses(postgres, db).get("COMPLETED", 0) == 200, budget, logs)
        victim._spawn()  # the same port: nginx's upstream is unchanged
        victim.wait_ready()

        # Each result from every replica and through nginx: byte-identical.
        for rid in ids:
            bodies = []
            for base in [r.base for r in replicas] + [nginx.base]:
                a = get(base, rid, key)
                assert a.status_code == 200, (base, a.text)
                assert a.json()["status"] == "COMPLETED"
                bodies.append(a.json()["output"])
            assert all(b == bodies[0] for b in bodies), rid
            assert base64.b64decode(bodies[0]["image"]).startswith(b"\x89PNG")

        # Charged once per completed job; no job ran twice (only the killed replica's job, if any, twice).
        assert key_row(postgres, db, "bulk") == (800, 200)
        attempts = collections.Counter(int(a) for a in postgres.sql("SELECT attempts FROM maskmaker_jobs", db).split())
        assert attempts[1] >= 199 and sum(attempts.values()) == 200 and set(attempts) <= {1, 2}, attempts
        owners = collections.Counter(postgres.sql("SELECT split_part(owner, '|', 2) FROM maskmaker_jobs", db).split())
        print(f"jobs completed per replica process (pid: count): {dict(owners)}")
        assert len(owners) >= 3 and all(before_kill)

        # Figures for docs/deploy.md: the table with 200 results, then with them expired (rows kept as tombstones).
        waits = [float(w) for w in postgres.sql("SELECT started_at - created_at FROM maskmaker_jobs", db).split()]
        size_full = int(postgres.sql("SELECT pg_total_relation_size('maskmaker_jobs')", db))
        postgres.sql("UPDATE maskmaker_jobs SET status = 'EXPIRED', request = NULL, result = NULL, "
                     "result_image = NULL, result_bytes = 0", db)
        postgres.sql("VACUUM FULL maskmaker_jobs", db)
        size_expired = int(postgres.sql("SELECT pg_total_relation_size('maskmaker_jobs')", db))
        print(f"maskmaker_jobs: {size_full} bytes with 200 results, {size_expired} expired; "
              f"first job {one:.2f} s; queue wait median {statistics.median(waits):.2f} s")
    finally:
        nginx.close()
        for r in replicas:
            r.close()


# ------------------------------------------------------------------------------------------------ leases

def test_a_silent_owners_job_is_taken_over_retried_once_then_failed_with_its_credit_back(postgres, maskmaker_bin):
    db = new_db(postgres)
    url = postgres.url(db)
    key = h.keys_cli(url, "add", "lease", "--credits", "10").stdout.strip()
    upstream = jh.Upstream()
    upstream.files["a.png"] = jh.png(7, 48)
    (r,) = start(1, url, "--jobs-lease-s", "5", "--allow-private-urls")
    try:
        done = submit(r.base, {"prompt": "dog", "image": upstream.url("/file/a.png")}, key).json()["request_id"]
        wait_for("a first job", lambda: get(r.base, done, key, True).json()["status"] == "COMPLETED", 120, r.log)
        assert key_row(postgres, db, "lease") == (9, 1)
        # Rows "running" on a machine that is not this one: two silent for 20 s, past the 5 s lease but within the
        # default 30 s (taken once, and twice already),
        # one whose owner heartbeats (its heartbeat is in the future for the length of the test); and one of this
        # replica's own that none of its workers runs (its finish lost with the database), silent too. Each charged,
        # as a submit would have.
        me = postgres.sql(f"SELECT owner FROM maskmaker_jobs WHERE id = '{done}'", db)
        postgres.sql("UPDATE maskmaker_keys SET credits = credits - 4, used = used + 4 WHERE name = 'lease'", db)
        for rid, attempts, owner, beat in (("silent1", 1, "elsewhere|1|a", -20), ("silent2", 2, "elsewhere|2|b", -20),
                                           ("alive", 1, "elsewhere|3|c", 3600), ("orphan", 1, me, -20)):
            postgres.sql("INSERT INTO maskmaker_jobs (id, key_id, status, request, attempts, owner, heartbeat_at, "
                         "started_at, created_at, charged) SELECT '%s', key_id, 'PROCESSING', request, %d, '%s', "
                         "extract(epoch FROM now()) + %d, extract(epoch FROM now()) - 100, "
                         "extract(epoch FROM now()) - 100, true FROM maskmaker_jobs WHERE id = '%s'"
                         % (rid, attempts, owner, beat, done), db)
        for rid in ("silent1", "orphan"):
            wait_for(f"{rid} retried", lambda: get(r.base, rid, key, True).json()["status"] == "COMPLETED", 120, r.log)
        failed = get(r.base, "silent2", key, True)
        assert failed.status_code == 422
        assert failed.json()["error"] == ("the server stopped while running this job, 2 times; it is not retried "
                                          "again")
        assert postgres.sql("SELECT attempts, split_part(owner, '|', 1) != 'elsewhere' FROM maskmaker_jobs "
                            "WHERE id = 'silent1'", db) == "2|t"
        assert postgres.sql("SELECT attempts FROM maskmaker_jobs WHERE id = 'orphan'", db) == "2"
        # silent2's credit came back once; the completed jobs stay charged; the live owner's job is untouched.
        wait_for("the refund", lambda: key_row(postgres, db, "lease") == (6, 4), 30, r.log)
        time.sleep(3)  # a few more sweeps: still one refund, and the heartbeating owner keeps its job
        assert key_row(postgres, db, "lease") == (6, 4)
        assert get(r.base, "alive", key, True).json()["status"] == "PROCESSING"
        assert 'maskmaker_jobs_total{event="refunded"} 1' in requests.get(r.base + "/metrics", timeout=TIMEOUT).text
    finally:
        r.close()
        upstream.close()


# ------------------------------------------------------------------------------------------------ results budget

def test_results_budget_holds_across_replicas(postgres, maskmaker_bin):
    db = new_db(postgres)
    url = postgres.url(db)
    # Every 48-pixel one-colour image gives the same empty mask: one result's size, measured first.
    probe = Open(url, name="probe")
    try:
        rid = submit(probe.base, job_body(1000)).json()["request_id"]
        wait_for("the probe job", lambda: get(probe.base, rid, status=True).json()["status"] == "COMPLETED", 120,
                 probe.log)
        size = int(postgres.sql(f"SELECT result_bytes FROM maskmaker_jobs WHERE id = '{rid}'", db))
    finally:
        probe.close()
    budget = size * 3 + size // 2
    replicas = [Open(url, "--jobs-max-result-bytes", str(budget), name=f"budget{i}") for i in range(2)]
    try:
        ids = []
        for i in range(8):
            ids.append(submit(replicas[i % 2].base, job_body(1001 + i)).json()["request_id"])
            time.sleep(0.05)  # distinct submit times: "oldest first" is well defined
        wait_for("8 jobs finished", lambda: statuses(postgres, db).get("QUEUED", 0) +
                 statuses(postgres, db).get("PROCESSING", 0) == 0, 240)
        total = int(postgres.sql("SELECT COALESCE(SUM(result_bytes), 0) FROM maskmaker_jobs "
                                 "WHERE status = 'COMPLETED'", db))
        kept = postgres.sql("SELECT id FROM maskmaker_jobs WHERE status = 'COMPLETED' ORDER BY finished_at", db).split()
        assert total <= budget and len(kept) == 3, (total, budget, kept)
        newest = postgres.sql("SELECT id FROM maskmaker_jobs WHERE id <> '%s' ORDER BY finished_at DESC LIMIT 3"
                              % rid, db).split()
        assert sorted(kept) == sorted(newest)
        for j in ids:
            a = get(replicas[0].base, j)
            if j in kept:
                assert a.status_code == 200 and a.json()["status"] == "COMPLETED"
            else:
                assert a.status_code == 404 and "expired" in a.json()["error"], a.text
    finally:
        for r in replicas:
            r.close()


# ------------------------------------------------------------------------------------------------ webhooks

def test_each_webhook_is_delivered_once_by_three_replicas(postgres, maskmaker_bin):
    db = new_db(postgres)
    url = postgres.url(db)
    receiver = jh.Receiver()
    replicas = [Open(url, "--allow-private-urls", name=f"hooks{i}") for i in range(3)]
    try:
        ids = []
        for i in range(9):
            body = job_body(2000 + i, webhook_url=receiver.url(f"/hook/{i}"))
            ids.append(submit(replicas[i % 3].base, body).json()["request_id"])
        wait_for("9 webhooks", lambda: all(receiver.calls_to(f"/hook/{i}") for i in range(9)), 240,
                 lambda: "\n".join(r.log()[-2000:] for r in replicas))
        time.sleep(3)  # a few sweeps of every replica: none sends one again
        for i, rid in enumerate(ids):
            calls = receiver.calls_to(f"/hook/{i}")
            assert len(calls) == 1, calls
            assert calls[0][2]["request_id"] == rid and calls[0][2]["status"] == "COMPLETED"
        assert statuses(postgres, db) == {"COMPLETED": 9}
        assert postgres.sql("SELECT COUNT(*) FROM maskmaker_jobs WHERE webhook_state = 2", db) == "9"
    finally:
        for r in replicas:
            r.close()
        receiver.close()


# ------------------------------------------------------------------------------------------------ storage down

def test_jobs_database_down_is_503_with_retry_after(postgres, maskmaker_bin):
    db = new_db(postgres)
    url = postgres.url(db)
    s = Open(url, name="pgdown")  # open access: only the jobs need the database
    try:
        rid = s.submit(job_body(3000)).json()["request_id"]
        s.wait_status(rid, None, ("COMPLETED",))
        postgres.stop("fast")
        try:
            for r in (s.submit(job_body(3001)), s.status(rid), s.result(rid)):
                assert r.status_code == 503, r.text
                assert r.headers.get("Retry-After"), r.headers
                assert r.json()["error"] == "the jobs database is unreachable: retry shortly"
                assert "127.0.0.1" not in r.text
        finally:
            postgres.start()
        wait_for("the database back", lambda: s.status(rid).status_code == 200, 30, s.log)
        rid2 = s.submit(job_body(3002)).json()["request_id"]
        assert s.wait_status(rid2, None)["status"] == "COMPLETED"
    finally:
        s.close()
