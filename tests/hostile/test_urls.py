"""Family "urls": image URLs. On the strict server (private URLs refused) every non-http(s) scheme and every URL
whose host is, spells or resolves to a loopback/private/link-local/metadata address is a 400; on the server that
allows private URLs (the only way to reach a local upstream) the upstream's answers map to 413/502/504/400.

Limitation: on loopback every address is private, so "a public server redirecting to a private address" cannot be
staged end to end without changing the machine's network. The per-hop re-check is exercised instead by redirects
to refused schemes (file://, gopher://) on the permissive server, by the strict server refusing the redirecting
URL itself, and by the unit tests of forbidden_address_reason."""
import pytest

from .common import COMPAT, NATIVE, Case, check, health
from .conftest import FETCH_TIMEOUT_MS

FAMILY = "urls"


def body(url):
    return {"prompt": "person", "image": url, "return_mask": True}


FORBIDDEN_SCHEMES = ["file:///etc/passwd", "FILE:///etc/passwd", "file://localhost/etc/passwd", "ftp://127.0.0.1/x.jpg",
                     "ftp://example.com/x.jpg", "gopher://127.0.0.1:70/_GET", "dict://127.0.0.1:11211/stat",
                     "ldap://127.0.0.1/", "sftp://example.com/x", "tftp://127.0.0.1/x", "jar:http://x/!/",
                     "smb://host/share", "ws://127.0.0.1/", "telnet://127.0.0.1:23"]
# Hosts that are, spell, or resolve to forbidden addresses (the port is whatever: nothing is contacted).
FORBIDDEN_HOSTS = ["127.0.0.1", "127.0.0.1:8080", "127.1", "127.255.255.254", "[::1]", "[::]", "0.0.0.0", "0",
                   "169.254.169.254", "169.254.169.254/latest/meta-data/", "169.254.0.1", "10.0.0.1", "172.16.0.1",
                   "172.31.255.255", "192.168.1.1", "100.64.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1",
                   "0x7f000001", "017700000001", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:169.254.169.254]",
                   "[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[fe80::1]", "[fc00::1]", "[fd00::1]",
                   "[ff02::1]", "localhost", "LOCALHOST", "user:pass@127.0.0.1", "127.0.0.1.nip.io.invalid@127.0.0.1",
                   "224.0.0.1", "255.255.255.255", "198.18.0.1"]


def strict_cases():
    c = []
    for url in FORBIDDEN_SCHEMES:
        c.append(Case(FAMILY, f"scheme: {url}", 400, body=body(url), field="image"))
    for host in FORBIDDEN_HOSTS:
        for scheme in ("http", "https") if host in ("127.0.0.1", "[::1]", "169.254.169.254", "localhost") else ("http",):
            url = f"{scheme}://{host}/" if "/" not in host else f"{scheme}://{host}"
            c.append(Case(FAMILY, f"forbidden address: {url}", 400, body=body(url), field="image"))
    c.append(Case(FAMILY, "forbidden address (native): http://127.0.0.1/", 400, body=body("http://127.0.0.1/"),
                  field="image", path=NATIVE))
    for label, url in (("empty host", "http://:80/x.jpg"), ("only a scheme", "http://"), ("spaces in host", "http://exa mple.com/"),
                       ("bad port", "http://127.0.0.1:99999/"), ("bad IPv6 literal", "http://[::1/"),
                       ("CRLF in URL", "http://example.com/\r\nHost: evil")):
        c.append(Case(FAMILY, f"malformed URL: {label}", 400, body=body(url), field="image"))
    return c


def private_cases():
    c = []

    def add(name, expect, route, field="image"):
        c.append(Case(FAMILY, f"upstream: {name}", expect, body=body(route), field=field, server="private"))

    add("image (control: 200)", 200, "{base}/image.jpg", field=None)
    add("image without Content-Type", 200, "{base}/image-no-type", field=None)
    add("relative redirect to the image", 200, "{base}/redirect-image", field=None)
    add("absolute redirect to the image", 200, "{base}/redirect-absolute", field=None)
    add("404", 502, "{base}/404")
    add("500", 502, "{base}/500")
    add("redirect loop", 502, "{base}/redirect-loop")
    add("redirect without Location", 502, "{base}/redirect-no-location")
    add("redirect to file://", 400, "{base}/redirect-file")
    add("redirect to gopher://", 400, "{base}/redirect-gopher")
    add(f"slow headers (deadline {FETCH_TIMEOUT_MS} ms)", 504, "{base}/slow")
    add("body trickling past the deadline", 504, "{base}/trickle")
    add("Content-Length over --fetch-max-bytes", 413, "{base}/big")
    add("chunked body over --fetch-max-bytes", 413, "{base}/big-chunked")
    add("gzip bomb (20 KB -> 20 MB)", 413, "{base}/gzip-bomb")
    add("connection closed mid-body", 502, "{base}/lying-length")
    add("connection closed without an answer", 502, "{base}/close")
    add("HTML instead of an image", 400, "{base}/html")
    add("empty 200 body", 400, "{base}/empty")
    add("nothing listening (connection refused)", 502, "http://127.0.0.1:1/x.jpg")
    add("unresolvable host", 502, "http://no-such-host.invalid/x.jpg")
    return c


CASES = strict_cases() + private_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_urls(strict, private, upstream, case):
    if "{base}" in case.body["image"]:
        case.body = dict(case.body, image=case.body["image"].format(base=upstream.base))
    check(private if case.server == "private" else strict, case)


