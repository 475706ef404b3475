#!/usr/bin/env bash
# Benchmarks. --short: a quick run that proves every benchmark works (CI). Without it: the full figures,
# written to out/bench/ (see docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MASKMAKER_BIN:-build/maskmaker}
SHARED=${MASKMAKER_SHARED:-../shared}
OUT=${MASKMAKER_BENCH_OUT:-out/bench}
mkdir -p "$OUT"
runs=20
[ "${1:-}" = "--short" ] && runs=2
"$BIN" bench latency -n "$runs" --prompt bus --warm-prompt person --json "$OUT/latency.json" "$SHARED/data/samples/bus.jpg"
echo "bench: wrote $OUT/latency.json"
