"""Results of fastnn.bench: one Row per (case, implementation), the table, CSV and JSON.

CSV columns (appended to one file; the header is written when the file is new):
  op, implementation, mode, shape, dtype, p20, p50, p80, ceiling, cpu, commit, date,
  unit, rate, frac_ceiling, vs_torch, fastnn, background
p20/p50/p80 are milliseconds per call; ceiling is the measured ceiling in `unit`
(GFLOP/s or GB/s, see machine.py); rate is the throughput at p50 in `unit`;
frac_ceiling = rate / ceiling; vs_torch = torch p50 / this p50 (> 1: faster than
torch; empty without torch, or where the ratio is withheld: busy or noisy, see below);
shape is "x"-joined (dense: BxIxO); date is UTC; background is the share of the cores
other processes used while the row was timed.

A ratio is withheld (the table says why) where either side is
- busy: timed only while other processes used more than machine.BUSY of the cores, or
- noisy: its p20-p80 spread is wider than NOISY times its median (a tiny call whose
  samples bunch at the scheduler's time slices: a ratio of such medians can be 1000x).
"""

import csv
import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Optional

from .timing import percentiles

CSV_COLUMNS = ["op", "implementation", "mode", "shape", "dtype", "p20", "p50", "p80",
               "ceiling", "cpu", "commit", "date",
               "unit", "rate", "frac_ceiling", "vs_torch", "fastnn", "background"]
NOISY = 0.5


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
    label: str = ""               # the case in plain words
    process: str = "alone"        # "alone", "same process" (--same-process) or "after torch"
    busy: bool = False
    load: Optional[float] = None  # other processes' share of the cores while timed
    samples: int = 0
    withheld: str = ""            # why vs_torch is not shown: "busy", "noisy" or ""
    vs_alone: Optional[float] = None  # "after torch" rows: alone p50 / this p50


def shape_str(shape):
    return "x".join(str(d) for d in shape)


