"""Interleaved timing, correctness checks and the progress bar of fastnn.bench.

A benchmark *case* is one (op, mode, shape) with several *implementations*
(fastnn per backend, torch, numpy). Every implementation is first checked
against a float64 reference, then all of them are timed together: each round
takes one sample of every implementation, in an order rotated by one each
round, so that slow drifts of the machine (turbo, a neighbour's load) fall on
all of them alike rather than on whichever ran last.
"""

import contextlib
import dataclasses
import gc
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

# Tolerances of the correctness check, |got - ref| <= rtol*|ref| + atol_rel*max|ref|,
# against a float64 reference. float32: eps is 1.2e-7 and the reductions here run
# over <= 8192 terms in an order each implementation picks, so an honest result is
# within ~1e-5 relative; 1e-4 leaves margin yet still catches a wrong formula
# (e.g. the tanh approximation of gelu differs from the erf form by ~5e-4).
# float64: same reasoning with eps 2.2e-16.
TOLERANCES = {
    "float32": dict(rtol=1e-4, atol_rel=1e-5),
    "float64": dict(rtol=1e-10, atol_rel=1e-12),
    # 16-bit rows (lowp.py): torch's bf16 / fp16 rtol; outputs rounded once to 8 / 11
    # significant bits, sums of gradients rounded per operand, so an absolute part of the
    # same order, scaled to the largest value
    "bfloat16": dict(rtol=1.6e-2, atol_rel=1.6e-2),
    "float16": dict(rtol=1e-3, atol_rel=1e-3),
}
RUN_DTYPES = ("float32", "float64")  # --dtype: the float dtype of every family's inputs


@dataclass
class Timing:
    """How long to time one case. `budget_s` is wall time for all its impls."""
    min_sample_s: float  # one sample repeats the call until it lasts this long
    samples_per_turn: int  # samples an impl takes in a row, once settled
    min_rounds: int      # a round is one turn of every impl
    max_rounds: int
    budget_s: float
    calibrate_s: float   # time spent finding an impl's best single-call time
    settle_s: float      # most untimed warm-up per turn (beyond its first call)
    heavy_s: float = 0.1  # a case with a call slower than this: see heavier()

    def heavier(self):
        """The plan for a case whose calls take > heavy_s (Dense at 2048x4096x4096:
        ~1.2 s per forward+backward): one sample per turn, three rounds. Such calls
        are long enough that one sample is already a stable average, and the usual
        plan would spend minutes on a single row."""
        return dataclasses.replace(self, samples_per_turn=1,
                                   min_rounds=min(self.min_rounds, 3))


# settle_s: on the 2-vCPU VM this was tuned on, a call right after another library's
# burst ran ~100x slow (8 ms instead of 0.06 ms, a worker thread off its core) for
# up to ~100 ms; a slow spell of that kind also comes now and then unprovoked.
# QUICK's budget is split over the alternated processes (procs.py: 2 rounds, 0.25 s each
# per implementation): the quick run's wall time is mostly these budgets.
QUICK = Timing(min_sample_s=0.002, samples_per_turn=3, min_rounds=3, max_rounds=30,
               budget_s=0.5, calibrate_s=0.05, settle_s=0.15)
FULL = Timing(min_sample_s=0.005, samples_per_turn=3, min_rounds=5, max_rounds=100,
              budget_s=2.5, calibrate_s=0.3, settle_s=0.3)


@dataclass
class Impl:
    """One implementation of a case: `fn()` runs it once and returns its outputs.

    `context` (e.g. `lambda: fastnn.use_backend("cpp")`) is entered around each
    sample, outside the timed region.
    """
    name: str
    fn: Callable[[], object]
    context: Callable[[], object] = contextlib.nullcontext
    error: Optional[str] = None          # set when the check fails or fn raises
    samples: list = field(default_factory=list)
    inner: int = 1                       # calls per sample
    best: float = 0.0                    # fastest single call seen, seconds


@dataclass
class Case:
    """One benchmark row group. `work` is FLOPs or bytes per call, per `unit`."""
    op: str
    mode: str
    shape: tuple
    dtype: str
    unit: str             # "GFLOP/s" or "GB/s"
    work: float
    ceiling: str          # key into the ceilings dict: "gemm" or "bandwidth"
    reference: object     # float64 numpy arrays the outputs must match, or a function
    impls: list           # returning them (computed only when a check runs: a worker
                          # process that only times does not pay for it)

    def expected(self):
        """The reference outputs (computed on first use)."""
        if callable(self.reference):
            self.reference = self.reference()
        return self.reference


def to_numpy(out):
    """numpy array from a numpy array, a torch tensor, or a 0-d scalar."""
    if hasattr(out, "detach"):
        out = out.detach().cpu()
        if str(out.dtype) == "torch.bfloat16":  # numpy has no bfloat16 of torch's: widen (exact)
            out = out.float()
        out = out.numpy()
    return np.asarray(out)


def _mismatch(got, ref, tol):
    """None if `got` matches `ref` within `tol`, else a one-line description."""
    got = to_numpy(got)
    if got.shape != ref.shape:
        return f"shape {got.shape}, expected {ref.shape}"
    got = got.astype(np.float64)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = np.abs(got - ref)
    bound = tol["rtol"] * np.abs(ref) + tol["atol_rel"] * scale
    bad = ~(err <= bound)  # NaN counts as bad
    if not bad.any():
        return None
    worst = np.argmax(np.where(bad, err, -1.0))  # a NaN error is the worst
    i = tuple(int(k) for k in np.unravel_index(worst, ref.shape))
    return (f"{int(bad.sum())} of {ref.size} elements off; worst at {i}: "
            f"got {float(got[i])!r}, expected {float(ref[i])!r}")


