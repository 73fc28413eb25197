#!/usr/bin/env bash
# The 30-second tour on the bundled workload: set up, build, record a numpy
# training loop, analyze it, write the report.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
echo "== building sofa (release; the first build takes several minutes)" >&2
cargo build --release --locked --bin sofa
./scripts/build-fixtures.sh >/dev/null
sofa=target/release/sofa
out=${SOFA_DEMO_OUT:-sofa-out}

# The interpreter itself, not a wrapper such as a pyenv shim, so the profile
# is the training loop's.
python=$(python3 -c 'import sys; print(sys.executable)')
echo "== sofa record -o $out -- $python fixtures/workloads/train_numpy.py --steps 150" >&2
"$sofa" record -o "$out" -- "$python" fixtures/workloads/train_numpy.py --steps 150

echo "== sofa analyze $out" >&2
"$sofa" analyze "$out"

echo "== sofa report $out" >&2
report=$("$sofa" report "$out")
echo "== open $report in a browser (one file, works offline)" >&2
