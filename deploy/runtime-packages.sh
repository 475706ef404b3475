#!/usr/bin/env bash
# Prints the Debian packages a runtime image needs for the given ELF files: the owners of every shared library they
# link (readelf -d), less those already in debian:12-slim and those among the files themselves. deploy/Dockerfile
# runs it on the build stage's binary, so the runtime stage follows whatever scripts/setup.sh's -dev packages are.
#   deploy/runtime-packages.sh build/maskmaker build/ort/libonnxruntime.so.1
set -euo pipefail
(($#)) || { echo "usage: $0 ELF..." >&2; exit 2; }
arch=$(gcc -print-multiarch)   # x86_64-linux-gnu: the lib32*/i386 copies of a library are not ours
declare -A given=()
for f in "$@"; do given[$(basename "$f")]=1; done
for f in "$@"; do
  readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'
done | sort -u | while read -r lib; do
  [ -z "${given[$lib]:-}" ] || continue
  owner=$(dpkg -S "*/$arch/$lib") || { echo "runtime-packages: no package owns $lib" >&2; exit 1; }
  cut -d: -f1 <<<"$owner"
done | sort -u | { grep -vx -e libc6 -e 'libstdc++6' -e libgcc-s1 || [ $? = 1 ]; }
