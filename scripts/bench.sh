#!/usr/bin/env bash
# Benchmarks. Full run: latency per stage (cold and warm), raw model times, the dev set's object and region
# manifests (time per row and mIoU), HTTP load at concurrency 1/2/4/8, then docs/performance.md's table is regenerated from out/bench/*.json.
# --short: a quick run that proves every benchmark works (CI); docs are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${MASKMAKER_BIN:-build/maskmaker}
SHARED=${MASKMAKER_SHARED:-../shared}
OUT=${MASKMAKER_BENCH_OUT:-out/bench}
mkdir -p "$OUT"
if [ "${1:-}" = "--short" ]; then
  "$BIN" bench latency -n 2 --prompt bus --warm-prompt person --json "$OUT/latency.json" "$SHARED/data/samples/bus.jpg"
  MASKMAKER_BIN="$BIN" /usr/bin/python3 bench/load.py --image "$SHARED/data/samples/bus.jpg" --requests 2 \
    --concurrency 1 2 --seconds 60 --json "$OUT/load.json"
  echo "bench: short run ok ($OUT)"
  exit 0
fi
"$BIN" bench latency -n 20 --prompt bus --warm-prompt person --json "$OUT/latency.json" "$SHARED/data/samples/bus.jpg"
MASKMAKER_BIN="$BIN" /usr/bin/python3 bench/load.py --image "$SHARED/data/samples/bus.jpg" --requests 24 \
  --concurrency 1 2 4 8 --seconds 180 --json "$OUT/load.json"
"$BIN" bench accuracy --manifest "$SHARED/data/dev/manifest.jsonl" "$SHARED/data/dev/manifest_stuff.jsonl" \
  "$SHARED/data/dev/manifest_stuff_negatives.jsonl" --out "$OUT/dev-masks" --json "$OUT/devset.json"
/usr/bin/python3 bench/report.py "$OUT"