def check(case):
    """Run every impl once and compare with `case.reference`; sets `impl.error`."""
    tol = TOLERANCES[case.dtype]
    reference = case.expected()
    for impl in case.impls:
        if impl.error is not None:  # failed while the case was built
            continue
        try:
            with impl.context():
                outs = impl.fn()
        except Exception as exc:  # a benchmark reports, it does not stop
            impl.error = f"raised {type(exc).__name__}: {exc}"
            continue
        outs = outs if isinstance(outs, tuple) else (outs,)
        if len(outs) != len(reference):
            impl.error = f"returned {len(outs)} outputs, expected {len(reference)}"
            continue
        for k, (got, ref) in enumerate(zip(outs, reference)):
            msg = _mismatch(got, ref, tol)
            if msg:
                impl.error = f"output {k} does not match the reference: {msg}"
                break


def _call_seconds(impl):
    t0 = time.perf_counter()
    impl.fn()
    return time.perf_counter() - t0


def _calibrate(impl, timing):
    """Set impl.best (fastest single call) and impl.inner (calls per sample)."""
    with impl.context():
        start, times = time.perf_counter(), []
        while len(times) < 2 or time.perf_counter() - start < timing.calibrate_s:
            times.append(_call_seconds(impl))
    impl.best = min(times)
    impl.inner = max(1, math.ceil(timing.min_sample_s / max(impl.best, 1e-9)))


def _settle(impl, timing):
    """Untimed calls until two in a row run near impl.best (or settle_s has passed).

    Switching libraries has a cost that is not the next library's: torch's OpenMP
    workers and OpenBLAS's threads spin for a while after their last call and take
    cores from whoever runs next, and threads that went to sleep are slow to wake on
    a virtual machine. Each impl is timed in the steady state it would have alone.
    """
    start, fast = time.perf_counter(), 0
    while fast < 2:
        seconds = _call_seconds(impl)
        impl.best = min(impl.best, seconds)
        fast = fast + 1 if seconds <= 1.5 * impl.best + 50e-6 else 0
        if time.perf_counter() - start > timing.settle_s:
            break


def _take_turn(impl, timing):
    """Settle, then append timing.samples_per_turn samples (seconds per call)."""
    fn, inner = impl.fn, impl.inner
    with impl.context():
        _settle(impl, timing)
        for _ in range(timing.samples_per_turn):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            impl.samples.append((time.perf_counter() - t0) / inner)


def _guarded(impl, step, timing):
    """Run step(impl, timing); an exception marks the impl failed. True if it ran."""
    try:
        step(impl, timing)
        return True
    except Exception as exc:  # passed the check, then raised: report it, go on
        impl.error = f"raised {type(exc).__name__} while timed: {exc}"
        impl.samples.clear()
        return False


def time_case(case, timing, tick=None):
    """Fill `impl.samples` (seconds per call) for every impl that passed the check.

    Rounds of turns, every impl once per round, the order rotated each round.
    `tick()` is called after each round (to redraw a progress bar).
    """
    impls = [i for i in case.impls if i.error is None]
    impls = [i for i in impls if _guarded(i, _calibrate, timing)]
    if any(i.best > timing.heavy_s for i in impls):
        timing = timing.heavier()
    start = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(timing.max_rounds):
            if not impls or (r >= timing.min_rounds
                             and time.perf_counter() - start > timing.budget_s):
                break
            order = [impls[(r + k) % len(impls)] for k in range(len(impls))]
            impls = [i for i in order if _guarded(i, _take_turn, timing)]
            if tick:
                tick()
    finally:
        if gc_was_enabled:
            gc.enable()


def percentiles(samples):
    """(p20, p50, p80) of `samples`."""
    return tuple(float(v) for v in np.percentile(samples, [20, 50, 80]))


class Progress:
    """A one-line progress bar on stderr; one plain line per step when not a tty."""

    def __init__(self, total, enabled=True, stream=None, width=24):
        self.total, self.done, self.width = total, 0, width
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.label = ""
        self.start = time.perf_counter()
        # one line narrower than the terminal, so that it never wraps
        self.columns = max(20, min(110, shutil.get_terminal_size().columns - 1))

    def step(self, label):
        """Start the next step, called `label`."""
        self.label = label
        if self.enabled and not self.tty:
            elapsed = time.perf_counter() - self.start
            print(f"[{self.done + 1}/{self.total}] {elapsed:5.1f}s {label}",
                  file=self.stream, flush=True)
        self.redraw()

    def finish_step(self):
        self.done += 1
        self.redraw()

    def redraw(self):
        if not self.tty:
            return
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        line = f"[{bar}] {self.done}/{self.total} {elapsed:5.1f}s  {self.label}"
        self.stream.write("\r" + line[:self.columns].ljust(self.columns))
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\r" + " " * self.columns + "\r")
            self.stream.flush()
        elif self.enabled:
            elapsed = time.perf_counter() - self.start
            print(f"done in {elapsed:.1f}s", file=self.stream, flush=True)
