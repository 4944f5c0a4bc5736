"""Parity of fastnn's kernels on this machine: every op x available backend x dtype,
forward and backward, on fixed hard-case inputs, against a float64 reference (torch
float64 autograd when torch imports, else fastnn's float64 path on the numba backend).

    python -m fastnn.parity                       # default set (< 2 minutes on 2 cores)
    python -m fastnn.parity --full --json out.json
    python -m fastnn.parity --ops gelu,mse --backends cpp --dtypes float32 --no-frameworks

Each row: the max error in ulps of the dtype (fastnn/parity/_cases.py defines it), the
error relative to the output's value scale, the documented bound (BOUNDS) and a verdict.
Exit status 1 when a row breaks its bound (or a kernel raises), else 0. The framework
layer compares each fastnn.torch module with its stock torch twin and fastnn.keras with
stock Keras on each installed Keras backend (one subprocess each); --no-frameworks skips it.

    >>> from fastnn import parity
    >>> rows = parity.run(ops=["relu6"], backends=["cpp"], dtypes=["float32"])
    >>> all(r["verdict"] == "ok" for r in rows)
    True
"""
import argparse
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from .. import _registry as R
from ..testing import PRECISION
from . import _reference
from ._bounds import BOUNDS, OP_BOUNDS, bound_of
from ._cases import cases
from ._report import Progress, summary, write_csv, write_html, write_json
from ._run import run_case

__all__ = ["BOUNDS", "DTYPES", "OP_BOUNDS", "bound_of", "main", "reference_name", "run"]

# The dtypes checked: every PRECISION entry fastnn's kernels take.
DTYPES = tuple(PRECISION)


def reference_name() -> str:
    """The float64 reference the rows are compared with.

    Returns
    -------
    str
        ``"torch <version> float64 autograd"`` where torch imports, else fastnn's own
        float64 Numba path.

    Examples
    --------
    >>> fastnn.parity.reference_name().split()[0] in ("torch", "fastnn")
    True
    """
    return _reference.name()


def _select(all_cases, ops):
    if not ops:
        return all_cases
    names = {R.ACTIVATION_ALIASES.get(o, R.LOSS_ALIASES.get(o, o)) for o in ops}
    known = set(R.ACTIVATIONS) | set(R.LOSSES) | {"dense", "dense_cross_entropy"}
    unknown = names - known
    if unknown:
        raise ValueError(f"--ops: unknown op(s) {', '.join(sorted(unknown))}; expected names from fastnn.ACTIVATIONS, "
                         f"fastnn.LOSSES, 'dense' or 'dense_cross_entropy'")
    return [c for c in all_cases if c.op in names or c.family in names]


def run(ops: Optional[Sequence[str]] = None, backends: Optional[Sequence[str]] = None,
        dtypes: Optional[Sequence[str]] = None, full: bool = False, progress: Any = None) -> List[Dict[str, Any]]:
    """Every selected op, backend and dtype against the float64 reference, one row each.

    Parameters
    ----------
    ops : sequence of str, optional
        Activation and loss names (or aliases), ``"dense"`` (Dense with every activation),
        ``"dense_cross_entropy"``; None: all.
    backends : sequence of str, optional
        Default ``fastnn.available_backends()``.
    dtypes : sequence of str, optional
        Names of ``fastnn.testing.PRECISION``; default ``DTYPES``.
    full : bool
        One variant per parameter and larger shapes (``--full``).
    progress : fastnn.parity._report.Progress, optional
        Progress display.

    Returns
    -------
    list of dict
        One row per (case, backend, dtype, output): the op, shape, error in ulps, its
        bound and the verdict (fastnn/parity/_report.py's COLUMNS).

    Raises
    ------
    ValueError
        An unknown op or dtype, or a backend that is not available here.

    Examples
    --------
    >>> rows = fastnn.parity.run(ops=["relu"], backends=["cpp"], dtypes=["float32"])
    >>> sorted({r["verdict"] for r in rows})
    ['ok']
    """
    from .. import available_backends, backends as known  # noqa: PLC0415
    status = known()
    backends = list(available_backends() if backends is None else backends)
    bad = [f"{b} ({status.get(b, 'unknown backend')})" for b in backends if status.get(b) != "ok"]
    if bad:
        raise ValueError(f"--backends: not available here: {', '.join(bad)}; available: "
                         f"{', '.join(available_backends())}")
    dtypes = list(DTYPES if dtypes is None else dtypes)
    bad = [d for d in dtypes if d not in PRECISION]
    if bad:
        raise ValueError(f"--dtypes: unknown dtype(s) {', '.join(bad)}; expected {', '.join(PRECISION)}")
    selected = _select(cases(full), ops)
    if progress is not None:
        progress.total = max(len(selected), 1)
    rows = []
    for c in selected:
        rows += run_case(c, backends, dtypes)
        if progress is not None:
            progress.step(c.label)
    return rows


def _split(s):
    return None if s is None else [x for x in s.split(",") if x]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fastnn.parity", description=__doc__.splitlines()[0])
    ap.add_argument("--ops", help="comma-separated op names ('dense', 'dense_cross_entropy' included)")
    ap.add_argument("--backends", help="comma-separated backends (default: every available one)")
    ap.add_argument("--dtypes", help=f"comma-separated dtypes (default: {','.join(DTYPES)})")
    ap.add_argument("--full", action="store_true", help="one variant per parameter and larger shapes")
    ap.add_argument("--no-frameworks", action="store_true", help="skip the fastnn.torch / fastnn.keras checks")
    ap.add_argument("--framework-timeout", type=float, default=60.0, help="seconds per Keras backend subprocess")
    ap.add_argument("--json")
    ap.add_argument("--csv")
    ap.add_argument("--html")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    bar = None if args.quiet else Progress(1)
    try:
        rows = run(_split(args.ops), _split(args.backends), _split(args.dtypes), args.full, bar)
    except ValueError as e:
        ap.error(str(e))
    if bar is not None:
        bar.close()
    frameworks = []
    if not args.no_frameworks:
        from ._frameworks import check_frameworks  # noqa: PLC0415
        frameworks = check_frameworks(args.framework_timeout)
    seconds = time.perf_counter() - t0
    text = summary(rows, reference_name(), frameworks, seconds)
    print(text)
    meta = dict(reference=reference_name(), seconds=seconds, frameworks=frameworks)
    if args.json:
        write_json(args.json, rows, meta)
    if args.csv:
        write_csv(args.csv, rows)
    if args.html:
        write_html(args.html, rows, meta, text)
    broken = any(r["verdict"] != "ok" for r in rows) or any(f["verdict"] == "FAIL" for f in frameworks)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