def _count(n):
    """16777216 -> '16M', 32768 -> '32K' (powers of two in binary units)."""
    for unit, size in (("M", 2 ** 20), ("K", 2 ** 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n:,}"


def label(op, shape):
    """The case in plain words: "Dense+relu, batch 256, 1024 -> 1024 features"."""
    dims = tuple(int(d) for d in shape)
    base, _, tail = op.partition(" ")
    if tail and base in ("dense_relu", "mlp_train_step"):  # the 16-bit rows (lowp.py): "<op> [autocast] <dtype>"
        return f"{label(base, shape)}, {tail}"
    if op == "dense_relu":
        return f"Dense+relu, batch {dims[0]}, {dims[1]} -> {dims[2]} features"
    if op == "dense_cross_entropy":
        return f"Dense+cross-entropy fused, batch {dims[0]}, {dims[1]} -> {dims[2]} classes"
    if op == "mlp_train_step":
        return f"MLP training step {'-'.join(map(str, dims[1:]))}, batch {dims[0]}"
    if op in ("softmax", "log_softmax", "cross_entropy"):
        return f"{op.replace('_', '-')}, {dims[0]} rows x {dims[1]} classes"
    if op.endswith(" threads"):
        return f"{op.split()[0]}, {_count(dims[0])} elements, 1 vs 2 threads"
    name = {"mse": "mean squared error", "bce_with_logits": "binary cross-entropy (logits)"}.get(op, op)
    return f"{name}, {_count(math.prod(dims))} elements"


def make_row(op, mode, shape, dtype, impl, unit, work, ceiling, samples, error=None,
             load=None, busy=False, process="alone"):
    """A Row from the samples (seconds per call) of one implementation."""
    shape_s = shape if isinstance(shape, str) else shape_str(shape)
    row = Row(op, mode, shape_s, dtype, impl, unit, ceiling, error=error,
              label=label(op, shape_s.split("x")), process=process, busy=busy, load=load,
              samples=len(samples))
    if error is None and samples:
        row.p20, row.p50, row.p80 = percentiles(samples)
        row.rate = work / row.p50 / 1e9
        row.frac_ceiling = row.rate / ceiling
    return row


def noisy(row):
    return row.p50 is not None and (row.p80 - row.p20) > NOISY * row.p50


def add_ratios(rows, ignore_load=False):
    """Set vs_torch (and withheld) on every row of one (op, mode, shape) group."""
    torch = next((r for r in rows if r.impl == "torch" and r.p50), None)
    for row in rows:
        row.withheld = ""
        if torch is None or not row.p50:
            continue
        row.vs_torch = torch.p50 / row.p50
        if row is torch:
            continue
        if (row.busy or torch.busy) and not ignore_load:
            row.withheld = "busy"
        elif noisy(row) or noisy(torch):
            row.withheld = "noisy"


def rows_for(case, ceilings, load=None, busy=False, process="alone", ignore_load=False):
    """One Row per impl of a case timed in this process, torch's p50 as the ratio's base."""
    rows = [make_row(case.op, case.mode, case.shape, case.dtype, impl.name, case.unit,
                     case.work, ceilings[case.ceiling], impl.samples, impl.error, load, busy,
                     process) for impl in case.impls]
    add_ratios(rows, ignore_load)
    return rows


def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


DISPLAY = {"fastnn[cpp]": "fastnn", "fastnn[numba]": "fastnn (numba backend)",
           "fastnn[cpp] no cache": "fastnn, output cache off",
           "fastnn[cpp] 1 thread": "fastnn, 1 thread", "fastnn[cpp] 2 threads": "fastnn, 2 threads",
           "fastnn[cpp] after torch": "fastnn right after torch, same process"}


def display(impl):
    return DISPLAY.get(impl, impl)


def _ratio_cell(row):
    if row.vs_torch is None:
        return "-"
    if row.impl == "torch":
        return ""
    if row.withheld:
        return f"({row.withheld})"
    return f"{row.vs_torch:.2f}x"


def _table_cells(row):
    if row.error is not None:
        return [display(row.impl), "FAILED", "", "", "", ""]
    pct = ""
    if row.frac_ceiling:
        pct = f"{100 * row.frac_ceiling:.0f}%" + ("*" if row.frac_ceiling > 1 else "")
    ratio = _ratio_cell(row)
    if row.vs_alone is not None:
        ratio = f"({row.withheld})" if row.withheld else f"{row.vs_alone:.2f}x of alone"
    return [display(row.impl),
            _fmt(row.p50 and row.p50 * 1e3, ".3f"),
            f"{row.p20 * 1e3:.3f}-{row.p80 * 1e3:.3f}" if row.p50 else "-",
            f"{row.rate:.1f} {row.unit}" if row.rate else "-", ratio, pct]


HEADINGS = ["implementation", "median ms", "p20-p80 ms", "speed", "vs torch", "of ceiling"]
RIGHT = {1, 2, 3, 4, 5}  # numeric columns, right-aligned


def format_table(rows):
    """An aligned text table; each (op, mode, shape) group under its plain-words title."""
    cells = [_table_cells(r) for r in rows]
    widths = [max(len(c[k]) for c in cells + [HEADINGS]) for k in range(len(HEADINGS))]

    def line(values):
        return "  ".join(v.rjust(w) if k in RIGHT else v.ljust(w)
                         for k, (v, w) in enumerate(zip(values, widths))).rstrip()

    out = ["  " + line(HEADINGS)]
    previous = None
    for row, values in zip(rows, cells):
        group = (row.op, row.mode, row.shape)
        if group != previous:
            out += ["", f"{row.label}, {row.mode}" + (f" [{row.dtype}]" if row.dtype != "float32" else "")]
        out.append("  " + line(values))
        previous = group
    return "\n".join(out)


def to_json(path, meta, ceilings, described, rows):
    """Write the run as JSON: {"meta", "ceilings", "ceiling_notes", "rows"} (times in
    seconds); `python -m fastnn.bench compare` reads it."""
    with open(path, "w") as f:
        json.dump({"format": "fastnn.bench/1", "meta": meta, "ceilings": ceilings,
                   "ceiling_notes": described, "rows": [asdict(r) for r in rows]}, f, indent=1)


def from_json(path):
    """(meta, ceilings, rows) of a file to_json wrote; ValueError if it is not one."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("format") != "fastnn.bench/1":
        raise ValueError(f"{path}: not a fastnn.bench --json file")
    fields = set(Row.__dataclass_fields__)
    return data["meta"], data["ceilings"], [Row(**{k: v for k, v in r.items() if k in fields})
                                             for r in data["rows"]]


def _csv_record(row, context):
    ms = lambda s: "" if s is None else f"{s * 1e3:.6g}"  # noqa: E731
    num = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
    return {"op": row.op, "implementation": row.impl, "mode": row.mode,
            "shape": row.shape, "dtype": row.dtype,
            "p20": ms(row.p20), "p50": ms(row.p50), "p80": ms(row.p80),
            "ceiling": num(row.ceiling), "cpu": context["cpu"],
            "commit": context["commit"], "date": context["date"],
            "unit": row.unit, "rate": num(row.rate),
            "frac_ceiling": num(row.frac_ceiling),
            "vs_torch": "" if row.withheld else num(row.vs_torch),
            "fastnn": context["fastnn"],
            "background": "" if row.load is None else f"{row.load:.3f}"}


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
