#!/usr/bin/env bash
# Installs what sofa's demo and tests need on a Debian machine with a Rust
# toolchain. Idempotent: installs only what is missing.
#   - a C compiler (fixture workloads), linux-perf and strace (comparison tests)
#   - Python 3 with numpy (fixture training loop)
#   - with --tests: Chromium (the report is loaded in headless Chromium),
#     libc6-dbg (libc's detached symbols, as perf uses them) and py-spy from
#     PyPI (the reference for Python stacks)
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
if [ "${1:-}" = "--tests" ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  # libc's detached debug file: names memset/memcpy's internal variants.
  dpkg -s libc6-dbg >/dev/null 2>&1 || need_apt+=(libc6-dbg)
  # objcopy/strip/nm and xz build the MiniDebugInfo test fixture.
  command -v objcopy >/dev/null 2>&1 || need_apt+=(binutils)
  command -v xz >/dev/null 2>&1 || need_apt+=(xz-utils)
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import numpy' >/dev/null 2>&1; then
  echo "setup: installing numpy for $(command -v python3)" >&2
  python3 -m pip install --quiet numpy 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages numpy 2>/dev/null \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy >/dev/null; }
  python3 -c 'import numpy' || { echo "setup: numpy is still missing" >&2; exit 1; }
fi

if [ "${1:-}" = "--tests" ]; then
  # py-spy, the reference the Python-frame tests compare sofa with.
  scripts=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")
  if [ ! -x "$scripts/py-spy" ]; then
    echo "setup: installing py-spy for $(command -v python3)" >&2
    python3 -m pip install --quiet py-spy 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages py-spy
    [ -x "$scripts/py-spy" ] || { echo "setup: py-spy is still missing at $scripts" >&2; exit 1; }
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
