"""Many replicas, one PostgreSQL database, nginx in front (issue 10).

Everything runs on 127.0.0.1: a temporary PostgreSQL cluster, three `maskmaker serve --threads 1` replicas sharing it,
and nginx with the shipped deploy/nginx/maskmaker.conf. Checks: `maskmaker keys` against PostgreSQL, the schema
migrated once when replicas start together, rate limits shared by the replicas, credits spent exactly once under
concurrent load, a replica killed with SIGKILL mid-load (the balancer's retries land on the others; no credit lost
or spent twice), SIGTERM draining, and /readyz following the database. About a minute on two cores.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import io
import itertools
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

import scaleout_helpers as h

TIMEOUT = 120  # one request, generous for a loaded CI machine


def hopper() -> bytes:
    path = h.SAMPLES / "hopper.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is missing (set MASKMAKER_SHARED)")
    return path.read_bytes()


def mask_body() -> dict:
    return {"prompt": "person", "image": "data:image/jpeg;base64," + base64.b64encode(hopper()).decode(),
            "return_mask": True}


_fresh_images = itertools.count()


def distinct_mask_bodies(n: int) -> list[dict]:
    """n requests on pixel-different copies of the photo (lossless PNG), never sent before in this run, so that no
    replica answers one from its image, detection or mask caches: each is a full inference of several hundred
    milliseconds, long enough to act on while it runs."""
    from PIL import Image

    img = Image.open(io.BytesIO(hopper())).convert("RGB")
    bodies = []
    for _ in range(n):
        i = next(_fresh_images)
        copy = img.copy()
        copy.putpixel((i % img.width, i // img.width), (255 - i % 256, i % 256, 7))
        buf = io.BytesIO()
        copy.save(buf, format="PNG", compress_level=1)
        bodies.append({"prompt": "person", "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                       "return_mask": True})
    return bodies


def post(base: str, key: str, body) -> requests.Response:
    kw = {"json": body} if isinstance(body, dict) else {"data": body}
    return requests.post(base + h.COMPAT, headers={"x-api-key": key, "Content-Type": "application/json"},
                         timeout=TIMEOUT, **kw)


def key_row(pg: h.Postgres, name: str, db: str) -> tuple[str, int]:
    credits, used = pg.sql(f"SELECT COALESCE(credits::text, 'unlimited'), used FROM maskmaker_keys "
                           f"WHERE name = '{name}'", db).split("|")
    return credits, int(used)


# ------------------------------------------------------------------------------------------------ keys CLI

def test_keys_cli_against_postgres(postgres, maskmaker_bin):
    postgres.createdb("cli")
    url = postgres.url("cli")
    r = h.keys_cli(url, "add", "alice", "--credits", "3")
    key = r.stdout.strip()
    assert key.startswith("mk_") and len(key) == 51, r.stdout
    h.keys_cli(url, "add", "bob", "--rate", "30", "--endpoints", "/v1/masks")
    listing = h.keys_cli(url, "list").stdout
    assert "alice" in listing and "bob" in listing and "30/min" in listing and "/v1/masks" in listing
    assert key not in listing
    assert h.keys_cli(url, "credit", "alice", "5").stdout.strip() == "8"
    assert h.keys_cli(url, "credit", "alice", "-100").stdout.strip() == "0"
    assert h.keys_cli(url, "credit", "alice", "--unlimited").stdout.strip() == "unlimited"
    h.keys_cli(url, "disable", "bob")
    assert "disabled" in [l for l in h.keys_cli(url, "list").stdout.splitlines() if "bob" in l][0]
    h.keys_cli(url, "enable", "2")  # by id
    assert "disabled" not in h.keys_cli(url, "list").stdout
    assert h.keys_cli(url, "disable", "nobody", check=False).returncode != 0
    # Stored hashed: the SHA-256 of the key, never the key.
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert postgres.sql(f"SELECT count(*) FROM maskmaker_keys WHERE key_hash = '{digest}'", "cli") == "1"
    dump = postgres.sql("SELECT string_agg(t::text, ' ') FROM maskmaker_keys t", "cli")
    assert key not in dump


def test_schema_created_once_by_processes_starting_together(postgres, maskmaker_bin):
    postgres.createdb("race")
    url = postgres.url("race")
    procs = [subprocess.Popen([str(h.BIN), "keys", "--db", url, "list"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert postgres.sql("SELECT string_agg(version::text, ',') FROM maskmaker_schema_version", "race") == "2"
    tables = postgres.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                          "WHERE tablename LIKE 'maskmaker%'", "race")
    assert tables == "maskmaker_keys,maskmaker_rate_limits,maskmaker_schema_version"


def test_unreachable_database_is_an_error_without_the_password(maskmaker_bin):
    url = f"postgresql://maskmaker:s3cret-pw@127.0.0.1:{h.free_port()}/none"
    r = h.keys_cli(url, "list", check=False)
    assert r.returncode != 0
    assert "unreachable" in r.stderr and "s3cret-pw" not in r.stderr + r.stdout, r.stderr


# ------------------------------------------------------------------------------------------------ replicas

class Stack:
    def __init__(self, pg: h.Postgres, nginx_bin: str):
        self.pg = pg
        self.db = "stack"
        pg.createdb(self.db)
        self.url = pg.url(self.db)
        # Started together on an empty database: each migrates the schema at start-up (under an advisory lock).
        self.replicas = [h.Replica(f"replica{i}", self.url, "--rate-burst", "2") for i in range(3)]
        for r in self.replicas:
            r.wait_ready()
        self.nginx = h.Nginx(nginx_bin, [r.port for r in self.replicas])

    def restart(self, i: int):
        old = self.replicas[i]
        old.close()
        self.replicas[i] = h.Replica(old.name, self.url, *old.extra, port=old.port)
        self.replicas[i].wait_ready()

    def close(self):
        self.nginx.close()
        for r in self.replicas:
            r.close()


@pytest.fixture(scope="module")
def stack(postgres, nginx_bin, maskmaker_bin):
    s = Stack(postgres, nginx_bin)
    yield s
    s.close()


def add_key(stack: Stack, name: str, *args: str) -> str:
    return h.keys_cli(stack.url, "add", name, *args).stdout.strip()


def upstreams(resp: requests.Response) -> list[str]:
    return [a.strip() for a in resp.headers.get("X-Upstream", "").split(",") if a.strip()]


def test_replicas_share_one_database(stack):
    for r in stack.replicas:
        ready = requests.get(r.base + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
    assert stack.pg.sql("SELECT string_agg(version::text, ',') FROM maskmaker_schema_version", stack.db) == "2"
    # A key added after the replicas started works on each of them.
    key = add_key(stack, "everywhere")
    for r in stack.replicas:
        resp = post(r.base, key, "{}")
        assert resp.status_code == 400, resp.text  # the key passed; the empty body did not
        assert post(r.base, "mk_" + "0" * 48, "{}").status_code == 401


def test_rate_limit_is_shared_by_the_replicas(stack):
    # 1 request a minute, bursts of 2 (--rate-burst 2): the third request is refused whichever replica gets it.
    key = add_key(stack, "slow", "--rate", "1")
    codes = [post(r.base, key, "{}") for r in stack.replicas]
    assert [c.status_code for c in codes] == [400, 400, 429], [c.text for c in codes]
    assert int(codes[2].headers["Retry-After"]) >= 1
    assert "rate limit" in codes[2].json()["error"]


def test_credits_spent_exactly_once_across_replicas(stack):
    n, calls = 5, 12
    key = add_key(stack, "five", "--credits", str(n))
    body = mask_body()
    with ThreadPoolExecutor(calls) as pool:
        answers = list(pool.map(lambda _: post(stack.nginx.base, key, body), range(calls)))
    statuses = collections.Counter(a.status_code for a in answers)
    assert statuses == {200: n, 406: calls - n}, [(a.status_code, a.text[:200]) for a in answers if a.status_code != 200]
    remaining = sorted(int(a.headers["x-remaining-credits"]) for a in answers if a.status_code == 200)
    assert remaining == list(range(n)), remaining  # each balance seen once: one atomic decrement per success
    for a in answers:
        if a.status_code == 406:
            assert "no credits" in a.json()["error"]
    assert key_row(stack.pg, "five", stack.db) == ("0", n)
    served_by = {upstreams(a)[-1] for a in answers}
    assert len(served_by) >= 2, served_by


def wait_active(replica: h.Replica, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if replica.inference_gauge("active") >= 1:
            return
        time.sleep(0.01)
    raise AssertionError(f"{replica.name} never started an inference")


def test_replica_killed_mid_load_loses_no_credit(stack):
    credits, calls = 100, 9
    key = add_key(stack, "hundred", "--credits", str(credits))
    body = mask_body()
    victim = stack.replicas[0]
    victim_addr = f"127.0.0.1:{victim.port}"
    try:
        with ThreadPoolExecutor(calls) as pool:
            futures = [pool.submit(post, stack.nginx.base, key, b) for b in distinct_mask_bodies(calls)]
            # Kill it while it runs an inference (the credit is taken only after the answer is ready, so this
            # request has not been charged; nginx sends it again to another replica). New pixels each, so that
            # the inference is long: a cached one ends within milliseconds of starting, and the kill could land
            # after the charge (the in-flight window of docs/deploy.md).
            wait_active(victim)
            victim.kill9()
            answers = [f.result() for f in futures]
        bad = [(a.status_code, a.headers.get("X-Upstream"), a.text[:200]) for a in answers if a.status_code != 200]
        assert not bad, f"requests failed although two replicas were left: {bad}\nnginx: {stack.nginx.errors()}"
        retried = [a for a in answers if len(upstreams(a)) > 1]
        assert any(victim_addr in upstreams(a)[:-1] for a in retried), \
            f"no request was retried away from the killed replica: {[a.headers.get('X-Upstream') for a in answers]}"
        assert all(victim_addr != upstreams(a)[-1] for a in retried)
        left, used = key_row(stack.pg, "hundred", stack.db)
        # Clients saw `calls` answers with 200; exactly that many credits were taken. (A replica that dies between
        # committing the credit and sending its answer would make this calls + 1: docs/deploy.md.)
        assert (int(left), used) == (credits - calls, calls)
        remaining = sorted(int(a.headers["x-remaining-credits"]) for a in answers)
        assert remaining == list(range(credits - calls, credits))
    finally:
        # Replicas hold nothing but caches: a new one on the same port serves the same key and balance (and the
        # later tests need all three).
        stack.restart(0)
    a = post(stack.replicas[0].base, key, body)
    assert a.status_code == 200 and a.headers["x-remaining-credits"] == str(credits - calls - 1)


def test_sigterm_finishes_the_request_in_flight(stack):
    key = add_key(stack, "drain", "--credits", "10")
    r = stack.replicas[1]
    result = {}
    body = distinct_mask_bodies(1)[0]  # not cached anywhere: the inference lasts long enough to be caught
    t = threading.Thread(target=lambda: result.setdefault("answer", post(r.base, key, body)))
    t.start()
    wait_active(r)
    rc = r.stop()
    t.join(TIMEOUT)
    assert rc == 0, r.log()
    assert result["answer"].status_code == 200
    assert key_row(stack.pg, "drain", stack.db) == ("9", 1)
    stack.restart(1)


def test_readyz_follows_the_database(stack):
    key = add_key(stack, "dbdown", "--credits", "10")
    stack.pg.stop("fast")
    try:
        for r in stack.replicas:
            ready = requests.get(r.base + "/readyz", timeout=30)
            assert ready.status_code == 503, ready.text
            assert "keys database" in ready.json()["error"] and "unreachable" in ready.json()["error"]
            assert ready.headers.get("Retry-After")
            # Liveness does not depend on the database: Kubernetes must not restart replicas for it.
            assert requests.get(r.base + "/healthz", timeout=10).status_code == 200
        a = post(stack.nginx.base, key, mask_body())
        assert a.status_code == 503, a.text
        assert a.json()["error"] == "the keys database is unreachable: retry shortly"
        assert len(upstreams(a)) == 3  # nginx tried every replica
    finally:
        stack.pg.start()
    for r in stack.replicas:
        deadline = time.monotonic() + 30
        while requests.get(r.base + "/readyz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, f"{r.name} not ready after the database came back:\n{r.log()}"
            time.sleep(0.2)
    # nginx may still count the replicas as failed for a moment (max_fails / fail_timeout): a short retry loop.
    deadline = time.monotonic() + 15
    while True:
        a = post(stack.nginx.base, key, mask_body())
        if a.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert a.status_code == 200, a.text
    assert a.headers["x-remaining-credits"] == "9"


def test_a_failed_job_gives_its_credit_back_in_postgres(stack, tmp_path):
    # /v2 takes the credit at submit and gives it back when the job fails (PgKeyStore::refund), once.
    key = add_key(stack, "one-job", "--credits", "1")
    jobs = h.Replica("jobs", stack.url, "--jobs-db", str(tmp_path / "jobs.db"))
    try:
        jobs.wait_ready()
        buf = io.BytesIO()
        Image.open(io.BytesIO(hopper())).save(buf, "PNG")
        broken = buf.getvalue()[:64]  # the header (its size) reads; the pixels are gone: the job FAILS
        submit = requests.post(jobs.base + "/v2/inpaint-mask-maker", headers={"x-api-key": key}, timeout=TIMEOUT,
                               json={"prompt": "person", "image": base64.b64encode(broken).decode()})
        assert submit.status_code == 200, submit.text
        rid = submit.json()["request_id"]
        deadline = time.monotonic() + 120
        while (status := requests.get(f"{jobs.base}/v2/requests/{rid}/status", headers={"x-api-key": key},
                                      timeout=TIMEOUT).json())["status"] not in ("COMPLETED", "FAILED"):
            assert time.monotonic() < deadline, jobs.log()
            time.sleep(0.1)
        assert status["status"] == "FAILED" and "cannot be decoded" in status["error"], status
        deadline = time.monotonic() + 30  # given back just after the job is marked FAILED
        while key_row(stack.pg, "one-job", stack.db) != ("1", 0):
            assert time.monotonic() < deadline, (key_row(stack.pg, "one-job", stack.db), jobs.log())
            time.sleep(0.1)
        metrics = requests.get(jobs.base + "/metrics", timeout=TIMEOUT).text  # taken at submit, then given back
        assert 'maskmaker_jobs_total{event="refunded"} 1' in metrics
    finally:
        jobs.close()
