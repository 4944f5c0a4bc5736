"""Smoke test of an installed fastnn wheel (.ci/run runs it in a fresh venv with no
compiler on PATH, from outside the checkout).

Checks that the package imported is the installed one, that the C++ backend loads
(the extension and the scipy-openblas32 library it links), that the typing files ship,
and one Dense layer, activation and loss forward and backward on the cpp and numba
backends against float64 numpy. Exit 0 when all hold.

    python tools/wheel_smoke.py
"""
import os
import shutil
import sys

import numpy as np


def main():
    import fastnn

    here = os.path.dirname(os.path.abspath(fastnn.__file__))
    assert "site-packages" in here, f"fastnn imported from {here}, not from the installed wheel"
    for cc in ("cc", "gcc", "g++", "c++", "clang"):
        if os.environ.get("FASTNN_SMOKE_ALLOW_COMPILER") == "1":
            break
        assert shutil.which(cc) is None, f"a compiler ({shutil.which(cc)}) is on PATH: the check needs none"
    for f in ("py.typed", "_C.pyi"):
        assert os.path.isfile(os.path.join(here, f)), f"{f} is missing from the wheel"
    status = fastnn.backends()
    assert status.get("cpp") == "ok", f"cpp backend unavailable in the wheel: {status}"

    rng = np.random.default_rng(0)
    x = rng.standard_normal((33, 17))
    w = rng.standard_normal((9, 17))
    b = rng.standard_normal(9)
    dy = rng.standard_normal((33, 9))
    z = x @ w.T + b
    ref_y = np.maximum(z, 0.0)
    ref_dz = dy * (z > 0)
    for be in ("cpp", "numba"):
        with fastnn.use_backend(be):
            for dt, tol in ((np.float32, 1e-4), (np.float64, 1e-12)):
                xs, ws, bs, dys = (a.astype(dt) for a in (x, w, b, dy))
                y, zz = fastnn.dense_forward(xs, ws, bs, "relu")
                np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol, err_msg=f"{be} dense_forward {dt}")
                dx, dw, db = fastnn.dense_backward(dys, xs, ws, y, zz, "relu")
                np.testing.assert_allclose(dx, ref_dz @ w, rtol=tol, atol=tol * 10, err_msg=f"{be} dx")
                np.testing.assert_allclose(dw, ref_dz.T @ x, rtol=tol, atol=tol * 10, err_msg=f"{be} dw")
                np.testing.assert_allclose(db, ref_dz.sum(0), rtol=tol, atol=tol * 10, err_msg=f"{be} db")
                s = fastnn.activation_forward(xs, "sigmoid")
                np.testing.assert_allclose(s, 1 / (1 + np.exp(-x)), rtol=tol, atol=tol, err_msg=f"{be} sigmoid")
                loss = fastnn.loss_forward(xs, xs[::-1].copy(), "mse")
                np.testing.assert_allclose(loss, np.mean((x - x[::-1]) ** 2), rtol=tol, err_msg=f"{be} mse")
    from fastnn._backends import cpp

    print(f"wheel smoke test OK: fastnn {fastnn.__version__} from {here}; backends {status}; "
          f"code paths {cpp.code_paths()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
