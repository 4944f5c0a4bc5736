"""Helpers of the fastnn.keras suite: stock twins and tolerances.

Tolerances (fastnn vs stock Keras on the same inputs and weights):
  float32: rtol 2e-5, atol 2e-6 on O(1) values. The two sides sum the matrix products in
           different orders (OpenBLAS vs oneDNN / Eigen / XLA / ATen) and use different
           exp / erf / tanh code: a few float32 roundoffs (6e-8) per operation, a few
           dozen operations deep.
  float64: the float32 tolerance. Stock Keras is not float64-accurate for a float64
           model on every backend: on torch, fit / predict hand the model float32 batches
           (its data adapter) and a stock float64 Dense is off by 3e-7; on jax, XLA's CPU
           tanh is a float32-accurate approximation even in float64. What float64 adds
           here is the dtype checks; fastnn's float64 accuracy is tested at the kernel
           level (tests/test_dense.py, against float64 references).
  Updates after one optimizer step are compared relative to the largest update of the
  weight (normwise), since an update entry can be small through cancellation.
"""
import keras
import numpy as np

TOL = {"float32": (2e-5, 2e-6), "float64": (2e-5, 2e-6)}


def np_(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def close(got, ref, dtype="float32", what="", scale=1.0):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(np_(got), np_(ref), rtol=rtol * scale, atol=atol * scale, err_msg=what)


def close_updates(after_f, after_s, before, dtype="float32", what=""):
    """The weights after one step agree: each update (after - before) to rtol of the
    largest update of that weight."""
    rtol, atol = TOL[dtype]
    for i, (f, s, b) in enumerate(zip(after_f, after_s, before)):
        uf, us = np.asarray(f, np.float64) - b, np.asarray(s, np.float64) - b
        band = atol + rtol * max(np.max(np.abs(us)), np.max(np.abs(b)) * 1e-2)
        np.testing.assert_allclose(uf, us, rtol=0, atol=band * 10, err_msg=f"{what}: weight #{i} update")


def twin(build, fast_mod, stock_mod):
    """(fastnn model, stock model) from build(mod) with the same initial weights."""
    f = build(fast_mod)
    s = build(stock_mod)
    s.set_weights(f.get_weights())
    return f, s


def one_step(model, x, y, loss, sample_weight=None, lr=0.5, run_eagerly=False):
    """Compile with SGD(lr), one train_on_batch; returns (loss value, weights after)."""
    model.compile(loss=loss, optimizer=keras.optimizers.SGD(lr), run_eagerly=run_eagerly)
    out = model.train_on_batch(x, y, sample_weight=sample_weight)
    return float(np.asarray(out).reshape(-1)[0]), [np.asarray(w) for w in model.get_weights()]


# ---- the compiled bridges' tests (test_jax_ffi.py, test_tf_ops.py) ----------------------

# (name, params) of every activation form the handlers / ops take
BRIDGE_ACTS = [("linear", ()), ("relu", ()), ("gelu", ()), ("gelu", (("approximate", "tanh"),)), ("sigmoid", ()),
               ("tanh", ()), ("silu", ()), ("elu", (("alpha", 0.7),)), ("leaky_relu", (("negative_slope", 0.1),)),
               ("softplus", ()), ("softmax", (("axis", -1),)), ("log_softmax", (("axis", -1),))]
BRIDGE_LOSSES = [("mse", ()), ("mae", ()), ("huber", (("delta", 0.5),)), ("log_cosh", ()), ("hinge", ()),
                 ("squared_hinge", ()), ("bce_with_logits", ()), ("bce", ()), ("kl_div", ()),
                 ("poisson_nll", (("eps", 1e-7), ("full", False), ("log_input", False)))]


def run_probe(code, **env):
    """Run `code` in a fresh Python with `env` added; its CompletedProcess (must succeed)."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def check_fallbacks(probe, disable_env, warning, tmp_path):
    """`probe` prints the route's status() and a Dense result (24.0): with `disable_env`=0
    the route is off; with no compiler it warns once, runs the fallback and leaves no
    half-built library behind."""
    r = run_probe(probe, **{disable_env: "0"})
    assert r.stdout.split("\n")[:2] == [f"disabled by {disable_env}=0", "24.0"], r.stdout
    r = run_probe(probe, CXX="/bin/false", FASTNN_CACHE_DIR=str(tmp_path))
    lines = r.stdout.strip().split("\n")
    assert lines[0].startswith("RuntimeError: compiling") and lines[-1] == "24.0", r.stdout
    assert r.stderr.count(warning) == 1, r.stderr
    assert not list(tmp_path.rglob("*.so"))
