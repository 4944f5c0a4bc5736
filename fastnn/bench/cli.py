"""`python -m fastnn.bench`: fastnn against torch on this machine, the way a user runs them.

    python -m fastnn.bench --quick                 # the short run: fastnn vs torch
    python -m fastnn.bench --json run.json         # the full run, saved
    python -m fastnn.bench compare old.json new.json

Order: wait briefly for a quiet machine, measure the ceilings, then time every case
with each library alone in its own processes, alternated (procs.py), then the
mixed-process case (mixed.py), then print the table, the ceilings in one line each, the
load, and (--targets) the project's own goals.
"""

import argparse
import importlib.metadata
import sys
import time

from . import (activation, compare, dense, dense_ce, impls, loss, lowp, machine, mixed, mlp, plot,
               procs, report, softmax, targets, threads, timing)

# Run order; every family a module with specs(quick) and make_case(spec, dtype, fw).
FAMILIES = {"dense": dense, "activation": activation, "softmax": softmax, "loss": loss,
            "dense_ce": dense_ce, "mlp": mlp, "threads": threads, "lowp": lowp}
QUICK_FAMILIES = ("dense", "activation", "softmax", "loss", "mlp")
ORDER = ["fastnn[cpp]", "fastnn[cpp] no cache", "fastnn[numba]", "fastnn[cpp] 1 thread",
         "fastnn[cpp] 2 threads", "fastnn.torch.patch", "fastnn[cpp] after torch", "torch",
         "torch.compile", "numpy"]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m fastnn.bench",
        description="Time fastnn's kernels against torch (and torch.compile, and plain numpy) "
                    "on this machine: Dense layers, activations, softmax, losses, an MLP "
                    "training step. Each library runs alone in its own processes, "
                    "alternated; `python -m fastnn.bench compare A.json B.json` compares "
                    "two saved runs.")
    p.add_argument("--quick", action="store_true",
                   help="fewer cases, fastnn's C++ backend vs torch only, short timing")
    p.add_argument("--dtype", choices=timing.RUN_DTYPES, default="float32",
                   help="dtype of every float input (default: float32)")
    p.add_argument("--json", metavar="FILE", help="write the run (header, ceilings, rows) to FILE")
    p.add_argument("--csv", metavar="FILE",
                   help="append one row per (case, implementation) to FILE")
    p.add_argument("--ops", default=None,
                   help=f"comma-separated op families (default: all of {','.join(FAMILIES)}; "
                        f"--quick: {','.join(QUICK_FAMILIES)})")
    p.add_argument("--activations", default=None,
                   help=f"comma-separated activations of the activation rows (default: "
                        f"{','.join(activation.NAMES)}; --quick: "
                        f"{','.join(activation.QUICK_NAMES)})")
    p.add_argument("--only", default=None, metavar="TEXT[,TEXT]",
                   help="only the cases whose 'op mode shape' contains one of these texts, "
                        "e.g. --only 'dense_relu forward+backward 256x1024x1024'")
    p.add_argument("--targets", action="store_true",
                   help="also check the project's own performance goals against this run")
    p.add_argument("--rounds", type=int, default=None,
                   help="alternations of the per-library processes (default 3; --quick 2)")
    p.add_argument("--same-process", action="store_true",
                   help="time every library in this one process, interleaved, instead of "
                        "each alone (faster to start; fastnn may pay for torch's spinning threads)")
    p.add_argument("--no-mixed", action="store_true",
                   help="skip the mixed-process case (fastnn called right after torch)")
    p.add_argument("--ignore-load", action="store_true",
                   help="show ratios even where the machine was busy (they are marked)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw throughput vs size per implementation (needs matplotlib)")
    p.add_argument("--no-compile", action="store_true",
                   help="no torch.compile rows (on in the full run, off with --quick)")
    p.add_argument("--no-output-cache", action="store_true",
                   help="turn fastnn's output buffer cache off for the whole run")
    p.add_argument("--seed", type=int, default=0, help="seed of the input data")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    default_ops = QUICK_FAMILIES if args.quick else tuple(FAMILIES)
    args.ops = [f.strip() for f in (args.ops or ",".join(default_ops)).split(",") if f.strip()]
    unknown = sorted(set(args.ops) - set(FAMILIES))
    if unknown or not args.ops:
        p.error(f"--ops {','.join(unknown) or '(empty)'}: expected a comma-separated "
                f"subset of {','.join(FAMILIES)}")
    if args.activations is not None:
        args.activations = [a.strip() for a in args.activations.split(",") if a.strip()]
        bad = sorted(set(args.activations) - set(activation.NAMES))
        if bad or not args.activations:
            p.error(f"--activations {','.join(bad) or '(empty)'}: expected a "
                    f"comma-separated subset of {','.join(activation.NAMES)}")
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: expected an integer >= 1")
    if args.plot and plot.missing():
        p.error(plot.missing())
    return args


