#!/usr/bin/env bash
# Runs every test: unit and model tests (ctest), the HTTP server suite and the accuracy guard (pytest),
# the browser test (playwright-core + Debian's Chromium), and the benchmarks in their short mode.
# Brings the checkout up to date first (scripts/setup.sh is idempotent), so it also works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
scripts/setup.sh

BUILD_DIR=${MASKMAKER_BUILD_DIR:-build}
export MASKMAKER_BIN="$ROOT/$BUILD_DIR/maskmaker"
export MASKMAKER_TEST_OUT=${MASKMAKER_TEST_OUT:-$ROOT/out/test}
mkdir -p "$MASKMAKER_TEST_OUT"
if [ ! -d "$ROOT/../shared/models" ] && [ -z "${MASKMAKER_SHARED:-}" ]; then
  echo "test: ../shared (models and data) not found beside the repository; set MASKMAKER_SHARED" >&2
  exit 1
fi

status=0
run() {
  echo
  echo "=== $*"
  "$@" || status=1
}

run ctest --test-dir "$BUILD_DIR" --output-on-failure
run /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/server tests/model tests/native tests/jobs
run /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/scaleout   # PostgreSQL + 3 replicas + nginx; deploy/
run /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/hostile    # hostile inputs, overload, kill -9, SIGTERM
run scripts/fuzz.sh --short                                            # libFuzzer targets (clang), 30 s each
run scripts/sanitize.sh                                                # ASan+UBSan build: ctest, tests/hostile, tests/server
if ls tests/browser/*.test.* >/dev/null 2>&1; then
  run node --test tests/browser/
fi
run scripts/bench.sh --short

echo
if [ $status -eq 0 ]; then echo "test: all suites passed"; else echo "test: some suites FAILED"; fi
exit $status