def test_urls_redirect_private_refused_on_strict(strict, upstream):
    """The strict server refuses the redirecting URL itself (it is on loopback) before any request goes out."""
    before = dict(upstream.hits)
    check(strict, Case(FAMILY, "strict: redirect to a private address", 400,
                       body=body(upstream.base + "/redirect-private"), field="image"))
    check(strict, Case(FAMILY, "strict: redirect to the metadata address", 400,
                       body=body(upstream.base + "/redirect-metadata"), field="image"))
    assert upstream.hits == before, "the strict server contacted a loopback upstream"


def test_urls_health(strict, private):
    health(strict, FAMILY)
    health(private, FAMILY + " (private)")


class Tarpit:
    """A host that accepts connections and never answers; `accepted` counts them."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.held = []
        self.accepted = threading.Semaphore(0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/never.jpg"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.release()

    def wait_for(self, n: int):
        for _ in range(n):
            assert self.accepted.acquire(timeout=60), "the fetch never reached the host"

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def keys_add(db, name, credits):
    import subprocess
    from .common import BIN
    return subprocess.run([str(BIN), "keys", "--db", str(db), "add", name, "--credits", str(credits)], check=True,
                          capture_output=True, text=True).stdout.strip()


def keys_credits(db):
    """(credits, used) of each key, from `keys list`."""
    import subprocess
    from .common import BIN
    rows = subprocess.run([str(BIN), "keys", "--db", str(db), "list"], check=True, capture_output=True,
                          text=True).stdout.splitlines()[1:]
    return [(int(r.split()[3]), int(r.split()[4])) for r in rows]


def test_slow_image_hosts_cannot_hold_every_worker(tmp_path):
    """Image URLs on a host that accepts and never answers: at most --max-fetches-per-key of one key's requests and
    --max-fetches in all wait on it (429 and 503 past them, at once); health checks and job polls still answer while
    they wait, and the held requests end in 504 without a charge."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from .common import Server

    tarpit = Tarpit()
    db = tmp_path / "keys.db"
    key_a, key_b = keys_add(db, "a", 10), keys_add(db, "b", 10)
    srv = Server("fetch-slots", "--keys-db", str(db), "--allow-private-urls", "--max-fetches", "3",
                 "--max-fetches-per-key", "2", "--fetch-timeout-ms", "8000", "--queue-length", "2")
    url = tarpit.url
    pool = ThreadPoolExecutor(4)
    try:
        held = [pool.submit(srv.post, COMPAT, body(url), headers={"x-api-key": key_a}) for _ in range(2)]
        tarpit.wait_for(2)
        r = srv.post(COMPAT, body(url), headers={"x-api-key": key_a})
        assert r.status_code == 429 and r.headers.get("Retry-After") == "1", r.text
        assert r.json()["error"] == ("this API key has 2 image URLs being fetched already: retry when one is done")
        held.append(pool.submit(srv.post, COMPAT, body(url), headers={"x-api-key": key_b}))
        tarpit.wait_for(1)
        r = srv.post(COMPAT, body(url), headers={"x-api-key": key_b})
        assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
        assert r.json()["error"] == "the server is fetching as many image URLs as it may: retry shortly"
        # With every fetch slot (and more than the queue's worth of threads) held, the server still answers.
        assert requests.get(srv.url + "/readyz", timeout=60).status_code == 200
        assert requests.get(srv.url + "/v2/requests/0123456789abcdef0123456789abcdef", timeout=60,
                            headers={"x-api-key": key_b}).status_code == 404
        assert not any(f.done() for f in held), "the held fetches ended before the checks: nothing was proven"
        statuses = [f.result(timeout=120).status_code for f in held]
        assert statuses == [504, 504, 504], statuses
        assert keys_credits(db) == [(10, 0), (10, 0)]  # nothing charged
        # The slots are free again: the next fetch of key a reaches the host.
        again = pool.submit(srv.post, COMPAT, body(url), headers={"x-api-key": key_a})
        tarpit.wait_for(1)
        assert again.result(timeout=120).status_code == 504
        assert srv.alive()
    finally:
        srv.terminate()
        tarpit.close()
        pool.shutdown(wait=False)


def test_one_credit_buys_one_request_in_flight(tmp_path):
    """A key with one credit and a request in flight (here, held fetching its image): another request of that key is
    a 406 at once, not an inference refused its answer at the charge; once the first ends (504, uncharged), the
    next one runs and is charged."""
    from concurrent.futures import ThreadPoolExecutor

    from .common import Server, b64, sample_bytes

    image = b64(sample_bytes("hopper.jpg"))

    tarpit = Tarpit()
    db = tmp_path / "keys.db"
    key = keys_add(db, "one", 1)
    srv = Server("credit-holds", "--keys-db", str(db), "--allow-private-urls", "--fetch-timeout-ms", "6000")
    pool = ThreadPoolExecutor(2)
    try:
        first = pool.submit(srv.post, COMPAT, body(tarpit.url), headers={"x-api-key": key})
        tarpit.wait_for(1)
        r = srv.post(COMPAT, body(image), headers={"x-api-key": key})
        assert r.status_code == 406, r.text
        assert r.json()["error"] == "this API key has no credits left for another request while 1 are running"
        assert not first.done(), "the first request ended before the check: nothing was proven"
        assert first.result(timeout=120).status_code == 504
        r = srv.post(COMPAT, body(image), headers={"x-api-key": key})
        assert r.status_code == 200, r.text
        assert keys_credits(db) == [(0, 1)]
        assert srv.alive()
    finally:
        srv.terminate()
        tarpit.close()
        pool.shutdown(wait=False)
