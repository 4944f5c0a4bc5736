"""The op table (fastnn/_registry.py) and everything that must agree with it: the generated
csrc/include/fastnn/op_table.h (committed; setup.py regenerates it), the formulas of
scalar_math.h, the C++ / CUDA sources that dispatch over the generated lists, the CUDA
program, the Numba backend's literal codes and the validation layer's specs."""
import importlib.util
import math
import os
import re
import shutil
import subprocess

import pytest

import fastnn
from fastnn import _checks as C
from fastnn import _registry as R

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")


def _read(*rel):
    with open(os.path.join(ROOT, *rel), encoding="utf-8") as f:
        return f.read()


def _gen():
    spec = importlib.util.spec_from_file_location("gen_op_table", os.path.join(ROOT, "tools", "gen_op_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- the table itself --------------------------------------------------------------------------

def test_codes_and_derived_names():
    assert R.ACTIVATIONS == R.ELEMENTWISE_ACTIVATIONS + R.ROW_ACTIVATION_NAMES
    assert R.ROW_ACTIVATION_NAMES == ("softmax", "log_softmax")  # rows last (contract)
    assert R.LOSSES == R.ELEMENTWISE_LOSSES + R.CLASS_LOSSES
    assert R.LOSSES.index("cross_entropy") == 11 and R.LOSSES.index("nll") == 12
    assert len(set(R.ACTIVATIONS)) == len(R.ACTIVATIONS) and len(set(R.LOSSES)) == len(R.LOSSES)
    names = set(R.ACTIVATIONS) | set(R.LOSSES)
    assert not (set(R.ACTIVATION_ALIASES) | set(R.LOSS_ALIASES)) & names, "an alias shadows a name"
    assert tuple(fastnn.ACTIVATIONS) == R.ACTIVATIONS and tuple(fastnn.LOSSES) == R.LOSSES
    for name in R.REDUCTIONS:
        assert any(name in entry.reductions for entry in R.OPS_LOSSES)


KINDS = {"float": (float,), "float_or_none": (float, type(None)), "int": (int,), "bool": (bool,),
         "choice": (str,), "array_or_none": (type(None),)}


@pytest.mark.parametrize("entry", R.OPS_ACTIVATIONS + R.OPS_LOSSES, ids=lambda e: e.name)
def test_params_are_well_formed(entry):
    fields = dict(R.ACT_FIELDS if isinstance(entry, R.Activation) else R.LOSS_FIELDS)
    for p in entry.params:
        assert isinstance(p.default, KINDS[p.kind]), f"{entry.name}.{p.name}: default {p.default!r} is not {p.kind}"
        assert p.range.ok(p.default), f"{entry.name}.{p.name}: default {p.default!r} {p.range.describe()}"
        assert p.slot is None or p.slot in fields, f"{entry.name}.{p.name}: unknown slot {p.slot}"
        if p.kind == "array_or_none":
            assert p.slot is None
    if isinstance(entry, R.Activation):
        assert entry.backward in ("x", "y", "y_default") and entry.shape in ("elementwise", "row")
    else:
        assert entry.shape in ("elementwise", "class") and set(entry.reductions) <= set(R.REDUCTIONS)


def test_ranges():
    assert R.param_problem("celu", "alpha", 0.0) == "must be nonzero"
    assert R.param_problem("softplus", "beta", 0.0) == "must be nonzero"
    assert R.param_problem("huber", "delta", 0.0) == "must be > 0"
    assert R.param_problem("smooth_l1", "beta", -1e-9) == "must be >= 0"
    assert R.param_problem("smooth_l1", "beta", 0.0) is None
    assert R.param_problem("cross_entropy", "label_smoothing", 1.5) == "must be in [0, 1]"
    assert R.param_problem("gelu", "approximate", "fast") == "must be 'none' or 'tanh'"
    assert R.param_problem("huber", "delta", math.nan) == "must be > 0"
    assert R.param_problem("elu", "alpha", -3.0) is None


ACT_SPEC_CASES = [(n, {}) for n in R.ACTIVATIONS] + [
    ("relu", {"negative_slope": 0.1, "max_value": 6.0, "threshold": 0.5}), ("gelu", {"approximate": "tanh"}),
    ("softplus", {"beta": 2.0, "threshold": math.inf}), ("hard_tanh", {"min_val": -2.0, "max_val": 0.5}),
    ("celu", {"alpha": 2.0}), ("relu", {"max_value": 1.0})]


@pytest.mark.parametrize("name, params", ACT_SPEC_CASES, ids=lambda v: str(v))
def test_act_numeric_matches_the_validation_layer(name, params):
    spec = C.activation_spec("t", name, params)
    assert spec.code == R.ACTIVATIONS.index(name)
    assert R.act_numeric(name, spec.params) == spec.numeric
    assert R.act_from_y(name, spec.params) == spec.from_y


LOSS_SPEC_CASES = [(n, {}) for n in R.LOSSES] + [
    ("huber", {"delta": 0.5}), ("smooth_l1", {"beta": 0.0}), ("kl_div", {"log_target": True}),
    ("poisson_nll", {"log_input": False, "full": True, "eps": 1e-6}),
    ("cross_entropy", {"ignore_index": 3, "label_smoothing": 0.2}), ("nll", {"ignore_index": -1})]


@pytest.mark.parametrize("name, params", LOSS_SPEC_CASES, ids=lambda v: str(v))
def test_loss_numeric_matches_the_validation_layer(name, params):
    spec = C.loss_spec("t", name, params)
    assert spec.code == R.LOSSES.index(name)
    assert R.loss_numeric(name, spec.params) == spec.numeric


# ---- the generated header ----------------------------------------------------------------------

def test_committed_header_is_current():
    assert _read("csrc", "include", "fastnn", "op_table.h") == _gen().render(), \
        "csrc/include/fastnn/op_table.h is stale: run python tools/gen_op_table.py"


def test_header_hash_is_the_registry_hash():
    m = re.search(r"kOpTableHash = 0x([0-9a-f]+)u;", _read("csrc", "include", "fastnn", "op_table.h"))
    assert int(m.group(1), 16) == R.OP_TABLE_HASH


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_header_enums_are_the_registry_codes(tmp_path):
    """Compiled: every enumerator of the header has its registry code, and the counts."""
    lines = ['#include "fastnn/op_table.h"', "using namespace fastnn;"]
    lines += [f"static_assert(int(Act::{n}) == {i});" for i, n in enumerate(R.ACTIVATIONS)]
    lines += [f"static_assert(int(Loss::{n}) == {i});" for i, n in enumerate(R.LOSSES)]
    lines += [f"static_assert(kNumActivations == {len(R.ACTIVATIONS)});",
              f"static_assert(kNumElementwiseLosses == {len(R.ELEMENTWISE_LOSSES)});",
              f"static_assert(kNumLosses == {len(R.LOSSES)});",
              f"static_assert(kOpTableHash == {R.OP_TABLE_HASH}u);"]
    src = tmp_path / "t.cpp"
    src.write_text("\n".join(lines) + "\n")
    r = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-fsyntax-only", "-I" + os.path.join(CSRC, "include"),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---- consumers -----------------------------------------------------------------------------------

def _template_names(text):
    return set(re.findall(r"FASTNN_INLINE_MATH\s+\w+\s+(\w+)\s*\(", text))


def test_scalar_math_has_every_formula():
    text = _read("csrc", "include", "fastnn", "scalar_math.h")
    defined = _template_names(text)
    for n in R.ELEMENTWISE_ACTIVATIONS:
        assert {f"{n}_fwd", f"{n}_bwd"} <= defined, f"scalar_math.h lacks {n}_fwd / {n}_bwd"
    for n in R.Y_BACKWARD_ACTIVATIONS:
        assert f"{n}_bwd_y" in defined, f"scalar_math.h lacks {n}_bwd_y"
    forms = re.findall(r"^FASTNN_LOSS_FORMS\((\w+),", text, re.M)
    assert tuple(forms) == R.ELEMENTWISE_LOSSES, "scalar_math.h's FASTNN_LOSS_FORMS lines are not the table's losses"
    body = re.search(r"struct ActParams \{(.*?)\};", text, re.S).group(1)
    fields = tuple(re.findall(r"^\s*(?:double|int)\s+(\w+);", body, re.M))
    assert fields == tuple(f for f, _ in R.ACT_FIELDS), "ActParams' fields are not ACT_FIELDS in order"


# Files that dispatch on op codes: each reads the generated lists and declares none of its own.
CONSUMERS = {
    "csrc/cpu/kernels.h": ['#include "fastnn/op_table.h"'],
    "csrc/cpu/activation.cpp": ["FASTNN_ELEMENTWISE_ACTIVATIONS(", "FASTNN_Y_BACKWARD_ACTIVATIONS("],
    "csrc/cpu/loss.cpp": ["FASTNN_ELEMENTWISE_LOSSES("],
    "csrc/cuda/scalar_math_check.cu": ["FASTNN_ELEMENTWISE_ACTIVATIONS(", "FASTNN_Y_BACKWARD_ACTIVATIONS(",
                                       "FASTNN_ELEMENTWISE_LOSSES("],
}


def _cuda_text():
    return "\n".join(_read("csrc", "cuda", f) for f in sorted(os.listdir(os.path.join(CSRC, "cuda")))
                     if f.endswith((".cu", ".cuh")) and f != "scalar_math_check.cu")


@pytest.mark.parametrize("path", list(CONSUMERS) + ["csrc/cuda (kernels)"])
def test_consumers_use_the_generated_lists(path):
    if path.startswith("csrc/cuda ("):
        text, needs = _cuda_text(), ["FASTNN_ELEMENTWISE_ACTIVATIONS(", "FASTNN_Y_BACKWARD_ACTIVATIONS(",
                                     "FASTNN_ELEMENTWISE_LOSSES("]
    else:
        text, needs = _read(path), CONSUMERS[path]
    for s in needs:
        assert s in text, f"{path} does not use {s}"
    assert not re.search(r"\benum\s+(class\s+)?(Act|Loss)\b", text), f"{path} declares its own Act / Loss enum"
    # no hand-written list of activations or losses (a run of X(name) entries)
    for names in (R.ELEMENTWISE_ACTIVATIONS, R.ELEMENTWISE_LOSSES):
        run = " ".join(f"X({n})" for n in names[:4])
        assert run not in text, f"{path} lists ops by hand"
    assert "case Loss::mse" not in text and "case A_relu" not in text and "case Act::relu:" not in text


def test_cuda_program_carries_the_table():
    from fastnn._backends import _cuda_src as S
    src = S.source()  # raises when the inlined op_table.h is not this registry's
    assert f"kOpTableHash = 0x{R.OP_TABLE_HASH:08x}u;" in src
    assert "FASTNN_ELEMENTWISE_ACTIVATIONS(X)" in src


def test_numba_codes_are_the_table_codes():
    pytest.importorskip("numba")
    from fastnn._backends import _numba_act as A
    from fastnn._backends import _numba_loss as L
    assert A.NAMES == R.ACTIVATIONS and L.NAMES == R.ELEMENTWISE_LOSSES
    for i, n in enumerate(R.ACTIVATIONS):
        assert getattr(A, n.upper()) == i, f"_numba_act.{n.upper()} is not {i}"
    for i, n in enumerate(R.ELEMENTWISE_LOSSES):
        assert getattr(L, n.upper()) == i, f"_numba_loss.{n.upper()} is not {i}"


def test_reductions_match_the_validation_layer():
    for name in R.LOSSES:
        for r in R.REDUCTIONS:
            try:
                C.reduction_of("t", name, r)
                ok = True
            except ValueError:
                ok = False
            assert ok == (r in R.reductions_of(name)), (name, r)
