"""Each library alone in its own process, alternated: how a user compares them.

A user who times fastnn against torch runs each in its own program. Timing both in one
process measures something else: torch's OpenMP workers and another OpenBLAS pool spin
after their last call and take the cores from whoever runs next (that situation is
measured on purpose, separately: mixed.py). So the benchmark starts one worker process
per group of implementations (impls.GROUPS: fastnn's numpy API without torch imported,
torch without fastnn, fastnn.torch, numpy), each timing every case of its group, and
alternates the groups for `rounds` rounds (fastnn, torch, ..., fastnn, torch, ...), so
that a slow drift of the machine falls on all of them alike. The samples of all rounds
make a row's percentiles.

Load: each worker reports other processes' share of the cores while it timed each case.
A case timed while the machine was busy (machine.BUSY) in any round is timed once more
in every group; the busy rounds are then dropped where a quiet one exists, and a row
with no quiet round is marked busy (its ratios are withheld unless --ignore-load).

The worker (`python -m fastnn.bench.worker`) reads one JSON request on stdin and prints
one JSON line, prefixed with MARK, on stdout; anything else it prints is passed through.
"""

import json
import os
import subprocess
import sys
import tempfile

from . import machine

MARK = "FASTNN_BENCH_RESULT "


def groups_of(family_name):
    """The groups that have implementations of a family (saves starting a process that
    would only build inputs)."""
    return {"mlp": ("torch", "fastnn.torch", "numpy"),
            "dense_ce": ("fastnn", "torch"),
            "threads": ("fastnn", "torch")}.get(family_name, ("fastnn", "torch", "numpy"))


def _request(group, jobs, args, timing_plan, check, ref_dir=None):
    return {"group": group, "ref_dir": ref_dir, "dtype": args.dtype, "seed": args.seed, "check": check,
            "compile": not (args.quick or args.no_compile),
            "backends": ["cpp"] if args.quick else None,
            "cache_rows": not args.quick, "no_output_cache": args.no_output_cache,
            "timing": timing_plan.__dict__,
            "jobs": [(name, op, mode, list(shape)) for name, (op, mode, shape) in jobs]}


def run_worker(request):
    """Run one worker process; its result list (one entry per job, None where the group
    has no implementation of it). Raises RuntimeError if the worker fails."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")  # the same fastnn
    proc = subprocess.run([sys.executable, "-m", "fastnn.bench.worker"], input=json.dumps(request),
                          capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])["jobs"]
    raise RuntimeError(f"benchmark worker ({request['group']}) exited with {proc.returncode}:\n"
                       f"{proc.stderr[-2000:]}")


def _merge(store, job_ids, results, round_no):
    """store[(job id, impl name)] = list of {"round", "samples", "load", "error"}."""
    for jid, res in zip(job_ids, results):
        if res is None:
            continue
        for imp in res["impls"]:
            store.setdefault((jid, imp["name"]), []).append(
                {"round": round_no, "samples": imp["samples"], "load": res["load"],
                 "error": imp["error"], "unit": res["unit"], "work": res["work"],
                 "ceiling": res["ceiling"]})


def run_alone(jobs, args, timing_plan, rounds, progress):
    """Time `jobs` [(family name, spec)] with each group in its own processes, `rounds`
    alternations; returns {(job index, impl name): [round records]}."""
    per_round = dict(timing_plan.__dict__)
    per_round["budget_s"] = timing_plan.budget_s / rounds
    per_round["min_rounds"] = max(1, timing_plan.min_rounds // rounds)
    plan = type(timing_plan)(**per_round)
    by_group = {}
    for k, (name, _spec) in enumerate(jobs):
        for g in groups_of(name):
            if g == "numpy" and args.quick:
                continue  # the quick run compares fastnn with torch only
            by_group.setdefault(g, []).append(k)
    store = {}
    with tempfile.TemporaryDirectory(prefix="fastnn_bench_") as ref_dir:
        for r in range(rounds):
            for group, ids in by_group.items():
                progress.step(f"round {r + 1}/{rounds}: {group} alone ({len(ids)} cases)")
                results = run_worker(_request(group, [jobs[k] for k in ids], args, plan,
                                              check=r == 0, ref_dir=ref_dir))
                _merge(store, ids, results, r)
                progress.finish_step()
    busy = sorted({jid for (jid, _), recs in store.items() for rec in recs
                   if rec["load"] is not None and rec["load"] > machine.BUSY})
    # A passing burst hits a few cases: time them again. A machine busy throughout hits
    # most of them, and timing them again would double the run to learn the same thing.
    if busy and not args.ignore_load and len(busy) <= len(jobs) // 2:
        for group, ids in by_group.items():
            again = [k for k in ids if k in busy]
            if again:
                progress.total += 1
                progress.step(f"re-measuring {len(again)} busy case(s): {group} alone")
                _merge(store, again, run_worker(_request(group, [jobs[k] for k in again], args, plan,
                                                         check=False)), rounds)
                progress.finish_step()
    return store


def steps(jobs, args, rounds):
    """Progress steps run_alone takes (not counting re-measurements)."""
    groups = {g for name, _ in jobs for g in groups_of(name) if not (g == "numpy" and args.quick)}
    return rounds * len(groups)


def quiet_samples(records):
    """(samples of the quiet rounds, or of all rounds where none was quiet; busy: bool,
    the highest load among the rounds used; error or None)."""
    errors = [r["error"] for r in records if r["error"]]
    if errors:
        return [], False, None, errors[0]
    quiet = [r for r in records if r["load"] is None or r["load"] <= machine.BUSY]
    used = quiet or records
    loads = [r["load"] for r in used if r["load"] is not None]
    return ([s for r in used for s in r["samples"]], not quiet,
            max(loads) if loads else None, None)
