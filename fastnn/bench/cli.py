"""`python -m fastnn.bench`: measure the ceilings, then check and time each case."""

import argparse
import sys
import time

from . import activation, dense, dense_ce, impls, loss, machine, report, timing

FAMILIES = ("dense", "activation", "loss", "dense_ce")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m fastnn.bench",
        description="Time fastnn's kernels (each CPU backend) against torch and a "
                    "plain numpy composition: Dense+relu, one activation, one loss.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short timing (well under a minute)")
    p.add_argument("--dtype", choices=sorted(timing.TOLERANCES), default="float32",
                   help="dtype of every float input (default: float32)")
    p.add_argument("--csv", metavar="FILE",
                   help="append one row per (case, implementation) to FILE")
    p.add_argument("--ops", default=",".join(FAMILIES),
                   help=f"comma-separated op families to run (default: all of "
                        f"{','.join(FAMILIES)})")
    p.add_argument("--activation", choices=activation.NAMES, default="gelu",
                   help="the activation of the activation rows (default: gelu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input data")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress indicator on stderr")
    args = p.parse_args(argv)
    args.ops = [f.strip() for f in args.ops.split(",") if f.strip()]
    unknown = sorted(set(args.ops) - set(FAMILIES))
    if unknown or not args.ops:
        p.error(f"--ops {','.join(unknown) or '(empty)'}: expected a comma-separated "
                f"subset of {','.join(FAMILIES)}")
    return args


def plan(args):
    """[(family module, (op, mode, shape))] in run order."""
    jobs = []
    if "dense" in args.ops:
        jobs += [(dense, s) for s in dense.specs(args.quick)]
    if "activation" in args.ops:
        jobs += [(activation, s) for s in activation.specs(args.quick, args.activation)]
    if "loss" in args.ops:
        jobs += [(loss, s) for s in loss.specs(args.quick)]
    if "dense_ce" in args.ops:
        jobs += [(dense_ce, s) for s in dense_ce.specs(args.quick)]
    return jobs


def header(args, fw):
    """Lines printed before the run: what runs, on what, with what."""
    mode = "quick" if args.quick else "full"
    lines = [f"fastnn.bench ({mode}, {args.dtype})",
             f"cpu: {machine.cpu_model()}, {machine.core_count()} cores",
             *impls.versions(fw),
             f"commit: {machine.git_commit()}"]
    if "activation" in args.ops and activation.numpy_note(args.activation):
        lines.append(activation.numpy_note(args.activation))
    return lines + fw.notes


def run_cases(jobs, args, fw, ceilings, progress):
    """Check then time every case; returns (rows, failures)."""
    plan_timing = timing.QUICK if args.quick else timing.FULL
    rows, failures = [], []
    for family, spec in jobs:
        op, mode, shape = spec
        progress.step(f"{op} {mode} {report.shape_str(shape)}")
        case = family.make_case(spec, args.dtype, fw, seed=args.seed)
        timing.check(case)
        timing.time_case(case, plan_timing, tick=progress.redraw)
        rows += report.rows_for(case, ceilings)
        failures += [f"{op} {mode} {report.shape_str(shape)} {i.name}: {i.error}"
                     for i in case.impls if i.error is not None]
        progress.finish_step()
        del case  # free the inputs before the next, maybe larger, case
    return rows, failures


def load_line(background, cores):
    """How busy the machine was with other work while the benchmark ran."""
    if background is None:
        return "background load: unknown (no /proc/stat)"
    line = (f"background load: other processes used {100 * background:.0f}% of the "
            f"{cores} cores during the run")
    if background > 0.1:
        line += " -- timings are noisy, rerun on a quiet machine"
    return line


def footer(ceilings, described, failures, elapsed):
    lines = ["", "ceilings: " + "; ".join(
        f"{described[k]}: {v:.1f} {'GFLOP/s' if k == 'gemm' else 'GB/s'}"
        for k, v in ceilings.items()),
        "p50/p20-p80: median and 20th-80th percentile time per call; rate at p50",
        "vs torch: torch p50 / impl p50 (>1 = faster than torch); "
        "%ceiling: rate / ceiling (dense vs gemm, activation and loss vs copy)"]
    if failures:
        lines += ["", f"FAILED ({len(failures)}; wrong result or raised, left out of "
                      f"the timings):"]
        lines += [f"  {f}" for f in failures]
    lines.append(f"wall time: {elapsed:.1f} s")
    return lines


def main(argv=None):
    start = time.perf_counter()
    before = machine.cpu_snapshot()
    args = parse_args(argv)
    if args.csv and report.csv_problem(args.csv):
        print(f"error: {report.csv_problem(args.csv)}", file=sys.stderr)
        return 2
    fw = impls.load()
    print("\n".join(header(args, fw)), flush=True)
    jobs = plan(args)
    progress = timing.Progress(2 + len(jobs), enabled=not args.no_progress)
    try:
        ceilings, described = machine.measure_ceilings(args.quick, args.dtype, progress)
        rows, failures = run_cases(jobs, args, fw, ceilings, progress)
    finally:
        progress.close()
    background = machine.background_load(before, machine.cpu_snapshot(),
                                         machine.core_count())
    print()
    print(report.format_table(rows))
    print("\n".join(footer(ceilings, described, failures,
                           time.perf_counter() - start)))
    print(load_line(background, machine.core_count()), flush=True)
    if args.csv:
        context = {"cpu": f"{machine.cpu_model()} ({machine.core_count()} cores)",
                   "commit": machine.git_commit(), "date": machine.utc_now(),
                   "fastnn": getattr(fw.fastnn, "__version__", ""),
                   "background": "" if background is None else f"{background:.3f}"}
        n = report.append_csv(args.csv, rows, context)
        print(f"appended {n} rows to {args.csv}")
    return 1 if failures else 0
