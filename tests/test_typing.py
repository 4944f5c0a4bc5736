"""fastnn is a typed package: py.typed ships, and fastnn/_C.pyi (the stub of the pybind11
module, csrc/bindings.cpp) names exactly the module's functions with their arity. mypy
itself runs in CI (.ci/run: python -m mypy fastnn)."""
import ast
import inspect
import os
import re

import pytest

import fastnn

PKG = os.path.dirname(fastnn.__file__)


def _stub():
    with open(os.path.join(PKG, "_C.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    attrs = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    return funcs, attrs


def _cpp():
    from fastnn._backends import cpp
    if cpp._C is None:
        pytest.skip(f"the C++ extension is not built: {cpp.unavailable()}")
    return cpp._C


def test_py_typed_ships():
    assert os.path.isfile(os.path.join(PKG, "py.typed"))


def test_stub_names_what_the_module_has():
    C = _cpp()
    funcs, attrs = _stub()
    public = {n for n in dir(C) if not n.startswith("__")}
    assert set(funcs) | attrs == public, (
        f"fastnn/_C.pyi is out of date: missing {sorted(public - set(funcs) - attrs)}, "
        f"extra {sorted(set(funcs) | attrs - public)}")


def test_stub_arity_matches_the_bindings():
    """pybind11's docstring signature, e.g. 'act_forward(arg0: ..., arg1: ...) -> None',
    has as many parameters as the stub."""
    C = _cpp()
    funcs, _ = _stub()
    for name, node in funcs.items():
        doc = getattr(C, name).__doc__ or ""
        m = re.match(rf"{name}\((.*?)\) ->", doc.strip())
        assert m, f"{name}: no pybind11 signature in {doc!r}"
        bound = [p for p in re.split(r",\s*(?![^\[]*\])", m.group(1)) if p.strip()]
        assert len(bound) == len(node.args.args), f"{name}: stub has {len(node.args.args)} parameters, bound {len(bound)}"


def test_public_api_is_annotated():
    """Every public function of fastnn has annotations on its parameters and return."""
    missing = []
    for name in fastnn.__all__:
        obj = getattr(fastnn, name)
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            if sig.return_annotation is inspect.Signature.empty or any(
                    p.annotation is inspect.Parameter.empty for p in sig.parameters.values()):
                missing.append(name)
    assert not missing, f"public functions without full annotations: {missing}"
