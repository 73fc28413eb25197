#!/usr/bin/env bash
# Regenerates docs/report.png: records the numpy training loop, writes its
# report and photographs it in headless Chromium (scripts/setup.sh --tests
# installs chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin sofa
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python=$(python3 -c 'import sys; print(sys.executable)')
target/release/sofa record -o "$out/run" -- "$python" fixtures/workloads/train_numpy.py --steps 60
target/release/sofa report "$out/run" >/dev/null
# shoot URL HEIGHT PNG. The flamegraph is an iframe the page fills from a
# blob: without the same-process frames and the time budget, it is
# captured before it paints.
shoot() {
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-features=site-per-process,IsolateOrigins --run-all-compositor-stages-before-draw \
    --virtual-time-budget=20000 \
    --hide-scrollbars --window-size=1280,"$2" --screenshot="$PWD/$3" "$1" 2>/dev/null
}
shoot "file://$out/run/report.html" 2300 docs/report.png
# Where threads wait: the input-bound fixture, its off-CPU flamegraph open.
target/release/sofa record -o "$out/waits" -- "$python" fixtures/workloads/waits.py input
target/release/sofa report "$out/waits" >/dev/null
shoot "file://$out/waits/report.html?flame=off-CPU" 1500 docs/report-waits.png
# Framework phases: the PyTorch CNN corpus loop, when a training venv with
# torch is given (TORCH_PYTHON=$(scripts/training-venv.sh | tail -1)).
if [ -n "${TORCH_PYTHON:-}" ]; then
  target/release/sofa record -o "$out/cnn" -- "$TORCH_PYTHON" fixtures/training/torch_cnn.py --workers 2
  target/release/sofa report "$out/cnn" >/dev/null
  shoot "file://$out/cnn/report.html" 2600 docs/report-phases.png
fi
echo docs/report.png docs/report-waits.png ${TORCH_PYTHON:+docs/report-phases.png}
