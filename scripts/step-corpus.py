#!/usr/bin/env python3
"""Records every entry of the step-detection corpus (fixtures/training/)
several times with sofa's default settings and prints how often the steps
sofa finds match the ones the script timed itself:

    scripts/step-corpus.py [--runs 3] [--quick] [--hog] [--only NAME]...

A loop is a hit when the detected count and mean period are both within
5 % of the truth (the steps the script timed, span over count); the
summary also says how many hit against the median step (a warm-up step of
1.3 s before 119 of 25 ms makes the mean 36 ms; beside a CPU hog, step
lengths vary so much that the mean is 20-40 % above the median, and the
mean is what sofa reports). A loop-less program is a hit when no steps are
reported. "One
start per step" is the share of true steps that hold exactly one found
step start, the found starts' common phase taken out (where in the loop
body a detector starts its steps is its choice; one per step is not). The frameworks come from scripts/training-venv.sh (--python
chooses another interpreter); --quick runs only the entries that need
numpy alone. --hog keeps one CPU busy beside each recording.
"""

import argparse
import bisect
import json
import math
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
    # Batches slower than the steps: the workers take turns, so every other
    # batch comes down the same pipe (a rhythm of two steps).
    ("torch-cnn-slow-data", "torch_cnn.py", ["--workers", "2", "--slow-data", "100"], "torch"),
    ("torch-transformer", "torch_transformer.py", [], "torch"),
    ("sklearn-mlp-partial-fit", "sklearn_mlp.py", [], "sklearn"),
    ("jax-mlp", "jax_mlp.py", [], "jax"),
    ("torch-ddp-2-ranks", "torch_ddp.py", [], "torch"),
    ("loopless-sort", "loopless_sort.py", [], None),
    ("loopless-compile", "loopless_compile.py", [], None),
    ("loopless-server", "loopless_server.py", [], None),
]

TRUTH = re.compile(r"sofa-corpus steps=(\d+) step_ms=([0-9.]+)(?: from_ns=(\d+) to_ns=(\d+))?")
STARTS = re.compile(r"sofa-corpus-starts us=([0-9,]*)")


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
            text = f.read()
        truth = TRUTH.search(text)
        starts = STARTS.search(text)
    else:
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sofa, "record", "-o", out, *extra, "--", python, os.path.join(CORPUS, script), *args]
        run = subprocess.run(cmd, capture_output=True, text=True)
        truth = TRUTH.search(run.stderr)
        starts = STARTS.search(run.stderr)
        if run.returncode != 0 or not truth:
            sys.stderr.write(run.stderr)
            raise SystemExit(f"step-corpus: recording {name} failed (exit {run.returncode})")
        with open(truth_file, "w") as f:
            f.write(truth.group(0) + ("\n" + starts.group(0) if starts else "") + "\n")
    analysis = subprocess.run([sofa, "analyze", out, "--json"], capture_output=True, text=True)
    if analysis.returncode != 0:
        sys.stderr.write(analysis.stderr)
        raise SystemExit(f"step-corpus: analyzing {name} failed")
    steps = json.loads(analysis.stdout)["steps"]
    span = (int(truth.group(3)), int(truth.group(4))) if truth.group(3) else None
    true_starts = None
    if span and starts and starts.group(1):
        true_starts = [span[0] + int(us) * 1000 for us in starts.group(1).split(",")]
    return int(truth.group(1)), float(truth.group(2)), span, true_starts, steps


