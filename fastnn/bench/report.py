"""Results of fastnn.bench: one Row per (case, impl), an aligned table, CSV rows.

CSV columns (appended to one file; the header is written when the file is new):
  op, implementation, mode, shape, dtype, p20, p50, p80, ceiling, cpu, commit, date,
  unit, rate, frac_ceiling, vs_torch, fastnn, background
p20/p50/p80 are milliseconds per call; ceiling is the measured ceiling in `unit`
(GFLOP/s or GB/s, see machine.py); rate is the throughput at p50 in `unit`;
frac_ceiling = rate / ceiling; vs_torch = torch p50 / this p50 (> 1: faster than
torch, empty without torch); shape is "x"-joined (dense: BxIxO); date is UTC;
background is the share of the cores other processes used during the run (a row
taken with background > 0.1 is noisy).
"""

import csv
import os
from dataclasses import dataclass
from typing import Optional

from .timing import percentiles

CSV_COLUMNS = ["op", "implementation", "mode", "shape", "dtype", "p20", "p50", "p80",
               "ceiling", "cpu", "commit", "date",
               "unit", "rate", "frac_ceiling", "vs_torch", "fastnn", "background"]


@dataclass
class Row:
    op: str
    mode: str
    shape: str
    dtype: str
    impl: str
    unit: str
    ceiling: float
    p20: Optional[float] = None   # seconds
    p50: Optional[float] = None
    p80: Optional[float] = None
    rate: Optional[float] = None
    frac_ceiling: Optional[float] = None
    vs_torch: Optional[float] = None
    error: Optional[str] = None


def shape_str(shape):
    return "x".join(str(d) for d in shape)


def rows_for(case, ceilings):
    """One Row per impl of a timed case, torch's p50 as the ratio's base."""
    ceiling = ceilings[case.ceiling]
    rows = []
    for impl in case.impls:
        row = Row(case.op, case.mode, shape_str(case.shape), case.dtype, impl.name,
                  case.unit, ceiling, error=impl.error)
        if impl.error is None and impl.samples:
            row.p20, row.p50, row.p80 = percentiles(impl.samples)
            row.rate = case.work / row.p50 / 1e9
            row.frac_ceiling = row.rate / ceiling
        rows.append(row)
    torch_p50 = next((r.p50 for r in rows if r.impl == "torch" and r.p50), None)
    for row in rows:
        if torch_p50 and row.p50:
            row.vs_torch = torch_p50 / row.p50
    return rows


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def _table_cells(row):
    if row.error is not None:
        return [row.op, row.mode, row.shape, row.impl, "FAILED", "", "", "", ""]
    return [row.op, row.mode, row.shape, row.impl,
            _fmt(row.p50 and row.p50 * 1e3, ".3f"),
            f"{row.p20 * 1e3:.3f}-{row.p80 * 1e3:.3f}" if row.p50 else "-",
            f"{row.rate:.1f} {row.unit}" if row.rate else "-",
            _fmt(row.vs_torch, ".2f") + ("x" if row.vs_torch else ""),
            _fmt(row.frac_ceiling and 100 * row.frac_ceiling, ".0f")
            + ("%" if row.frac_ceiling else "")]


HEADINGS = ["op", "mode", "shape", "impl", "p50 ms", "p20-p80 ms", "rate",
            "vs torch", "%ceiling"]
RIGHT = {4, 5, 6, 7, 8}  # numeric columns, right-aligned


def format_table(rows):
    """An aligned text table, a blank line between (op, mode, shape) groups."""
    cells = [_table_cells(r) for r in rows]
    widths = [max(len(c[k]) for c in cells + [HEADINGS]) for k in range(len(HEADINGS))]

    def line(values):
        return "  ".join(v.rjust(w) if k in RIGHT else v.ljust(w)
                         for k, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = [line(HEADINGS), line(["-" * w for w in widths])]
    previous = None
    for row, values in zip(rows, cells):
        group = (row.op, row.mode, row.shape)
        if previous is not None and group != previous:
            out.append("")
        out.append(line(values))
        previous = group
    return "\n".join(out)


def _csv_record(row, context):
    ms = lambda s: "" if s is None else f"{s * 1e3:.6g}"  # noqa: E731
    num = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    return {"op": row.op, "implementation": row.impl, "mode": row.mode,
            "shape": row.shape, "dtype": row.dtype,
            "p20": ms(row.p20), "p50": ms(row.p50), "p80": ms(row.p80),
            "ceiling": num(row.ceiling), "cpu": context["cpu"],
            "commit": context["commit"], "date": context["date"],
            "unit": row.unit, "rate": num(row.rate),
            "frac_ceiling": num(row.frac_ceiling), "vs_torch": num(row.vs_torch),
            "fastnn": context["fastnn"], "background": context["background"]}


def _is_new(path):
    return not os.path.exists(path) or os.path.getsize(path) == 0


def csv_problem(path):
    """Why rows cannot be appended to `path` (checked before timing), or None."""
    if os.path.isdir(path):
        return f"--csv {path}: is a directory"
    if _is_new(path):
        return None
    with open(path, newline="") as f:
        existing = next(csv.reader(f), [])
    if existing != CSV_COLUMNS:
        return (f"--csv {path}: its header {','.join(existing)} is not "
                f"{','.join(CSV_COLUMNS)}; append to a new file instead")
    return None


def append_csv(path, rows, context):
    """Append the timed rows to `path` (header first if the file is new or empty).

    `context` holds the per-run columns: cpu, commit, date, fastnn (version),
    background.
    Rows whose check failed are not written: a CSV row is a measurement.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = _is_new(path)
    written = 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if new:
            writer.writeheader()
        for row in rows:
            if row.p50 is not None:
                writer.writerow(_csv_record(row, context))
                written += 1
    return written
