#!/usr/bin/env python3
"""Sums up PyTorch profiler traces (Chrome trace JSON) per training step, as Markdown tables.

    scripts/trace_summary.py [LABEL=]TRACE [[LABEL=]TRACE2] [--top N]

TRACE comes from `revgen train --profile-steps N` (profile/steps-A-B.pt.trace.json in the run directory) or from
`TRACE_OUT=DIR scripts/bench/train_pytorch.py ...`. Both name their steps ProfilerStep#N and their phases forward,
backward, optimizer and "read loss and norm". With two traces the tables put them side by side, operator by
operator and kernel by kernel. A trace's column is headed by LABEL, else by its file name.

Per step, averaged over the trace's steps:
- wall time of the step and of each phase (host time: on a GPU the host queues work and waits in the read);
- host: LibTorch operators (every `aten::` call, and those called at the top level, i.e. not from inside another
  operator) and each operator's self time (its time minus that of the operators it called);
- device (CUDA traces): kernels, memory copies and sets, and their summed time, also as a share of the step.
Only events inside the ProfilerStep spans count (so validation and checkpointing between steps do not).

The profiler slows the host (its steps take ~1.6x as long on the CPU) and can make a large allocation land on
fresh pages, so read host times as shares, and the counts as exact.
Standard library only.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

PHASES = ["forward", "backward", "optimizer", "read loss and norm"]
DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}


class Trace:
    def __init__(self, arg):
        label, _, path = arg.rpartition("=")
        self.label = label or Path(path).name.removesuffix(".pt.trace.json")
        events = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
        steps = sorted((e for e in events if e["name"].startswith("ProfilerStep#")), key=lambda e: e["ts"])
        if not steps:
            sys.exit(f"{path}: no ProfilerStep# spans (a trace of `revgen train --profile-steps` or train_pytorch.py?)")
        self.steps = len(steps)
        spans = [(s["ts"], s["ts"] + s["dur"]) for s in steps]
        inside = lambda e: any(a <= e["ts"] < b for a, b in spans)
        per_step = lambda x: x / self.steps
        self.wall_ms = per_step(sum(s["dur"] for s in steps)) / 1e3
        self.phase_ms = {p: per_step(sum(e["dur"] for e in events if e["name"] == p and inside(e))) / 1e3
                         for p in PHASES}

        ops = sorted((e for e in events if e.get("cat") == "cpu_op" and inside(e)),
                     key=lambda e: (e["ts"], -e["dur"]))
        self.ops = per_step(len(ops))
        self.top_level = 0
        calls, self_us = defaultdict(int), defaultdict(float)
        stacks = defaultdict(list)  # per thread: the operators that contain the current one
        for e in ops:
            stack = stacks[(e["pid"], e["tid"])]
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                self_us[stack[-1]["name"]] -= e["dur"]
            else:
                self.top_level += 1
            calls[e["name"]] += 1
            self_us[e["name"]] += e["dur"]
            stack.append(e)
        self.top_level = per_step(self.top_level)
        self.op_calls = {k: per_step(v) for k, v in calls.items()}
        self.op_self_ms = {k: per_step(v) / 1e3 for k, v in self_us.items()}
        self.host_self_ms = sum(self.op_self_ms.values())

        # Device work of the steps: from the first step's start to the last one's end (each step ends waiting for
        # the device, so its kernels run inside it).
        start, end = spans[0][0], spans[-1][1]
        device = [e for e in events if e.get("cat") in DEVICE_CATS and start <= e["ts"] < end]
        self.kernels = per_step(sum(e.get("cat") == "kernel" for e in device))
        self.device_ms = per_step(sum(e["dur"] for e in device)) / 1e3
        kernel_calls, kernel_us = defaultdict(int), defaultdict(float)
        for e in device:
            kernel_calls[e["name"]] += 1
            kernel_us[e["name"]] += e["dur"]
        self.kernel_calls = {k: per_step(v) for k, v in kernel_calls.items()}
        self.kernel_ms = {k: per_step(v) / 1e3 for k, v in kernel_us.items()}


def fmt(x, digits=1):
    return "" if x is None else f"{x:,.{digits}f}"


def overview(traces):
    rows = [("steps", lambda t: str(t.steps)), ("wall per step (ms)", lambda t: fmt(t.wall_ms))]
    rows += [(f"  {p} (ms)", lambda t, p=p: fmt(t.phase_ms[p])) for p in PHASES]
    rows += [
        ("ATen operators per step", lambda t: fmt(t.ops, 0)),
        ("  called at the top level", lambda t: fmt(t.top_level, 0)),
        ("host self time in operators (ms)", lambda t: fmt(t.host_self_ms)),
    ]
    if any(t.kernels for t in traces):
        rows += [
            ("device kernels per step", lambda t: fmt(t.kernels, 0)),
            ("device busy per step (ms)", lambda t: fmt(t.device_ms)),
            ("  share of the step", lambda t: f"{100 * t.device_ms / t.wall_ms:.0f}%"),
        ]
    out = ["| per step | " + " | ".join(t.label for t in traces) + " |", "|---" * (len(traces) + 1) + "|"]
    out += [f"| {name} | " + " | ".join(value(t) for t in traces) + " |" for name, value in rows]
    return "\n".join(out)


def table(traces, title, calls_of, ms_of, top):
    names = set().union(*(ms_of(t).keys() for t in traces))
    ranked = sorted(names, key=lambda n: -max(ms_of(t).get(n, 0.0) for t in traces))
    head = "| " + title + " | " + " | ".join(f"{t.label}: calls | ms" for t in traces) + " |"
    out = [head, "|---" * (2 * len(traces) + 1) + "|"]
    for name in ranked[:top]:
        shown = name if len(name) <= 90 else name[:87] + "..."
        cells = " | ".join(f"{fmt(calls_of(t).get(name), 0)} | {fmt(ms_of(t).get(name), 2)}" for t in traces)
        out.append(f"| `{shown}` | {cells} |")
    rest = ranked[top:]
    if rest:
        cells = " | ".join(
            f"{fmt(sum(calls_of(t).get(n, 0) for n in rest), 0)} | {fmt(sum(ms_of(t).get(n, 0) for n in rest), 2)}"
            for t in traces)
        out.append(f"| {len(rest)} others | {cells} |")
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    top = 25
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    if not 1 <= len(args) <= 2:
        sys.exit(__doc__)
    traces = [Trace(a) for a in args]
    print(overview(traces))
    print()
    print("Host: operators by self time per step")
    print()
    print(table(traces, "operator", lambda t: t.op_calls, lambda t: t.op_self_ms, top))
    if any(t.kernels for t in traces):
        print()
        print("Device: kernels, copies and sets by time per step")
        print()
        print(table(traces, "kernel", lambda t: t.kernel_calls, lambda t: t.kernel_ms, top))


if __name__ == "__main__":
    main()
