#!/usr/bin/env bash
# Prints the CPython struct offsets the loop probe uses
# (sofa-record/src/linux/pyprobe.rs, `V3_11`, `V3_12`, `V3_13`), compiled
# from each interpreter's own internal headers: run it for a new CPython
# (pyenv's builds install the headers) and compare.
#
#     scripts/python-offsets.sh [PREFIX...]     # default: ~/.pyenv/versions/3.1[1-3].*
set -euo pipefail
prefixes=("$@")
if [ ${#prefixes[@]} -eq 0 ]; then
    prefixes=(~/.pyenv/versions/3.1[1-3].*)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/offsets.c" <<'C'
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include "internal/pycore_interp.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_code.h"
#include <stdio.h>
#define P(what, value) printf("    %-16s %zu\n", what, (size_t)(value))
int main(void) {
    P("threads_head", offsetof(PyInterpreterState, threads.head));
    P("ts_next", offsetof(PyThreadState, next));
    P("ts_native_id", offsetof(PyThreadState, native_thread_id));
#if PY_VERSION_HEX >= 0x030D0000
    P("current (direct)", offsetof(PyThreadState, current_frame));
    P("fr_code", offsetof(_PyInterpreterFrame, f_executable));
    P("fr_instr", offsetof(_PyInterpreterFrame, instr_ptr));
#else
    P("cframe", offsetof(PyThreadState, cframe));
    P("current", offsetof(_PyCFrame, current_frame));
    P("fr_code", offsetof(_PyInterpreterFrame, f_code));
    P("fr_instr", offsetof(_PyInterpreterFrame, prev_instr));
#endif
    P("ts_datastack", offsetof(PyThreadState, datastack_chunk));
    P("fr_previous", offsetof(_PyInterpreterFrame, previous));
    P("fr_owner", offsetof(_PyInterpreterFrame, owner));
#if PY_VERSION_HEX < 0x030C0000
    P("fr_is_entry", offsetof(_PyInterpreterFrame, is_entry));
#else
    P("OWNED_BY_CSTACK", FRAME_OWNED_BY_CSTACK);
#endif
    P("co_qualname", offsetof(PyCodeObject, co_qualname));
    P("co_filename", offsetof(PyCodeObject, co_filename));
    P("co_firstlineno", offsetof(PyCodeObject, co_firstlineno));
    P("co_linetable", offsetof(PyCodeObject, co_linetable));
    P("co_code", offsetof(PyCodeObject, co_code_adaptive));
    P("ascii_data", sizeof(PyASCIIObject));
    return 0;
}
C
for prefix in "${prefixes[@]}"; do
    python=$(ls "$prefix"/bin/python3.* 2>/dev/null | grep -E 'python3\.[0-9]+$' | head -1)
    [ -n "$python" ] || { echo "$prefix: no python3.N" >&2; continue; }
    include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    echo "$($python -V) ($include)"
    cc -I"$include" -I"$include/internal" "$work/offsets.c" -o "$work/offsets"
    "$work/offsets"
done
