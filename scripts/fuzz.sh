#!/usr/bin/env bash
# libFuzzer targets (fuzz/): request parsing, base64/data URIs, image decoding; ASan + UBSan; clang only.
#   scripts/fuzz.sh                 build, replay the corpus, then fuzz each target FUZZ_SECONDS (default 300)
#   scripts/fuzz.sh --short         the CI run: replay, then FUZZ_SECONDS (default 30) per target
#   scripts/fuzz.sh --replay        only replay fuzz/corpus/<target>/ (seeds + regression inputs)
# New inputs go to out/fuzz/<target>/ (fuzz/corpus/ is read, never written); a crash leaves its input in
# out/fuzz/crash-<target>-*, the script fails, and the input belongs in fuzz/corpus/<target>/ as a regression.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=long
case "${1:-}" in
  --short) MODE=short ;;
  --replay) MODE=replay ;;
  "") ;;
  *) echo "usage: scripts/fuzz.sh [--short|--replay]" >&2; exit 2 ;;
esac
if [ "$MODE" = short ]; then SECONDS_PER=${FUZZ_SECONDS:-30}; else SECONDS_PER=${FUZZ_SECONDS:-300}; fi
BUILD=${MASKMAKER_FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=(fuzz_request fuzz_base64 fuzz_decode)
JOBS=${FUZZ_BUILD_JOBS:-2}

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev; scripts/setup.sh installs them)" >&2
  exit 1
fi
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DMASKMAKER_FUZZ=ON -DMASKMAKER_BUILD_TESTS=OFF -DMASKMAKER_BUILD_BENCH=OFF
fi
t0=$(date +%s)
cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}"
echo "fuzz: built in $(( $(date +%s) - t0 )) s"

OUT="$ROOT/out/fuzz"
mkdir -p "$OUT"
# ORT is linked but never used here; leaks in third-party start-up code are not findings of these targets.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${TARGETS[@]}"; do
  name=${t#fuzz_}
  corpus="fuzz/corpus/$name"
  dict=()
  [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
  common=(-rss_limit_mb=4096 -timeout=20 -max_len=65536 -artifact_prefix="$OUT/crash-$name-" "${dict[@]}")
  echo "=== $t: replay $(ls "$corpus" | wc -l) corpus inputs"
  if ! "$BUILD/fuzz/$t" "${common[@]}" -runs=0 "$corpus" >"$OUT/$name-replay.log" 2>&1; then
    echo "fuzz: $t FAILED on its corpus; see $OUT/$name-replay.log" >&2
    tail -30 "$OUT/$name-replay.log" >&2
    status=1
    continue
  fi
  [ "$MODE" = replay ] && continue
  mkdir -p "$OUT/$name"
  echo "=== $t: fuzzing for $SECONDS_PER s"
  if "$BUILD/fuzz/$t" "${common[@]}" -max_total_time="$SECONDS_PER" -print_final_stats=1 \
       "$OUT/$name" "$corpus" >"$OUT/$name.log" 2>&1; then
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb|stat::new_units_added" "$OUT/$name.log" | tr '\n' ' '
    echo
  else
    echo "fuzz: $t found a failure; see $OUT/$name.log and $OUT/crash-$name-*" >&2
    grep -E "ERROR|SUMMARY|runtime error" "$OUT/$name.log" | head -20 >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "fuzz: all targets clean" || echo "fuzz: FAILED" >&2
exit $status
