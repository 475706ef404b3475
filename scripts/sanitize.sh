#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan) and the tests that run against it:
# the unit and model tests (ctest) and the HTTP suites against the instrumented server.
#   scripts/sanitize.sh                  build, ctest, pytest $SANITIZE_SUITES (default: tests/hostile tests/server)
# ONNX Runtime, OpenCV and the other Debian libraries are not instrumented (ASan still sees their heap through
# its malloc); leak reports from their one-time global allocations are suppressed in scripts/lsan.supp.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${MASKMAKER_ASAN_BUILD_DIR:-build-asan}
JOBS=${SANITIZE_BUILD_JOBS:-$(nproc)}
SUITES=${SANITIZE_SUITES:-tests/hostile tests/server}
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

t0=$(date +%s)
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMASKMAKER_BUILD_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
fi
cmake --build "$BUILD" -j"$JOBS" --target maskmaker maskmaker_tests
t1=$(date +%s)
echo "sanitize: built in $((t1 - t0)) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:strict_string_checks=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export MASKMAKER_TEST_OUT=${MASKMAKER_TEST_OUT:-$ROOT/out/test}/asan
mkdir -p "$MASKMAKER_TEST_OUT"

status=0
echo "=== sanitize: ctest"
ctest --test-dir "$BUILD" --output-on-failure || status=1
t2=$(date +%s)
echo "sanitize: ctest in $((t2 - t1)) s"

# The overload test's flat-memory check does not hold under ASan (its quarantine keeps freed memory for a
# while); the other overload/fault tests run.
existing=()
for s in $SUITES; do [ -d "$s" ] && existing+=("$s"); done
for s in "${existing[@]}"; do
  echo "=== sanitize: pytest $s"
  MASKMAKER_BIN="$ROOT/$BUILD/maskmaker" MASKMAKER_HOSTILE_TIMEOUT=300 \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider "$s" -k "not twice_capacity" || status=1
done
t3=$(date +%s)
echo "sanitize: pytest in $((t3 - t2)) s"
# A sanitizer report in any server log fails the run even if the test that provoked it passed.
if grep -rlE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$MASKMAKER_TEST_OUT" 2>/dev/null; then
  echo "sanitize: sanitizer reports in the server logs above" >&2
  status=1
fi
echo "sanitize: total $((t3 - t0)) s"
[ $status -eq 0 ] && echo "sanitize: clean" || echo "sanitize: FAILED" >&2
exit $status
