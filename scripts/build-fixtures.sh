#!/usr/bin/env bash
# Builds the C fixture workloads into fixtures/workloads/build/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/fixtures/workloads/build"
mkdir -p "$out"
cc=${CC:-cc}
for name in hotspots jitloop signals recurse memwork pingpong convoy; do
  src="$root/fixtures/workloads/$name.c"
  if [ ! -x "$out/$name" ] || [ "$src" -nt "$out/$name" ]; then
    "$cc" -O1 -g -fno-omit-frame-pointer -pthread -Wall -Wextra -o "$out/$name" "$src"
  fi
done
# Without frame pointers, as most libraries are built (unwinding tests).
if [ ! -x "$out/nofp" ] || [ "$root/fixtures/workloads/nofp.c" -nt "$out/nofp" ]; then
  "$cc" -O2 -g -fomit-frame-pointer -Wall -Wextra -o "$out/nofp" "$root/fixtures/workloads/nofp.c"
fi
# OpenMP (gcc's libgomp): thread-pool spin-waits and oversubscription.
if [ ! -x "$out/ompspin" ] || [ "$root/fixtures/workloads/ompspin.c" -nt "$out/ompspin" ]; then
  "$cc" -O1 -g -fno-omit-frame-pointer -fopenmp -Wall -Wextra -o "$out/ompspin" "$root/fixtures/workloads/ompspin.c"
fi
# The first line is the main fixture (tests and benches read it).
echo "$out/hotspots"
echo "$out/jitloop"
echo "$out/signals"
echo "$out/recurse"
echo "$out/memwork"
echo "$out/nofp"
echo "$out/pingpong"
echo "$out/ompspin"
echo "$out/convoy"
