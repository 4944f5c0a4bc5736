"""The examples in the kernel API's docstrings run and print what they show (the API
reference, docs/reference/fastnn.rst, renders them); the op tables of the reference are
generated from the op table and name every op."""
import doctest
import inspect
import os
import sys

import numpy as np
import pytest

import fastnn
from fastnn import _registry as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUNCS = [n for n in fastnn.__all__ if callable(getattr(fastnn, n)) and not isinstance(getattr(fastnn, n), type)]


@pytest.mark.parametrize("name", FUNCS)
def test_docstring_example_runs(name):
    fn = getattr(fastnn, name)
    doc = fn.__doc__ or ""
    for section in ("Parameters" if inspect.signature(fn).parameters else "Returns", "Examples"):
        assert f"\n    {section}\n    ---" in doc, f"fastnn.{name}: docstring has no {section} section"
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    backend = fastnn.get_backend()
    try:
        for test in finder.find(fn, name, globs={"np": np, "fastnn": fastnn}):
            runner.run(test)
    finally:
        fastnn.set_backend(None)
        assert fastnn.get_backend() == backend
    assert runner.failures == 0, f"fastnn.{name}: {runner.failures} docstring example(s) failed (output above)"


def test_op_tables_name_every_op():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import gen_api_docs
    finally:
        sys.path.pop(0)
    tables = gen_api_docs.op_tables()
    for name in R.ACTIVATIONS + R.LOSSES:
        assert f"| `{name}` |" in tables, f"{name} is missing from the generated op tables"
    for line in tables.splitlines():  # every row has the header's 5 cells (no stray '|')
        if line.startswith("| `"):
            assert line.replace("\\|", "").count("|") == 6, line


def test_torch_functional_docstrings_run():
    """Every fastnn.torch.functional function has a docstring (its own, or the torch-twin
    template of fastnn/torch/_docs.py) whose example runs."""
    F = pytest.importorskip("fastnn.torch.functional")
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for name in F.__all__:
        fn = getattr(F, name)
        assert fn.__doc__, f"fastnn.torch.functional.{name} has no docstring"
        for test in doctest.DocTestFinder(recurse=False).find(fn, name, globs={}):
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) failed (output above)"


@pytest.mark.parametrize("name", ["run", "bound_of", "reference_name"])
def test_parity_docstring_examples_run(name):
    import fastnn.parity as P
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = doctest.DocTestFinder(recurse=False).find(getattr(P, name), name, globs={"fastnn": fastnn})
    assert tests and tests[0].examples, f"fastnn.parity.{name} has no example"
    for test in tests:
        runner.run(test)
    assert runner.failures == 0


def test_torch_module_docstrings_run():
    """fastnn.torch's classes (Linear and the torch.nn twins, fastnn/torch/_docs.py's
    template) have an example, and it runs."""
    T = pytest.importorskip("fastnn.torch")
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for name in T.__all__:
        obj = getattr(T, name)
        if not isinstance(obj, type):
            continue
        tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
        assert any(t.examples for t in tests), f"fastnn.torch.{name} has no example"
        for test in tests:
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) failed (output above)"
