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
import sys

from . import impls, machine, procs, timing


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
