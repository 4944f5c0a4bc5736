"""One benchmark worker process (procs.py): time the cases of one group of
implementations with only that group's libraries imported.

Request (JSON on stdin): group, dtype, seed, check (compare with the float64 reference
first), compile, backends (None: every CPU backend), cache_rows, no_output_cache,
timing (a timing.Timing's fields), jobs [(family name, op, mode, shape)].
Result (one line on stdout, after procs.MARK): {"modules": {library: imported?},
"jobs": [per job None, or {"load": other
processes' share of the cores while it was timed, "impls": [{"name", "samples"
(seconds per call), "error"}]}]}.
"""

import json
import os
import sys

import numpy as np

from . import impls, machine, procs, timing


def _cached_reference(case, ref_dir, family_name, seed):
    """Load the case's float64 reference from `ref_dir` if an earlier worker of this run
    saved it, else compute and save it: every group checks against the same arrays, and
    the float64 reference of a 16M-element case costs about as much as timing it."""
    if not ref_dir:
        return
    name = f"{family_name}-{case.op}-{case.mode}-{'x'.join(map(str, case.shape))}-{case.dtype}-{seed}"
    path = os.path.join(ref_dir, name.replace(" ", "_").replace("+", "_") + ".npz")
    if os.path.exists(path):
        with np.load(path) as f:
            case.reference = tuple(f[f"r{k}"] for k in range(len(f.files)))
        return
    # float32 cases keep the float64 reference rounded to float32: a 6e-8 relative change
    # against a 1e-4 tolerance (timing.TOLERANCES), and half the bytes to write and read
    keep = np.float32 if case.dtype == "float32" else np.float64
    case.reference = tuple(np.asarray(r, dtype=keep) for r in case.expected())
    np.savez(path, **{f"r{k}": r for k, r in enumerate(case.reference)})


def run(request):
    from .cli import FAMILIES

    group = request["group"]
    fw = impls.load_group(group)
    fw.compile = request["compile"]
    fw.cache_rows = request["cache_rows"]
    if request["backends"] is not None:
        fw.backends = [b for b in fw.backends if b in request["backends"]]
    if request["no_output_cache"] and fw.fastnn is not None:
        impls.disable_output_cache(fw)
    plan = timing.Timing(**request["timing"])
    out = []
    for family_name, op, mode, shape in request["jobs"]:
        case = FAMILIES[family_name].make_case((op, mode, tuple(shape)), request["dtype"], fw,
                                               seed=request["seed"])
        case.impls = [i for i in case.impls if impls.group_of(i.name) == group]
        if not case.impls:
            out.append(None)
            continue
        if request["check"]:
            _cached_reference(case, request.get("ref_dir"), family_name, request["seed"])
            timing.check(case)
        before = machine.cpu_snapshot()
        timing.time_case(case, plan)
        load = machine.background_load(before, machine.cpu_snapshot(), machine.core_count())
        out.append({"load": load, "unit": case.unit, "work": case.work, "ceiling": case.ceiling,
                    "impls": [{"name": i.name, "samples": i.samples, "error": i.error}
                                            for i in case.impls]})
        del case
    return out


def main():
    # which libraries this process had imported once it was done (a test checks that a
    # process timing fastnn alone never imported torch)
    result = {"jobs": run(json.load(sys.stdin)),
              "modules": {m: m in sys.modules for m in ("torch", "fastnn", "tensorflow", "jax")}}
    sys.stdout.write(procs.MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
