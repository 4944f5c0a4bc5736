"""Output of the parity run: the progress bar (stderr), the plain summary, and the JSON,
CSV and HTML files. Rows are the dicts of fastnn/parity/_run.py."""
import csv
import html
import json
import sys

COLUMNS = ("family", "op", "params", "option", "shape", "backend", "dtype", "output", "n", "ulps", "rel",
           "bound", "verdict", "worst_index", "worst_got", "worst_ref", "error")


class Progress:
    """A one-line text bar on stderr, redrawn at most once per percent."""

    def __init__(self, total, stream=None, width=30):
        self.total, self.done, self.width, self.last = max(total, 1), 0, width, -1
        self.stream = sys.stderr if stream is None else stream

    def step(self, label=""):
        self.done += 1
        pct = 100 * self.done // self.total
        if pct != self.last:
            self.last = pct
            fill = self.width * self.done // self.total
            self.stream.write(f"\r[{'#' * fill}{'.' * (self.width - fill)}] {pct:3d}% {label[:40]:<40}")
            self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def _fmt(v):
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def describe(row):
    """One line naming a row and its worst element."""
    where = f"{row['op']}[{row['params']}] {row['option']} {row['shape']} {row['backend']} {row['dtype']} {row['output']}"
    if row["error"]:
        return f"{where}: {row['error']}"
    return (f"{where}: {_fmt(row['ulps'])} ulps (bound {_fmt(row['bound'])}), rel {_fmt(row['rel'])}; worst at "
            f"{tuple(row['worst_index'] or ())}: got {row['worst_got']!r}, reference {row['worst_ref']!r}")


def summary(rows, reference, frameworks, seconds):
    """The plain-text summary: reference, counts, the worst row per family and dtype, every
    broken row, the framework checks."""
    broken = [r for r in rows if r["verdict"] != "ok"]
    lines = [f"fastnn.parity: reference {reference}",
             f"{len(rows)} rows, {len(broken)} over their bound or failing, {seconds:.1f} s"]
    worst = {}
    for r in rows:
        if r["ulps"] is None:
            continue
        key = (r["family"], r["dtype"])
        if key not in worst or r["ulps"] > worst[key]["ulps"]:
            worst[key] = r
    lines.append("worst row per family and dtype:")
    lines += [f"  {fam:<20} {dt:<8} {describe(r)}" for (fam, dt), r in sorted(worst.items())]
    if broken:
        lines.append("BROKEN:")
        lines += [f"  {describe(r)}" for r in broken]
    for f in frameworks:
        lines.append(f"framework {f['name']}: {f['verdict']} {f['detail']}")
    lines.append("verdict: " + ("FAIL" if broken or any(f["verdict"] == "FAIL" for f in frameworks) else "ok"))
    return "\n".join(lines)


def write_json(path, rows, meta):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(dict(meta, rows=rows), f, indent=1, default=str)


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in COLUMNS})


def write_html(path, rows, meta, text):
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = []
    for r in rows:
        style = "" if r["verdict"] == "ok" else ' style="background:#fcc"'
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in COLUMNS) + "</tr>")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"<!doctype html><meta charset=utf-8><title>fastnn parity</title>"
                f"<h1>fastnn parity</h1><pre>{html.escape(text)}</pre>"
                f"<table border=1 cellspacing=0><tr>{head}</tr>{''.join(body)}</table>\n")
