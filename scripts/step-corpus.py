#!/usr/bin/env python3
"""Records every entry of the step-detection corpus (fixtures/training/)
several times with sofa's default settings and prints how often the steps
sofa finds match the ones the script timed itself:

    scripts/step-corpus.py [--runs 3] [--quick] [--hog] [--only NAME]...

A loop is a hit when the detected count and the mean period are both
within 5 % of the truth; a loop-less program is a hit when no steps are
reported. The frameworks come from scripts/training-venv.sh (--python
chooses another interpreter); --quick runs only the entries that need
numpy alone. --hog keeps one CPU busy beside each recording.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fixtures", "training")

# name, script, arguments, what it needs beyond numpy
ENTRIES = [
    ("numpy-python-data", "numpy_pyheavy.py", [], None),
    ("numpy-blas", "numpy_blas.py", [], None),
    ("torch-mlp", "torch_mlp.py", [], "torch"),
    ("torch-mlp-1-thread", "torch_mlp.py", ["--threads", "1"], "torch"),
    ("torch-cnn-0-workers", "torch_cnn.py", ["--workers", "0"], "torch"),
    ("torch-cnn-2-workers", "torch_cnn.py", ["--workers", "2"], "torch"),
    ("torch-transformer", "torch_transformer.py", [], "torch"),
    ("sklearn-mlp-partial-fit", "sklearn_mlp.py", [], "sklearn"),
    ("jax-mlp", "jax_mlp.py", [], "jax"),
    ("torch-ddp-2-ranks", "torch_ddp.py", [], "torch"),
    ("loopless-sort", "loopless_sort.py", [], None),
    ("loopless-compile", "loopless_compile.py", [], None),
    ("loopless-server", "loopless_server.py", [], None),
]

TRUTH = re.compile(r"sofa-corpus steps=(\d+) step_ms=([0-9.]+)(?: from_ns=(\d+) to_ns=(\d+))?")


def default_python():
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    venv = os.path.join(cache, "sofa", "training-venv", "bin", "python")
    return venv if os.path.exists(venv) else "python3"


def has(python, module):
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def record(sofa, python, entry, extra, out, reuse):
    name, script, args, _ = entry
    truth_file = out + ".truth"
    if reuse:
        if not os.path.exists(truth_file):
            raise SystemExit(f"step-corpus: no kept archive {out} (record it first: the same command without --reuse)")
        with open(truth_file) as f:
            truth = TRUTH.search(f.read())
    else:
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sofa, "record", "-o", out, *extra, "--", python, os.path.join(CORPUS, script), *args]
        run = subprocess.run(cmd, capture_output=True, text=True)
        truth = TRUTH.search(run.stderr)
        if run.returncode != 0 or not truth:
            sys.stderr.write(run.stderr)
            raise SystemExit(f"step-corpus: recording {name} failed (exit {run.returncode})")
        with open(truth_file, "w") as f:
            f.write(truth.group(0))
    analysis = subprocess.run([sofa, "analyze", out, "--json"], capture_output=True, text=True)
    if analysis.returncode != 0:
        sys.stderr.write(analysis.stderr)
        raise SystemExit(f"step-corpus: analyzing {name} failed")
    steps = json.loads(analysis.stdout)["steps"]
    span = (int(truth.group(3)), int(truth.group(4))) if truth.group(3) else None
    return int(truth.group(1)), float(truth.group(2)), span, steps


def judge(true_count, true_ms, steps):
    count = steps["count"]
    if true_count == 0:
        return count == 0, True
    period_ms = (steps.get("period_ns") or 0) / 1e6
    return abs(count - true_count) <= 0.05 * true_count, abs(period_ms - true_ms) <= 0.05 * true_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only the entries that need numpy alone")
    ap.add_argument("--hog", action="store_true", help="one busy CPU hog beside each recording")
    ap.add_argument("--only", action="append", default=[], help="entry name (repeatable)")
    ap.add_argument("--python", default=default_python())
    ap.add_argument("--sofa", default=os.path.join(ROOT, "target", "release", "sofa"))
    ap.add_argument("--record-arg", action="append", default=[], help="passed to sofa record")
    ap.add_argument("--json", help="write every recording's result here")
    ap.add_argument("--archives", help="keep the archives in this directory (ENTRY-RUN)")
    ap.add_argument("--reuse", action="store_true",
                    help="analyze the archives kept by an earlier --archives run instead of recording")
    args = ap.parse_args()

    entries = [e for e in ENTRIES if (not args.only or e[0] in args.only) and (not args.quick or e[3] is None)]
    missing = {e[3] for e in entries if e[3] and not has(args.python, e[3])}
    if missing:
        print(f"step-corpus: {args.python} lacks {', '.join(sorted(missing))}: those entries are skipped "
              "(scripts/training-venv.sh makes a venv with them)", file=sys.stderr)
        entries = [e for e in entries if e[3] not in missing]
    hog = None
    if args.hog:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    results = []
    try:
        if args.reuse and not args.archives:
            raise SystemExit("step-corpus: --reuse needs --archives DIR")
        with tempfile.TemporaryDirectory(prefix="sofa-corpus-") as workdir:
            if args.archives:
                os.makedirs(args.archives, exist_ok=True)
            for entry in entries:
                for run in range(args.runs):
                    started = time.time()
                    out = os.path.join(args.archives or workdir, f"{entry[0]}-{run + 1}")
                    true_count, true_ms, span, steps = record(args.sofa, args.python, entry, args.record_arg, out,
                                                        args.reuse)
                    count_ok, period_ok = judge(true_count, true_ms, steps)
                    period_ms = (steps.get("period_ns") or 0) / 1e6
                    # How far the found loop's ends are from the true ones, ms.
                    ends = None
                    if span and steps["count"]:
                        b = steps["boundaries_ns"]
                        ends = (round((b[0] - span[0]) / 1e6, 1), round((b[-1] - span[1]) / 1e6, 1))
                    results.append({
                        "entry": entry[0], "run": run, "true_steps": true_count, "true_step_ms": true_ms,
                        "steps": steps["count"], "step_ms": round(period_ms, 2), "method": steps.get("method"),
                        "confidence": round(steps.get("confidence") or 0, 3), "note": steps.get("note"),
                        "count_ok": count_ok, "period_ok": period_ok, "ends_ms": ends,
                    })
                    print(f"{entry[0]:<26} run {run + 1}: truth {true_count} x {true_ms:.1f} ms, "
                          f"found {steps['count']} x {period_ms:.1f} ms ({steps.get('method') or steps.get('note')}) "
                          f"{'hit' if count_ok and period_ok else 'MISS'}"
                          f"{f' (loop ends off by {ends[0]:+.0f}, {ends[1]:+.0f} ms)' if ends else ''}"
                          f" [{time.time() - started:.0f} s]",
                          file=sys.stderr, flush=True)
    finally:
        if hog:
            hog.kill()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)

    print(f"\n| entry | truth | hits | found (count × ms) | method |{' (beside a CPU hog)' if args.hog else ''}")
    print("| --- | --- | --- | --- | --- |")
    loops = [0, 0]
    loopless = [0, 0]
    for entry in entries:
        rows = [r for r in results if r["entry"] == entry[0]]
        hits = sum(r["count_ok"] and r["period_ok"] for r in rows)
        first = rows[0]
        truth = (f"{first['true_steps']} × {first['true_step_ms']:.0f} ms" if first["true_steps"]
                 else "no loop")
        found = ", ".join(f"{r['steps']} × {r['step_ms']:.0f}" if r["steps"] else "none" for r in rows)
        methods = ", ".join(sorted({r["method"] or "-" for r in rows}))
        print(f"| {entry[0]} | {truth} | {hits}/{len(rows)} | {found} | {methods} |")
        tally = loops if first["true_steps"] else loopless
        tally[0] += hits
        tally[1] += len(rows)
    print(f"\nloops: {loops[0]}/{loops[1]} recordings within ±5 % in count and period; "
          f"loop-less: {loopless[1] - loopless[0]}/{loopless[1]} recordings with false steps")


if __name__ == "__main__":
    main()