def plan(args):
    """[(family name, (op, mode, shape))] in run order."""
    jobs = []
    for name, family in FAMILIES.items():
        if name not in args.ops:
            continue
        specs = (family.specs(args.quick, args.activations) if family is activation
                 else family.specs(args.quick))
        jobs += [(name, s) for s in specs]
    if args.only:
        wanted = [t.strip() for t in args.only.split(",") if t.strip()]
        jobs = [(n, s) for n, s in jobs
                if any(t in f"{s[0]} {s[1]} {report.shape_str(s[2])}" for t in wanted)]
    return jobs


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _fastnn_version():
    try:
        import fastnn
        return fastnn.__version__
    except Exception:  # noqa: BLE001 - the header says '?'
        return ""


def meta(args, load):
    """The facts the header prints (and --json saves)."""
    from fastnn import _info
    import numpy as np

    paths = _info.code_paths()
    threads_of_fastnn = machine.kernel_threads()
    return {"mode": "quick" if args.quick else "full", "dtype": args.dtype,
            "cpu": machine.cpu_model(), "cores": machine.core_count(), "isa": machine.isa_level(),
            "paths": {k: list(v) if isinstance(v, tuple) else v for k, v in paths.items() if k != "blas"},
            "openblas": _info.openblas(), "fastnn_threads": threads_of_fastnn,
            "fastnn": _fastnn_version(), "torch": _version("torch"), "numpy": np.__version__,
            "numpy_blas": machine.numpy_blas(), "commit": machine.git_commit(),
            "date": machine.utc_now(), "load_at_start": load,
            "process": "same process" if args.same_process else
            f"each library alone, {args.rounds} round{'s' if args.rounds > 1 else ''}"}


def header(m, args):
    from fastnn import _info

    lines = [f"fastnn.bench ({m['mode']}, {m['dtype']}) -- fastnn {m['fastnn'] or '?'}, commit {m['commit']}",
             f"CPU: {m['cpu']}, {m['cores']} cores; instruction set level: {m['isa']}"]
    lines += [f"  fastnn chose: {line}" for line in _info.describe_paths(m["paths"])]
    lines += [f"  OpenBLAS (fastnn's): {m['openblas']}; fastnn's kernels: {m['fastnn_threads']} threads",
              f"torch {m['torch'] or 'not installed'} (its default threads); numpy {m['numpy']}"
              + (f" ({m['numpy_blas']})" if m["numpy_blas"] else ""),
              f"how: {m['process']}" + ("" if args.same_process else
                                         "; each implementation is checked against a float64 "
                                         "reference before it is timed")]
    if args.quick:
        lines.append("quick run: fastnn's C++ backend vs torch; the full run adds numpy, "
                     "torch.compile, the numba backend and larger sizes")
    return lines


def _sorted(rows):
    return sorted(rows, key=lambda r: (ORDER.index(r.impl) if r.impl in ORDER else len(ORDER)))


def rows_alone(jobs, store, args, ceilings):
    rows = []
    for k, (_name, (op, mode, shape)) in enumerate(jobs):
        group = []
        for (jid, impl), recs in store.items():
            if jid != k:
                continue
            samples, busy, load, error = procs.quiet_samples(recs)
            group.append(report.make_row(op, mode, shape, args.dtype, impl, recs[0]["unit"],
                                         recs[0]["work"], ceilings[recs[0]["ceiling"]], samples,
                                         error, load, busy))
        report.add_ratios(group, args.ignore_load)
        rows += _sorted(group)
    return rows


def rows_same_process(jobs, args, ceilings, progress):
    """--same-process: every implementation timed in this process, interleaved."""
    fw = impls.load()
    fw.compile = not (args.quick or args.no_compile)
    if args.quick:
        fw.backends, fw.cache_rows = [b for b in fw.backends if b == "cpp"], False
    if args.no_output_cache and fw.fastnn is not None:
        impls.disable_output_cache(fw)
    rows = []
    for name, spec in jobs:
        progress.step(f"{spec[0]} {spec[1]} {report.shape_str(spec[2])}")
        case = FAMILIES[name].make_case(spec, args.dtype, fw, seed=args.seed)
        if args.quick:
            case.impls = [i for i in case.impls if i.name != "numpy"]
        timing.check(case)
        before = machine.cpu_snapshot()
        timing.time_case(case, timing.QUICK if args.quick else timing.FULL, tick=progress.redraw)
        load = machine.background_load(before, machine.cpu_snapshot(), machine.core_count())
        busy = load is not None and load > machine.BUSY
        rows += _sorted(report.rows_for(case, ceilings, load, busy, "same process", args.ignore_load))
        progress.finish_step()
        del case
    return rows


