"""`python -m fastnn.bench compare A.json B.json`: two runs' rows side by side.

Rows are matched by (op, mode, shape, dtype, implementation, process). For each pair:
both medians and "B vs A" = A's median / B's median (> 1: B is faster). A change is
called "within noise" when the two p20-p80 ranges overlap, since a difference smaller
than the spread of either run is not a measured change. What differs between the runs'
machines or builds (CPU, ISA level, code paths, commit, load) is printed first: a
comparison across machines compares machines.
"""

from . import report

META_KEYS = ("cpu", "cores", "isa", "paths", "commit", "fastnn", "torch", "numpy", "mode", "dtype",
             "load_at_start")


def _key(r):
    return (r.op, r.mode, r.shape, r.dtype, r.impl, r.process)


def verdict(a, b):
    """"faster", "slower" or "within noise" of row b against row a."""
    if a.p80 >= b.p20 and b.p80 >= a.p20:
        return "within noise"
    return "faster" if b.p50 < a.p50 else "slower"


def compare(path_a, path_b):
    """The lines of the comparison."""
    meta_a, _, rows_a = report.from_json(path_a)
    meta_b, _, rows_b = report.from_json(path_b)
    lines = [f"A: {path_a}", f"B: {path_b}"]
    for k in META_KEYS:
        if meta_a.get(k) != meta_b.get(k):
            lines.append(f"  {k} differs: A {meta_a.get(k)!r}, B {meta_b.get(k)!r}")
    by_key = {_key(r): r for r in rows_a if r.p50}
    pairs = [(by_key[_key(b)], b) for b in rows_b if b.p50 and _key(b) in by_key]
    lines.append("")
    if not pairs:
        lines.append("no rows in common (different --ops, --quick or dtype?)")
        return lines
    cells = [["case", "implementation", "A median ms", "B median ms", "B vs A", ""]]
    for a, b in pairs:
        note = verdict(a, b) + (" (busy)" if a.busy or b.busy else "")
        cells.append([f"{b.label}, {b.mode}", report.display(b.impl) + ("" if b.process == "alone"
                                                                          else f" ({b.process})"),
                      f"{a.p50 * 1e3:.3f}", f"{b.p50 * 1e3:.3f}", f"{a.p50 / b.p50:.2f}x", note])
    widths = [max(len(c[k]) for c in cells) for k in range(len(cells[0]))]
    for c in cells:
        lines.append("  ".join(v.rjust(w) if 2 <= k <= 4 else v.ljust(w)
                               for k, (v, w) in enumerate(zip(c, widths))).rstrip())
    only_a = len({_key(r) for r in rows_a if r.p50} - {_key(b) for _, b in pairs})
    only_b = sum(1 for b in rows_b if b.p50) - len(pairs)
    if only_a or only_b:
        lines.append(f"({only_a} row(s) only in A, {only_b} only in B)")
    lines.append("B vs A: A's median time / B's median time (> 1: B is faster); within noise: "
                 "the p20-p80 ranges overlap")
    return lines