def one_to_one(true_starts, end, boundaries):
    """Share of the true steps that hold exactly one found start, once the
    found starts' common offset is taken out: a detector may start its steps
    anywhere in the loop body (where its marker rises), but each true step
    should get one start. Each true start, moved by the median offset of the
    found starts from their nearest true start, owns the times closer to it
    than to its neighbours. Also the number of found starts outside the true
    loop."""
    if not true_starts or len(boundaries) < 2:
        return None, None
    ts = sorted(true_starts)
    found = boundaries[:-1]  # the last boundary is the loop's end
    n = len(ts)

    def nearest(x):
        i = bisect.bisect_left(ts, x)
        return min((ts[j] for j in (i - 1, i) if 0 <= j < n), key=lambda t: abs(t - x))

    offsets = sorted(f - nearest(f) for f in found)
    off = offsets[len(offsets) // 2]
    moved = [t + off for t in ts] + [end + off]
    cells = [moved[0] - (moved[1] - moved[0]) / 2]
    cells += [(moved[i] + moved[i + 1]) / 2 for i in range(n)]
    held = [0] * n
    outside = 0
    for f in found:
        i = bisect.bisect_right(cells, f) - 1
        if 0 <= i < n:
            held[i] += 1
        else:
            outside += 1
    return round(sum(1 for h in held if h == 1) / n, 3), outside


def judge(true_count, true_ms, steps):
    count = steps["count"]
    if true_count == 0:
        return count == 0, True
    period_ms = (steps.get("period_ns") or 0) / 1e6
    return abs(count - true_count) <= 0.05 * true_count, abs(period_ms - true_ms) <= 0.05 * true_ms


def typical_ms(true_starts, end):
    """The median step time: the loop's period. The mean (span over count)
    is not one when a warm-up step takes 50 typical steps (the PyTorch CNN's
    first step, 1.3 s before 119 of 25 ms)."""
    if not true_starts:
        return None
    edges = list(true_starts) + [end]
    lengths = sorted((edges[i + 1] - edges[i]) / 1e6 for i in range(len(true_starts)))
    mid = len(lengths) // 2
    return lengths[mid] if len(lengths) % 2 else (lengths[mid - 1] + lengths[mid]) / 2


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
                    true_count, true_ms, span, true_starts, steps = record(args.sofa, args.python, entry, args.record_arg, out,
                                                        args.reuse)
                    median_ms = typical_ms(true_starts, span[1]) if span else None
                    count_ok, period_ok = judge(true_count, true_ms, steps)
                    median_ok = median_ms is not None and all(judge(true_count, median_ms, steps))
                    period_ms = (steps.get("period_ns") or 0) / 1e6
                    # How far the found loop's ends are from the true ones, ms.
                    ends = None
                    if span and steps["count"]:
                        b = steps["boundaries_ns"]
                        ends = (round((b[0] - span[0]) / 1e6, 1), round((b[-1] - span[1]) / 1e6, 1))
                    held, outside = one_to_one(true_starts, span[1] if span else 0,
                                               steps.get("boundaries_ns") or [])
                    results.append({
                        "entry": entry[0], "run": run, "true_steps": true_count, "true_step_ms": true_ms,
                        "true_median_ms": median_ms, "hit_by_median": median_ok,
                        "steps": steps["count"], "step_ms": round(period_ms, 2), "method": steps.get("method"),
                        "confidence": round(steps.get("confidence") or 0, 3), "note": steps.get("note"),
                        "count_ok": count_ok, "period_ok": period_ok, "ends_ms": ends,
                        "one_to_one": held, "starts_outside": outside,
                    })
                    print(f"{entry[0]:<26} run {run + 1}: truth {true_count} x {true_ms:.1f} ms"
                          f"{f' (median {median_ms:.1f})' if median_ms else ''}, "
                          f"found {steps['count']} x {period_ms:.1f} ms ({steps.get('method') or steps.get('note')}) "
                          f"{'hit' if count_ok and period_ok else 'MISS'}"
                          f"{f' (loop ends off by {ends[0]:+.0f}, {ends[1]:+.0f} ms)' if ends else ''}"
                          f"{f'; one start in {held:.0%} of the true steps, {outside} outside' if held is not None else ''}"
                          f" [{time.time() - started:.0f} s]",
                          file=sys.stderr, flush=True)
    finally:
        if hog:
            hog.kill()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)

    print(f"\n| entry | truth | hits | found (count × ms) | one start per step | method |"
          f"{' (beside a CPU hog)' if args.hog else ''}")
    print("| --- | --- | --- | --- | --- | --- |")
    loops = [0, 0]
    loopless = [0, 0]
    for entry in entries:
        rows = [r for r in results if r["entry"] == entry[0]]
        hits = sum(r["count_ok"] and r["period_ok"] for r in rows)
        first = rows[0]
        truth = f"{first['true_steps']} × {first['true_step_ms']:.0f} ms" if first["true_steps"] else "no loop"
        found = ", ".join(f"{r['steps']} × {r['step_ms']:.0f}" if r["steps"] else "none" for r in rows)
        methods = ", ".join(sorted({r["method"] or "-" for r in rows}))
        held = ", ".join(f"{r['one_to_one']:.0%}" if r.get("one_to_one") is not None else "-" for r in rows)
        print(f"| {entry[0]} | {truth} | {hits}/{len(rows)} | {found} | {held} | {methods} |")
        tally = loops if first["true_steps"] else loopless
        tally[0] += hits
        tally[1] += len(rows)
    by_median = sum(bool(r.get("hit_by_median")) for r in results if r["true_steps"])
    print(f"\nloops: {loops[0]}/{loops[1]} recordings within ±5 % in count and period "
          f"({by_median} against the median step); "
          f"loop-less: {loopless[1] - loopless[0]}/{loopless[1]} recordings with false steps")


if __name__ == "__main__":
    main()
