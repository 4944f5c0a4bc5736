"""The mixed-process case: fastnn's numpy API called in a process where torch just ran.

A program that mixes torch and fastnn calls (or a benchmark that times both in one
process) runs fastnn right after torch's ops, while torch's OpenMP workers still spin
and hold the cores. Measured here in one process: each sample runs the torch
implementation of the case once (untimed), then times fastnn's call once. The row is
"<fastnn impl> after torch"; its "vs alone" is fastnn-alone's median / this median
(1.0: no loss; 0.5: half the speed), from the alone rows of the same run.
"""

import time

from . import impls, machine, timing

SUFFIX = " after torch"
SPECS = [("dense", ("dense_relu", "forward+backward", (256, 1024, 1024))),
         ("activation", ("relu", "forward", (2 ** 24,)))]
QUICK_SPECS = SPECS[:1]


def specs(quick):
    return QUICK_SPECS if quick else SPECS


def run(jobs, args, budget_s, progress):
    """[(family name, spec, fastnn impl name, samples in seconds, error or None, load)]."""
    from .cli import FAMILIES

    fw = impls.load_group("fastnn.torch")
    fw.compile, fw.cache_rows = False, False
    fw.backends = [b for b in fw.backends if b == "cpp"]
    out = []
    for name, spec in jobs:
        progress.step(f"fastnn right after torch, one process: {spec[0]} {spec[1]}")
        case = FAMILIES[name].make_case(spec, args.dtype, fw, seed=args.seed)
        fast = next((i for i in case.impls if i.name == "fastnn[cpp]"), None)
        other = next((i for i in case.impls if i.name == "torch"), None)
        if fast is None or other is None:
            progress.finish_step()
            continue
        case.impls = [fast, other]
        timing.check(case)
        samples = []
        before = machine.cpu_snapshot()
        if fast.error is None and other.error is None:
            deadline = time.perf_counter() + budget_s
            with fast.context():
                while len(samples) < 5 or (time.perf_counter() < deadline and len(samples) < 200):
                    other.fn()  # torch works, its threads spin on ...
                    t0 = time.perf_counter()
                    fast.fn()  # ... while fastnn runs
                    samples.append(time.perf_counter() - t0)
        load = machine.background_load(before, machine.cpu_snapshot(), machine.core_count())
        out.append((name, spec, fast.name + SUFFIX, samples, fast.error or other.error, load))
        progress.finish_step()
    return out
