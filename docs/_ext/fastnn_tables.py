"""Sphinx extension: the op tables and the parity bounds, generated at build time.

Before reading the sources it writes docs/_generated/op_tables.md and
docs/_generated/parity_bounds.md from the op table (fastnn/_registry.py) and
fastnn/parity/_bounds.py, through tools/gen_api_docs.py (the one generator of these
tables); docs/ops.md includes them. Nothing here is written by hand, so the tables cannot
drift from the registry.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _write_tables(app):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import gen_api_docs  # noqa: PLC0415

    out = os.path.join(app.srcdir, "_generated")
    os.makedirs(out, exist_ok=True)
    for name, text in (("op_tables.md", gen_api_docs.op_tables()),
                       ("parity_bounds.md", gen_api_docs.parity_bounds())):
        path = os.path.join(out, name)
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if old != text + "\n":  # unchanged files keep their mtime: no needless rebuild
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")


def setup(app):
    app.connect("builder-inited", _write_tables)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
