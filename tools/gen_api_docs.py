"""The tables of fastnn's API reference, generated from the code: the activation and loss
tables from the op table (fastnn/_registry.py), the parity bounds from
fastnn/parity/_bounds.py, as Markdown.

The Sphinx build (docs/_ext/fastnn_tables.py) calls op_tables() and parity_bounds() and
includes the result in docs/ops.md; nothing else restates these tables. By hand:

    python tools/gen_api_docs.py            # print both tables
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # this checkout's fastnn


def _cell(text):
    """Text for one Markdown table cell: a '|' (|x| in a formula) would end the cell."""
    return str(text).replace("|", "\\|")


# ---- the op table ----------------------------------------------------------------------

def _params(params):
    if not params:
        return ""
    return ", ".join(f"`{k}={v!r}`" for k, v in params.items())


def _docs_by_name(R, attr):
    """Per-op formula text where the op table carries one (entries with .name and .doc)."""
    return {e.name: e.doc for e in getattr(R, attr, ()) if getattr(e, "doc", "")}


def _reads(name, R):
    """What the backward reads with default parameters: the public saved_for_backward
    where it can be imported, else the op table's FROM_Y."""
    try:
        from fastnn import saved_for_backward
        return " and ".join(sorted(saved_for_backward(name)))
    except ImportError:
        return "y" if name in R.FROM_Y else "x"


def _aliases(table, name):
    return ", ".join(f"`{a}`" for a, target in sorted(table.items()) if target == name)


def op_tables():
    from fastnn import _registry as R

    act_docs = _docs_by_name(R, "OPS_ACTIVATIONS")
    loss_docs = _docs_by_name(R, "OPS_LOSSES")
    reads = {name: _reads(name, R) for name in R.ACTIVATIONS}
    rows = ["## Activations", "",
            "`fastnn.ACTIVATIONS`, in code order (an activation's code is its index). "
            "\"backward reads\": what `activation_backward` / `dense_backward` need with "
            "the default parameters (`fastnn.saved_for_backward(name, **params)` says it "
            "per call).", "",
            "| activation | aliases | parameters (defaults) | backward reads | formula |",
            "|---|---|---|---|---|"]
    for name in R.ACTIVATIONS:
        rows.append(f"| `{name}` | {_aliases(R.ACTIVATION_ALIASES, name)} | "
                    f"{_params(R.ACTIVATION_PARAMS.get(name))} | {reads[name]} | {_cell(act_docs.get(name, ''))} |")
    target_grad = getattr(R, "TARGET_GRAD_LOSSES", frozenset())
    rows += ["", "## Losses", "",
             "`fastnn.LOSSES`, in code order. Reductions: "
             + ", ".join(f"`{r}`" for r in R.REDUCTIONS)
             + " (`batchmean`: kl_div only). \"target grad\": `loss_backward(..., "
             "need_target_grad=True)` also returns d(loss)/d(target).", "",
             "| loss | aliases | parameters (defaults) | target grad | formula |",
             "|---|---|---|---|---|"]
    for name in R.LOSSES:
        tg = "yes" if name in target_grad else ""
        rows.append(f"| `{name}` | {_aliases(R.LOSS_ALIASES, name)} | "
                    f"{_params(R.LOSS_PARAMS.get(name))} | {tg} | {_cell(loss_docs.get(name, ''))} |")
    return "\n".join(rows)


def parity_bounds():
    """The bounds `python -m fastnn.parity` checks (fastnn/parity/_bounds.py), as a table."""
    from fastnn.parity import _bounds as B

    dtypes = sorted({d for _, d in B.BOUNDS})
    fams = sorted({f for f, _ in B.BOUNDS})
    rows = ["## Parity bounds", "",
            "The documented error bounds of `python -m fastnn.parity`, in ulps of the dtype: per element "
            "|got - ref| / (eps * (|ref| + s)), s the magnitude of what rounds into the element "
            "(fastnn/parity/_cases.py). " + " ".join(B.__doc__.split("\n\n")[1].split()), "",
            "| family | " + " | ".join(dtypes) + " |", "|---|" + "---|" * len(dtypes)]
    rows += [f"| {f} | " + " | ".join(f"{B.BOUNDS[(f, d)]:g}" for d in dtypes) + " |" for f in fams]
    if B.OP_BOUNDS:
        rows += ["", "Per-op overrides: " + ", ".join(f"`{o}` {d}: {v:g}" for (o, d), v in sorted(B.OP_BOUNDS.items()))]
    return "\n".join(rows)


def main():
    print(op_tables())
    print()
    print(parity_bounds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
