"""Scale-out test helpers: a throw-away PostgreSQL cluster, `maskmaker serve` replicas and nginx, all on 127.0.0.1.

- Postgres: initdb + pg_ctl from /usr/lib/postgresql/<version>/bin into a temporary folder, on a free port; as root
  (CI) the server runs as the `postgres` user (or `nobody`), since PostgreSQL refuses to run as root.
- Replica: one `maskmaker serve` process (--threads 1 --max-concurrent 1) on a free port.
- Nginx: the shipped deploy/nginx/maskmaker.conf with the replicas' ports and its own listen port, in a
  generated nginx.conf (foreground, logs and temp files in a temporary folder).
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

import sys

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: the suites' shared testlib.py
from testlib import REPO, SHARED, SAMPLES, BIN, MODELS, COMPAT, free_port  # noqa: E402,F401

NGINX_EXAMPLE = REPO / "deploy" / "nginx" / "maskmaker.conf"


def postgres_bindir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file():
            return Path(d)
    return None


def service_tmpdir(prefix: str) -> Path:
    """A temporary folder that other users can reach: as root, PostgreSQL and nginx's workers run as another user,
    and $TMPDIR may be private to root."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.geteuid() == 0 and os.path.isdir("/tmp") else None))


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)


# ------------------------------------------------------------------------------------------------ PostgreSQL

class Postgres:
    USER = "maskmaker"  # the cluster's superuser; trust authentication on 127.0.0.1 only

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.dir = service_tmpdir("maskmaker-pg-")
        self.data = self.dir / "data"
        self.runas: list[str] = []
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
            shutil.chown(self.dir, user)
            self.runas = ["runuser", "-u", user, "--"]
        self._cmd(["initdb", "-D", str(self.data), "-A", "trust", "-U", self.USER, "-E", "UTF8", "--no-sync",
                   "--no-instructions"], timeout=120)
        for attempt in range(5):
            self.port = free_port()
            if self.start(check=attempt == 4):
                break
        self.createdb("maskmaker")

    def _cmd(self, args: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        args = [str(self.bindir / args[0]), *args[1:]]
        r = subprocess.run(self.runas + args, capture_output=True, text=True, timeout=timeout, cwd=self.dir,
                           stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{self.log()}")
        return r

    def start(self, check: bool = True) -> bool:
        opts = (f"-h 127.0.0.1 -p {self.port} -k {self.dir} -F -c max_connections=80 "
                f"-c shared_buffers=16MB -c listen_addresses=127.0.0.1")
        r = self._cmd(["pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", opts, "-w",
                       "-t", "60", "start"], timeout=90, check=check)
        return r.returncode == 0

    def stop(self, mode: str = "fast"):
        self._cmd(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], timeout=90, check=False)

    def log(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def url(self, db: str = "maskmaker") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str):
        self._cmd(["createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, name])

    def sql(self, query: str, db: str = "maskmaker") -> str:
        r = self._cmd(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, "-d", db, "-At", "-q",
                       "-v", "ON_ERROR_STOP=1", "-c", query])
        return r.stdout.strip()

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ maskmaker

def keys_cli(db: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN), "keys", "--db", db, *args], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"maskmaker keys {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


class Replica:
    """One `maskmaker serve` on 127.0.0.1 with a key database; not waited for (start several, then wait)."""

    def __init__(self, name: str, db: str, *extra: str, port: int | None = None):
        self.name, self.db, self.extra = name, db, list(extra)
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.logfile = tempfile.NamedTemporaryFile(prefix=f"maskmaker-{name}-", suffix=".log", delete=False)
        self._spawn()

    def _spawn(self):
        self.cmd = [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--models", MODELS,
                    "--threads", "1", "--max-concurrent", "1", "--keys-db", self.db, *self.extra]
        self.proc = subprocess.Popen(self.cmd, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120):
        deadline = time.monotonic() + timeout
        respawns = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # Another process took the free port first: try another one.
                if not self.fixed_port and "cannot listen" in self.log() and respawns < 4:
                    respawns += 1
                    self.port = free_port()
                    self._spawn()
                    continue
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.base + "/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    def inference_gauge(self, state: str = "active") -> float:
        text = requests.get(self.base + "/metrics", timeout=5).text
        m = re.search(r'^maskmaker_inference\{state="%s"\} (\S+)$' % state, text, re.M)
        return float(m.group(1)) if m else 0.0

    def log(self) -> str:
        try:
            return Path(self.logfile.name).read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def close(self):
        self.stop()
        self.logfile.close()
        try:
            os.unlink(self.logfile.name)
        except OSError:
            pass


# ------------------------------------------------------------------------------------------------ nginx

def site_config(ports: list[int], listen_port: int) -> str:
    """deploy/nginx/maskmaker.conf with these replica ports and this listen address (the shipped settings)."""
    text = NGINX_EXAMPLE.read_text()
    servers = re.findall(r"^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n", text, re.M)
    assert servers, "deploy/nginx/maskmaker.conf: no 'server 127.0.0.1:PORT ...;' lines in its upstream"
    indent, params = servers[0][0], servers[0][1]
    replacement = "".join(f"{indent}server 127.0.0.1:{p}{params};\n" for p in ports)
    text, n = re.subn(r"(?:^\s*server 127\.0\.0\.1:\d+(?: [^;]*)?;\n)+", lambda _: replacement, text, count=1,
                      flags=re.M)
    assert n == 1
    text, n = re.subn(r"^(\s*)listen 80;", rf"\g<1>listen 127.0.0.1:{listen_port};", text, flags=re.M)
    assert n == 1, "deploy/nginx/maskmaker.conf: no 'listen 80;' line"
    return text


def main_config(folder: Path, site: str) -> str:
    return f"""daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
events {{ worker_connections 512; }}
http {{
    log_format mm '$status $request_time "$upstream_addr" "$upstream_status" $request_uri';
    access_log {folder}/access.log mm;
    error_log {folder}/error.log info;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
{site}
}}
"""


class Nginx:
    def __init__(self, binary: str, ports: list[int]):
        self.binary = binary
        self.dir = service_tmpdir("maskmaker-nginx-")
        os.chmod(self.dir, 0o755)  # the worker (nobody when the master is root) reads and writes its temp folders
        for attempt in range(5):
            self.port = free_port()
            conf = self.dir / "nginx.conf"
            conf.write_text(main_config(self.dir, site_config(ports, self.port)))
            self.proc = subprocess.Popen([binary, "-p", str(self.dir), "-c", str(conf), "-e",
                                          str(self.dir / "error.log")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            if self._wait_listening():
                return
            if attempt == 4:
                raise RuntimeError(f"nginx did not start:\n{self.errors()}")

    def _wait_listening(self, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def errors(self) -> str:
        out = ""
        if self.proc.poll() is not None and self.proc.stderr:
            out += self.proc.stderr.read().decode(errors="replace")
        try:
            out += (self.dir / "error.log").read_text(errors="replace")[-4000:]
        except OSError:
            pass
        return out

    def access_log(self) -> list[str]:
        try:
            return (self.dir / "access.log").read_text().splitlines()
        except OSError:
            return []

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
