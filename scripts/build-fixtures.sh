#!/usr/bin/env bash
# Builds the C fixture workloads into fixtures/workloads/build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/fixtures/workloads/build"
mkdir -p "$out"
cc=${CC:-cc}
src="$root/fixtures/workloads/hotspots.c"
if [ ! -x "$out/hotspots" ] || [ "$src" -nt "$out/hotspots" ]; then
  "$cc" -O1 -g -fno-omit-frame-pointer -Wall -Wextra -o "$out/hotspots" "$src"
fi
echo "$out/hotspots"
