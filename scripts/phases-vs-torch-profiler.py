#!/usr/bin/env python3
"""sofa's framework phases next to torch.profiler's CPU totals for the same
PyTorch corpus script (issue 17: an order-of-magnitude check, not a test).

    scripts/phases-vs-torch-profiler.py --python /root/torchvenv/bin/python \
        fixtures/training/torch_mlp.py [--runs 2] [-- --threads 1]

Each run records the script with `sofa record` (defaults) and reads the
`phases` of `sofa analyze --json`, then runs it again, unrecorded, under
`torch.profiler` (CPU activity) with every step (from the corpus's
`_truth.Steps.step` to the next) in one `record_function` range. The ops directly under those ranges are put in
phases by the names PyTorch gives them: `Optimizer.*` optimizer,
`enumerate(DataLoader)*` data loading, `autograd::engine::*` backward,
`c10d::*`/`gloo:*`/`nccl:*` communication, any other op forward (the
loop's remaining ops are the model's and the loss's); the steps' time
outside any op is "other" (the interpreter between ops). torch.profiler
measures the main thread's wall time in each op; sofa counts the CPU
samples of all the main process's threads. The two are different measures
of the same split: the check is that they agree in order of magnitude and
in which phase is largest.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ["forward", "backward", "optimizer", "data loading", "communication", "other"]

# Runs in the venv's interpreter: the entry under torch.profiler.
PROFILE = r"""
import json, os, runpy, sys
import torch
from torch.profiler import profile, ProfilerActivity
entry, out = sys.argv[1], sys.argv[2]
sys.argv = [entry] + sys.argv[3:]
sys.path.insert(0, os.path.dirname(os.path.abspath(entry)))
import _truth
from torch.autograd.profiler import record_function
prof = profile(activities=[ProfilerActivity.CPU])
step, done = _truth.Steps.step, _truth.Steps.done
ranges = []
def close():
    while ranges:
        ranges.pop().__exit__(None, None, None)
def profiled_step(self):
    close()
    step(self)
    ranges.append(record_function("sofa-corpus-step"))
    ranges[-1].__enter__()
def profiled_done(self):
    close()
    done(self)
_truth.Steps.step, _truth.Steps.done = profiled_step, profiled_done
with prof:
    runpy.run_path(entry, run_name="__main__")
def phase(name):
    if name.startswith("Optimizer."):
        return "optimizer"
    if name.startswith("enumerate(DataLoader)"):
        return "data loading"
    if name.startswith("autograd::engine::"):
        return "backward"
    if name.startswith(("c10d::", "gloo:", "nccl:", "record_param_comms")):
        return "communication"
    return "forward"
totals = {}
steps_us = 0.0
for ev in prof.events():
    if ev.name != "sofa-corpus-step":
        continue
    steps_us += ev.cpu_time_total
    inside = 0.0
    for child in ev.cpu_children:
        p = phase(child.name)
        totals[p] = totals.get(p, 0.0) + child.cpu_time_total
        inside += child.cpu_time_total
    totals["other"] = totals.get("other", 0.0) + max(0.0, ev.cpu_time_total - inside)
json.dump({"steps_us": steps_us, "totals_us": totals}, open(out, "w"))
"""


def sofa_phases(sofa, python, entry, args, tmp):
    archive = os.path.join(tmp, "archive")
    subprocess.run([sofa, "record", "-o", archive, "--", python, entry, *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = subprocess.run([sofa, "analyze", "--json", archive], check=True,
                         capture_output=True, text=True).stdout
    phases = json.loads(out)["phases"]
    shares = {p["name"]: p["share"] for p in phases["phases"]}
    return shares, phases["in_loop"]


def profiler_phases(python, entry, args, tmp):
    out = os.path.join(tmp, "profile.json")
    subprocess.run([python, "-c", PROFILE, entry, out, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got = json.load(open(out))
    total = sum(got["totals_us"].values()) or 1.0
    return {k: v / total for k, v in got["totals_us"].items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("entry", help="a PyTorch corpus script (fixtures/training/torch_*.py)")
    ap.add_argument("args", nargs="*", help="its arguments (after --)")
    ap.add_argument("--python", default=sys.executable, help="the venv's interpreter, with torch")
    ap.add_argument("--sofa", default=os.path.join(ROOT, "target/release/sofa"))
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    if not os.access(a.sofa, os.X_OK):
        sys.exit(f"error: no sofa binary at {a.sofa}; hint: cargo build --release")
    rows = []
    for run in range(a.runs):
        with tempfile.TemporaryDirectory() as tmp:
            sofa, in_loop = sofa_phases(a.sofa, a.python, a.entry, a.args, tmp)
            torch = profiler_phases(a.python, a.entry, a.args, tmp)
        rows.append((sofa, in_loop, torch))
    name = " ".join([os.path.basename(a.entry), *a.args])
    print(f"{name}: share of the steps per phase, {a.runs} run(s)")
    print(f"{'phase':<14}" + "".join(f"{'sofa':>9}{'torch':>9}" for _ in rows))
    for phase in PHASES:
        cells = "".join(f"{100 * s.get(phase, 0):8.1f}%{100 * t.get(phase, 0):8.1f}%"
                        for s, _, t in rows)
        print(f"{phase:<14}{cells}")
    if not all(in_loop for _, in_loop, _ in rows):
        print("note: sofa found no steps in a run; its shares there are of the whole run")


if __name__ == "__main__":
    main()