def rows_mixed(mixed_jobs, args, ceilings, alone_rows, progress):
    """The mixed-process rows of `mixed_jobs` (cases of this run's alone rows)."""
    out = []
    for name, spec, impl, samples, error, load in mixed.run(mixed_jobs, args, 0.6 if args.quick else 2.0,
                                                      progress):
        op, mode, shape = spec
        family = FAMILIES[name]
        unit, work, ceil = ("GFLOP/s", dense.flops(mode, shape), "gemm") if family is dense else (
            "GB/s", activation.bytes_moved(mode, shape, 4 if args.dtype == "float32" else 8), "bandwidth")
        busy = load is not None and load > machine.BUSY
        row = report.make_row(op, mode, shape, args.dtype, impl, unit, work, ceilings[ceil], samples,
                              error, load, busy, process="after torch")
        alone = next((r for r in alone_rows if (r.op, r.mode, r.shape, r.impl, r.process)
                      == (row.op, row.mode, row.shape, "fastnn[cpp]", "alone") and r.p50), None)
        if alone and row.p50:
            row.vs_alone = alone.p50 / row.p50
            if (busy or alone.busy) and not args.ignore_load:
                row.withheld = "busy"
        out.append(row)
    return out


def footer(rows, described, args, failures, elapsed, load):
    lines = ["", *[described[k] for k in ("gemm", "bandwidth")],
             "times: median (p50) and 20th-80th percentile per call; speed at the median",
             "vs torch: torch's median time / this one's (2.00x: twice as fast as torch); "
             "(busy): timed while other processes used the cores, (noisy): the spread is "
             "too wide for a ratio to mean anything"]
    if any(r.frac_ceiling and r.frac_ceiling > 1 for r in rows):
        lines.append("*: above its ceiling: a Dense row's products beat numpy's matrix product "
                     "(fastnn's own sgemm), an elementwise row's data fits in the CPU caches, or "
                     "(busy rows) the ceiling was measured at a worse moment than the row")
    if any(r.process == "after torch" for r in rows):
        lines.append("fastnn right after torch, same process: each call made right after a torch "
                     "call, while torch's threads still spin; 'x of alone' = alone's median / this "
                     "one's (1.00x: no loss)")
    if args.targets:
        lines += ["", *targets.evaluate(rows, args.ignore_load)]
    if failures:
        lines += ["", f"FAILED ({len(failures)}; wrong result or raised, left out of the timings):"]
        lines += [f"  {f}" for f in failures]
    lines += machine.load_lines(load, "during the run")
    lines.append(f"wall time: {elapsed:.1f} s")
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    start = time.perf_counter()
    args = parse_args(argv)
    if args.csv and report.csv_problem(args.csv):
        print(f"error: {report.csv_problem(args.csv)}", file=sys.stderr)
        return 2
    load0 = machine.quiet_wait(3.0 if args.quick else 15.0)
    m = meta(args, load0)
    print("\n".join(header(m, args) + machine.load_lines(load0, "at start")), flush=True)
    jobs = plan(args)
    if not jobs:
        print("error: no case matches --ops/--only", file=sys.stderr)
        return 2
    mixed_jobs = ([] if args.no_mixed or args.same_process
                  else [(n, s) for n, s in mixed.specs(args.quick) if (n, s) in jobs])
    total = (2 + (len(jobs) if args.same_process else procs.steps(jobs, args, args.rounds))
             + len(mixed_jobs))
    progress = timing.Progress(total, enabled=not args.no_progress)
    before = machine.cpu_snapshot()
    try:
        ceilings, described = machine.measure_ceilings(args.quick, args.dtype, progress)
        if args.same_process:
            rows = rows_same_process(jobs, args, ceilings, progress)
        else:
            plan_timing = timing.QUICK if args.quick else timing.FULL
            rows = rows_alone(jobs, procs.run_alone(jobs, args, plan_timing, args.rounds, progress),
                              args, ceilings)
        if mixed_jobs:
            rows += rows_mixed(mixed_jobs, args, ceilings, rows, progress)
    finally:
        progress.close()
    load = machine.background_load(before, machine.cpu_snapshot(), machine.core_count())
    failures = [f"{r.label}, {r.mode}, {r.impl}: {r.error}" for r in rows if r.error]
    print()
    print(report.format_table(rows))
    print("\n".join(footer(rows, described, args, failures, time.perf_counter() - start, load)),
          flush=True)
    m["load_during_run"] = load
    if args.json:
        report.to_json(args.json, m, ceilings, described, rows)
        print(f"wrote {args.json}")
    if args.csv:
        context = {"cpu": f"{m['cpu']} ({m['cores']} cores)", "commit": m["commit"],
                   "date": m["date"], "fastnn": m["fastnn"]}
        n = report.append_csv(args.csv, rows, context)
        print(f"appended {n} rows to {args.csv}")
    if args.plot:
        title = f"fastnn.bench {args.dtype}, {m['cpu']} ({m['cores']} cores), {m['commit']}"
        n = plot.draw([r for r in rows if r.process != "after torch"], args.plot, title)
        print(f"plotted {n} panels to {args.plot}")
    return 1 if failures else 0


def compare_main(argv):
    p = argparse.ArgumentParser(prog="python -m fastnn.bench compare",
                                description="Compare two runs saved with --json.")
    p.add_argument("a", metavar="A.json")
    p.add_argument("b", metavar="B.json")
    args = p.parse_args(argv)
    try:
        print("\n".join(compare.compare(args.a, args.b)))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
