"""Sphinx configuration of fastnn's documentation.

    python -m sphinx -W -b html docs /tmp/fastnn-docs     # warnings are errors (CI: .ci/run)

The API reference is autodoc + napoleon over the public docstrings (numpy style); the
activation, loss and parity-bound tables are generated from the op table
(fastnn/_registry.py) and fastnn/parity/_bounds.py by docs/_ext/fastnn_tables.py. Markdown
pages (contract.md, architecture.md, performance.md) are read by myst-parser.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # document this checkout, not an installed copy
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))
os.environ.setdefault("KERAS_BACKEND", "jax")  # fastnn.keras imports keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import fastnn  # noqa: E402

project = "fastnn"
author = "fastnn contributors"
release = version = fastnn.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "myst_parser",
    "fastnn_tables",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated/*.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"  # annotations in the parameter list, not the signature line
autodoc_mock_imports = ["cupy", "cupyx"]
napoleon_google_docstring = True  # a few wrapper docstrings still use "Args:"
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# Markdown pages link to repository files (../fastnn/_registry.py, ...) that are not pages
suppress_warnings = ["myst.xref_missing"]
nitpicky = False
html_theme = "alabaster"
html_title = f"fastnn {release}"
