"""`python -m fastnn.bench`: measure the ceilings, then check and time each case."""

import argparse
import sys
import time

from . import (activation, dense, dense_ce, impls, loss, machine, mlp, plot, report,
               softmax, targets, threads, timing)

# Run order; every family a module with specs(quick) and make_case(spec, dtype, fw).
FAMILIES = {"dense": dense, "activation": activation, "softmax": softmax, "loss": loss,
            "dense_ce": dense_ce, "mlp": mlp, "threads": threads}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m fastnn.bench",
        description="Time fastnn's kernels (each CPU backend) against torch (eager "
                    "and torch.compile) and a plain numpy composition: Dense+relu, "
                    "activations, softmax, losses, the fused Dense+cross-entropy, an "
                    "MLP training step, threads; then check issue 6's targets.")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short timing (well under a minute)")
    p.add_argument("--dtype", choices=sorted(timing.TOLERANCES), default="float32",
                   help="dtype of every float input (default: float32)")
    p.add_argument("--csv", metavar="FILE",
                   help="append one row per (case, implementation) to FILE")
    p.add_argument("--ops", default=",".join(FAMILIES),
                   help=f"comma-separated op families to run (default: all of "
                        f"{','.join(FAMILIES)})")
    p.add_argument("--activations", default=None,
                   help=f"comma-separated activations of the activation rows (default: "
                        f"{','.join(activation.NAMES)}; --quick: "
                        f"{','.join(activation.QUICK_NAMES)})")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw throughput vs size per implementation (needs matplotlib)")
    p.add_argument("--no-compile", action="store_true",
                   help="no torch.compile rows (they are on in the full run, off with "
                        "--quick: compiling takes seconds per case)")
    p.add_argument("--no-output-cache", action="store_true",
                   help="turn fastnn's output buffer cache off for the whole run (by "
                        "default it is on, and extra 'fastnn[cpp] no cache' rows show "
                        "activations, softmax and losses without it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the input data")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress indicator on stderr")
    args = p.parse_args(argv)
    args.ops = [f.strip() for f in args.ops.split(",") if f.strip()]
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
    if args.plot and plot.missing():
        p.error(plot.missing())
    return args


def plan(args):
    """[(family module, (op, mode, shape))] in run order."""
    jobs = []
    for name, family in FAMILIES.items():
        if name not in args.ops:
            continue
        specs = (family.specs(args.quick, args.activations) if family is activation
                 else family.specs(args.quick))
        jobs += [(family, s) for s in specs]
    return jobs


def header(args, fw):
    """Lines printed before the run: what runs, on what, with what."""
    mode = "quick" if args.quick else "full"
    lines = [f"fastnn.bench ({mode}, {args.dtype})",
             f"cpu: {machine.cpu_model()}, {machine.core_count()} cores",
             *impls.versions(fw),
             f"commit: {machine.git_commit()}"]
    names = args.activations or (activation.QUICK_NAMES if args.quick else activation.NAMES)
    if "activation" in args.ops and activation.numpy_note(names):
        lines.append(activation.numpy_note(names))
    lines.append("torch.compile rows: " + ("on (compile time is not timed)" if fw.compile
                                          else "off" + (" (--quick)" if args.quick else "")))
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


def footer(ceilings, described, failures, elapsed, rows):
    lines = ["", *targets.evaluate(rows), "", "ceilings: " + "; ".join(
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
    fw.compile = not (args.quick or args.no_compile)
    if args.no_output_cache and fw.fastnn is not None:
        impls.disable_output_cache(fw)
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
                           time.perf_counter() - start, rows)))
    print(load_line(background, machine.core_count()), flush=True)
    if args.csv:
        context = {"cpu": f"{machine.cpu_model()} ({machine.core_count()} cores)",
                   "commit": machine.git_commit(), "date": machine.utc_now(),
                   "fastnn": getattr(fw.fastnn, "__version__", ""),
                   "background": "" if background is None else f"{background:.3f}"}
        n = report.append_csv(args.csv, rows, context)
        print(f"appended {n} rows to {args.csv}")
    if args.plot:
        title = (f"fastnn.bench {args.dtype}, {machine.cpu_model()} "
                 f"({machine.core_count()} cores), {machine.git_commit()}")
        n = plot.draw(rows, args.plot, title)
        print(f"plotted {n} panels to {args.plot}")
    return 1 if failures else 0
