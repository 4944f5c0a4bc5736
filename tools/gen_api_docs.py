"""Generate docs/api.md: the contract (tools/api_intro.md), the activation and loss tables
of the op table (fastnn/_registry.py), then the signature and docstring of every public
name of fastnn, fastnn.torch, fastnn.torch.functional, fastnn.keras, fastnn.keras.losses,
fastnn.testing and fastnn.parity, and the parity bounds table (fastnn.parity.BOUNDS).

    python tools/gen_api_docs.py            # (re)write docs/api.md
    python tools/gen_api_docs.py --check    # exit 1 if docs/api.md is not current

Run from anywhere; the package is imported from this checkout. fastnn.torch needs torch,
fastnn.keras needs keras (imported with KERAS_BACKEND=jax unless set). A wrapper whose
framework cannot be imported keeps the section docs/api.md already has, with a note on
stderr, so --check on a machine without keras checks everything else; an import error
inside fastnn itself is raised.
"""
import argparse
import importlib
import inspect
import os
import re
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "api.md")
INTRO = os.path.join(ROOT, "tools", "api_intro.md")

# (module, heading, what it is); each becomes one section between markers
MODULES = (
    ("fastnn", "The kernel API: numpy or cupy arrays in, the same kind out."),
    ("fastnn.torch", "Drop-in torch.nn modules (needs torch)."),
    ("fastnn.torch.functional", "torch.nn.functional's names on fastnn kernels (needs torch)."),
    ("fastnn.keras", "Drop-in Keras 3 layers (needs keras; tensorflow, jax or torch backend)."),
    ("fastnn.keras.losses", "Drop-in keras.losses (needs keras)."),
    ("fastnn.testing", "Helpers for users' parity tests: tolerances in ulps, every backend, hard inputs."),
    ("fastnn.parity", "`python -m fastnn.parity`: every kernel against a float64 reference on this machine."),
)
BEGIN, END = "<!-- begin {} -->", "<!-- end {} -->"


# ---- docstrings to Markdown -----------------------------------------------------------

def _doc_markdown(doc):
    """A docstring as Markdown: text as paragraphs, indented blocks (examples, shape
    lists) fenced as code; reST's '::' becomes ':'."""
    if not doc:
        return "_(no docstring)_"
    out, block = [], []

    def flush():
        if block:
            code = textwrap.dedent("\n".join(block)).strip("\n")
            lang = "python" if ">>>" in code else "text"
            out.extend(["", f"```{lang}", code, "```", ""])
            block.clear()

    for line in doc.splitlines():
        if line.startswith("    ") or (block and not line.strip()):
            block.append(line)
            continue
        flush()
        out.append(re.sub(r"::$", ":", line))
    flush()
    text = "\n".join(out).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text)


def _signature(obj):
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", sig)  # no addresses: the output must be stable


def _entry(modname, name, obj):
    qual = f"{modname}.{name}"
    if inspect.ismodule(obj):
        return f"### `{qual}`\n\nModule: see its section below."
    if inspect.isclass(obj) or callable(obj):
        kind = "class " if inspect.isclass(obj) else ""
        return f"### `{kind}{qual}{_signature(obj)}`\n\n{_doc_markdown(inspect.getdoc(obj))}"
    return f"### `{qual}`\n\n```python\n{qual} = {obj!r}\n```"


def module_section(modname, blurb):
    mod = importlib.import_module(modname)
    names = list(getattr(mod, "__all__", ()))
    parts = [f"## `{modname}`", blurb]
    doc = inspect.getdoc(mod)
    if doc:
        parts.append(_doc_markdown(doc))
    parts.append("Public names: " + ", ".join(f"`{n}`" for n in names) + ".")
    bare = [n for n in names if callable(getattr(mod, n)) and not inspect.getdoc(getattr(mod, n))]
    parts += [_entry(modname, n, getattr(mod, n)) for n in names if n not in bare]
    if bare:
        parts.append("### Without a docstring of their own\n\n"
                     "The same semantics as the framework function of the same name.\n\n"
                     + "\n".join(f"- `{modname}.{n}{_signature(getattr(mod, n))}`" for n in bare))
    return "\n\n".join(parts)


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
                    f"{_params(R.ACTIVATION_PARAMS.get(name))} | {reads[name]} | {act_docs.get(name, '')} |")
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
                    f"{_params(R.LOSS_PARAMS.get(name))} | {tg} | {loss_docs.get(name, '')} |")
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


# ---- assembling ------------------------------------------------------------------------

def _old_section(old, key):
    m = re.search(re.escape(BEGIN.format(key)) + r"\n(.*?)\n" + re.escape(END.format(key)), old or "", re.S)
    return m.group(1) if m else None


def generate(old):
    sys.path.insert(0, ROOT)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with open(INTRO, encoding="utf-8") as f:
        parts = [f.read().rstrip("\n")]
    sections = [("op-table", op_tables), ("parity-bounds", parity_bounds)]
    sections += [(m, lambda m=m, b=b: module_section(m, b)) for m, b in MODULES]
    toc = ["## Contents", "", "- [Activations](#activations)", "- [Losses](#losses)",
           "- [Parity bounds](#parity-bounds)"]
    toc += [f"- [`{m}`](#{m.replace('.', '')})" for m, _ in MODULES]
    parts.append("\n".join(toc))
    for key, make in sections:
        try:
            body = make()
        except ImportError as e:
            if (getattr(e, "name", None) or "").split(".")[0] == "fastnn":
                raise  # fastnn itself is broken: not a missing optional framework
            body = _old_section(old, key)
            print(f"gen_api_docs: {key} not importable ({e}); keeping its section as it is", file=sys.stderr)
            if body is None:
                body = f"## `{key}`\n\n_(not generated: {key} was not importable)_"
        parts.append(f"{BEGIN.format(key)}\n{body}\n{END.format(key)}")
    return "\n\n".join(parts) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is not current")
    args = ap.parse_args()
    old = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else None
    new = generate(old)
    if args.check:
        if new != old:
            print("docs/api.md is stale: run python tools/gen_api_docs.py", file=sys.stderr)
            return 1
        print("docs/api.md is current")
        return 0
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"wrote {os.path.relpath(OUT, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
