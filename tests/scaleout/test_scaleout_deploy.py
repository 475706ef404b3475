"""deploy/: the nginx example parses, the systemd unit and the image use real flags, and bake-pack.py makes a
self-contained pack that loads (the Dockerfile's build context, stages and libraries: test_scaleout_dockerfile.py)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import scaleout_helpers as h

DEPLOY = h.REPO / "deploy"


def stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its text (the lines from its FROM to the next)."""
    parts = re.split(r"^(?=FROM )", dockerfile, flags=re.M)
    out = {}
    for p in parts:
        m = re.match(r"FROM (\S+)(?: AS (\S+))?", p)
        if m:
            out[m.group(2) or m.group(1)] = p
    return out


def test_nginx_example_parses_and_retries(nginx_bin):
    site = h.NGINX_EXAMPLE.read_text()
    retry = re.search(r"proxy_next_upstream (.*);", site).group(1).split()
    assert {"error", "timeout", "http_503", "non_idempotent"} <= set(retry)
    folder = Path(tempfile.mkdtemp(prefix="maskmaker-nginx-t-"))
    try:
        conf = folder / "nginx.conf"
        conf.write_text(h.main_config(folder, site))
        r = subprocess.run([nginx_bin, "-t", "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_dockerfile_stages():
    text = (DEPLOY / "Dockerfile").read_text()
    s = stages(text)
    assert s["build"].startswith("FROM debian:12 ") and "scripts/setup.sh" in s["build"]
    assert "BAKE_MODELS" in s["build"] and "bake-pack.py" in s["build"]
    rt = s["runtime"]
    assert rt.startswith("FROM debian:12-slim ")
    user = re.search(r"^USER (\S+)", rt, re.M).group(1)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", rt, re.M)
    assert re.search(r"^EXPOSE 8080", rt, re.M)
    assert "COPY --from=build /opt/models /models" in rt
    assert "build-essential" not in rt and "-dev" not in rt
    assert (DEPLOY / "Dockerfile.dockerignore").is_file()


def serve_env_names() -> set[str]:
    help_text = subprocess.run([str(h.BIN), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"\(Env:(MASKMAKER_[A-Z_]+)\)", help_text))


def serve_flags() -> set[str]:
    help_text = subprocess.run([str(h.BIN), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text))


def test_image_and_unit_use_real_settings(maskmaker_bin):
    names = serve_env_names()
    image_env = re.search(r"^ENV (?:.*\\\n)*.*$", stages((DEPLOY / "Dockerfile").read_text())["runtime"], re.M)
    docker_env = re.findall(r"\b(MASKMAKER_[A-Z_]+)=", image_env.group(0))
    unit = (DEPLOY / "systemd" / "maskmaker@.service").read_text()
    unit_env = re.findall(r"\b(MASKMAKER_[A-Z_]+)=", unit)
    assert docker_env and unit_env
    assert set(docker_env) <= names and set(unit_env) <= names, (set(docker_env) | set(unit_env)) - names
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    assert exec_start.split()[1] == "serve"
    assert set(re.findall(r"--[a-z-]+", exec_start)) <= serve_flags()
    assert re.search(r"^KillSignal=SIGTERM$", unit, re.M) and re.search(r"^TimeoutStopSec=\d+", unit, re.M)


def test_bake_pack_makes_a_self_contained_pack(maskmaker_bin, tmp_path):
    src = Path(h.MODELS)
    if not (src / "pack.json").is_file():
        pytest.skip(f"no model pack at {src}")
    out = tmp_path / "default"
    r = subprocess.run(["/usr/bin/python3", str(DEPLOY / "bake-pack.py"), str(src), str(out)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pack = json.loads((out / "pack.json").read_text())
    paths = [pack["detector"]["path"], pack["segmenter"]["encoder"]["path"], pack["segmenter"]["decoder"]["path"],
             pack["regions"]["path"]]
    assert all("/" not in p and (out / p).is_file() for p in paths), paths
    assert pack["detector"]["sha256"] == json.loads((src / "pack.json").read_text())["detector"]["sha256"]
    sample = h.SAMPLES / "hopper.jpg"
    if not sample.is_file():
        pytest.skip(f"{sample} is missing")
    run = subprocess.run([str(h.BIN), "run", "--models", str(out), "--threads", "1", "--prompt", "person",
                          "--return-mask", "--out", str(tmp_path / "masks"), str(sample)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert list((tmp_path / "masks").iterdir())
