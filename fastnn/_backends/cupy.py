"""The CuPy CUDA backend: fused CUDA kernels (csrc/cuda/kernels.cu, compiled at run time
by NVRTC through cupy.RawModule, one module per device and dtype, cached on disk by
CuPy) and cuBLAS for the matrix products.

Dtypes: float32, float64, float16 and bfloat16 (ml_dtypes.bfloat16, CuPy >= 14's bfloat16
dtype; recognised by dtype name). The 16-bit kernels load __half / __nv_bfloat16, compute
in float32 and round each output once, to nearest-even (csrc/cuda/common.cuh). Their
products run through cuBLAS GemmEx (tensor cores) with float32 compute
(CUBLAS_COMPUTE_32F): into the storage dtype where nothing follows the product, else into
a float32 scratch of at most _ACC_CHUNK_BYTES (row chunks) that the fused epilogue
(bias_act_acc: bias + activation) reads and rounds once. A float32 intermediate that feeds
a product (the activation gradient of dense_backward where f' is not a mask, the logits'
gradient of dense_cross_entropy) goes to GemmEx as two 16-bit parts hi + lo (float32 to
~2^-16 / 2^-22), both products accumulated in float32: the fused ops round once, at their
outputs, at the cost of a second product there. float32 and float64 products go
through cupy.matmul, except that float32 products use TF32 tensor cores
(CUBLAS_COMPUTE_32F_FAST_TF32) inside ``allow_tf32(True)``: off by default, so numpy /
cupy API calls keep full float32 products; fastnn.torch turns it on for torch tensors
where ``torch.backends.cuda.matmul.allow_tf32`` says so.

The same functions, arguments and results as fastnn._backends.cpp, on cupy arrays:
every function gets C-contiguous device arrays of one float dtype, validated by the
prepared calls (fastnn/_activation.py, _dense.py, _loss.py), and returns freshly
allocated outputs. Sums come back as 0-d float64 device arrays: nothing here
synchronizes with the host.

Everything device-specific goes through one runtime object (``_rt``): the array module,
the kernel launcher and the launch limits. The tests swap in a CPU emulator runtime
(tests/cuda_emu) that runs these very kernels as C++ threads on numpy arrays, so this
file's launch logic is checked against the C++ backend without a GPU.
"""
import contextlib
import contextvars

import numpy as np

from .. import _registry as R
from . import _cuda_src as S
from ._common import input_grads

DEVICE = "cuda"


class CupyRuntime:
    """Launches on the current CUDA device through CuPy."""

    def __init__(self, cupy):
        self.xp = cupy
        self._modules = {}  # (device id, dtype) -> RawModule
        self._funcs = {}
        self.max_block = 1024   # threads of a row block
        self.elem_block = 256   # threads of an elementwise block
        self._sms = {}

    def grid_limit(self):
        """Blocks worth launching for a grid-stride loop on this device."""
        dev = self.xp.cuda.Device()
        if dev.id not in self._sms:
            self._sms[dev.id] = int(dev.attributes["MultiProcessorCount"])
        return self._sms[dev.id] * 16

    def max_threads(self, dtype, name):
        """The most threads a block of this kernel can have (its registers decide)."""
        return int(self._function(dtype, name).max_threads_per_block)

    def on(self, a):
        return a.device  # a cupy Device is a context manager

    def _function(self, dtype, name):
        dev = self.xp.cuda.Device().id
        key = (dev, str(dtype), name)
        fn = self._funcs.get(key)
        if fn is None:
            mkey = (dev, str(dtype))
            mod = self._modules.get(mkey)
            if mod is None:
                src, options, names = S.program(dtype)
                mod = self.xp.RawModule(code=src, options=options, name_expressions=names)
                self._modules[mkey] = mod
            fn = self._funcs[key] = mod.get_function(S.name_expression(name, dtype))
        return fn

    def gemm(self, a, b, out, alpha, beta, tf32):
        """out = alpha a @ b (+ beta out) through cublasGemmEx with float32 compute (TF32 where
        tf32): see _product for the operands. cuBLAS is column-major, so it computes
        out^T = b^T a^T; a C-contiguous operand is its own transpose there (op N), an
        F-contiguous one (a transposed view) is passed with op T."""
        xp = self.xp
        m, k = a.shape
        n = b.shape[1]
        if m == 0 or n == 0:
            return
        if k == 0:
            if not beta:
                out.fill(0)
            return
        cublas, handle = self._cublas()
        a, ta, lda = _blas_operand(xp, a)
        b, tb, ldb = _blas_operand(xp, b)
        al = np.array(alpha, dtype=np.float32)
        bt = np.array(beta, dtype=np.float32)
        compute = cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if tf32 else cublas.CUBLAS_COMPUTE_32F
        cublas.gemmEx(handle, tb, ta, n, m, k, al.ctypes.data, b.data.ptr, _cuda_type(b.dtype), ldb, a.data.ptr,
                      _cuda_type(a.dtype), lda, bt.ctypes.data, out.data.ptr, _cuda_type(out.dtype), n, compute,
                      cublas.CUBLAS_GEMM_DEFAULT)

    def _cublas(self):
        try:
            from cupy_backends.cuda.libs import cublas  # noqa: PLC0415
        except ImportError:  # older layouts
            from cupy.cuda import cublas  # noqa: PLC0415
        return cublas, self.xp.cuda.device.get_cublas_handle()

    def launch(self, dtype, name, grid, block, args):
        fn = self._function(dtype, name)
        conv = []
        for t, a in zip(S.signature(name, dtype), args):
            if t.endswith("*"):
                conv.append(np.uint64(0) if a is None else a)  # a null pointer is 8 zero bytes
            elif t == "long long":
                conv.append(np.int64(a))
            elif t == "int":
                conv.append(np.int32(a))
            elif t == "double":
                conv.append(np.float64(a))
            else:
                raise TypeError(f"fastnn cupy backend: no conversion for parameter type {t}")
        fn(tuple(grid), tuple(block), tuple(conv))


# cudaDataType codes (library_types.h), by numpy dtype name.
_CUDA_R = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 14}


def _cuda_type(dtype):
    return _CUDA_R[str(dtype)]


def _blas_operand(xp, a):
    """(array, op, leading dimension) of a 2-D operand for column-major cuBLAS, which sees
    a row-major (r, c) array with unit column stride (C-contiguous, or a block of columns
    of one) as its (c, r) transpose (op N, ld = its row stride) and one with unit row
    stride (a transposed view) as itself (op T, ld = its column stride). Other layouts are
    copied C-contiguous (the backend's own calls pass none)."""
    r, c = a.shape
    isz = a.dtype.itemsize
    s0, s1 = a.strides
    if a.flags.c_contiguous or (s1 == isz and s0 >= c * isz and s0 % isz == 0):
        return a, 0, max(1, c, s0 // isz if r > 1 else 1)
    if a.flags.f_contiguous or (s0 == isz and s1 >= r * isz and s1 % isz == 0):
        return a, 1, max(1, r, s1 // isz if c > 1 else 1)
    a = xp.ascontiguousarray(a)
    return a, 0, max(1, c)


def _init():
    try:
        import cupy
    except Exception as e:  # noqa: BLE001 - reported by fastnn.backends()
        return None, f"cupy not importable: {type(e).__name__}: {e}"
    try:
        if not cupy.is_available():
            return None, "cupy found no CUDA device"
    except Exception as e:  # noqa: BLE001
        return None, f"cupy cannot reach a CUDA device: {type(e).__name__}: {e}"
    try:
        S.csrc_dir()
    except FileNotFoundError as e:
        return None, str(e)
    return CupyRuntime(cupy), None


_rt, _why = _init()


def unavailable():
    return _why


# ---- products -----------------------------------------------------------------------------

_TF32 = contextvars.ContextVar("fastnn_cupy_tf32", default=False)


@contextlib.contextmanager
def allow_tf32(enabled: bool = True):
    """Within the block, float32 products of this backend may use TF32 tensor cores
    (cuBLAS CUBLAS_COMPUTE_32F_FAST_TF32: operands rounded to 10 mantissa bits, float32
    accumulation), as torch does under ``torch.backends.cuda.matmul.allow_tf32``. Off by
    default. Per thread / task (a context variable); float64 and 16-bit products are
    unaffected (the 16-bit ones always run on tensor cores with float32 compute)."""
    token = _TF32.set(bool(enabled))
    try:
        yield
    finally:
        _TF32.reset(token)


def _is_half(dtype):
    return str(dtype) in S.HALF_DTYPES


def _product(a, b, out, beta=0.0, alpha=1.0):
    """out = alpha a @ b, or out += alpha a @ b where beta = 1 (a (m, k), b (k, n): C- or
    F-contiguous, transposed views included; out (m, n) C-contiguous of a's dtype, or
    float32 for a 16-bit a: the float32 accumulators). 16-bit operands, and float32 ones
    under allow_tf32(), go to the runtime's GemmEx; the rest through xp.matmul."""
    tf32 = a.dtype == np.float32 and _TF32.get()
    if _is_half(a.dtype) or tf32:
        _rt.gemm(a, b, out, alpha, beta, tf32)
    elif alpha != 1.0:
        raise ValueError("_product: alpha is for the GemmEx products only")
    elif beta:
        out += a @ b
    else:
        _rt.xp.matmul(a, b, out=out)


class _Products:
    """The array-module face _common.input_grads takes (empty_like, matmul), with the
    products routed through _product."""

    @staticmethod
    def empty_like(a):
        return _rt.xp.empty_like(a)

    @staticmethod
    def matmul(a, b, out):
        _product(a, b, out)
        return out


def use_runtime(rt, device):
    """Run this module's kernels through another runtime (the tests' CPU emulator)."""
    global _rt, _why, DEVICE
    _rt, _why, DEVICE = rt, None, device


# ---- launch shapes ----------------------------------------------------------------------

def _cdiv(a, b):
    return -(-a // b)


def _pow2_at_least(v, lo, hi):
    p = lo
    while p < v and p < hi:
        p *= 2
    return p


def _grid(n):
    """(grid, block) of a grid-stride loop over n > 0 elements."""
    block = min(_rt.elem_block, _rt.max_block)
    return max(1, min(_cdiv(n, block), _rt.grid_limit())), block


def _elementwise(dtype, name, n, *args):
    if n == 0:
        return
    grid, block = _grid(n)
    _rt.launch(dtype, name, (grid,), (block,), args)


def _rows(dtype, name, rows, cols, *args):
    """One block per row (strided over rows), as many threads as the row needs."""
    if rows == 0:
        return
    cap = min(_rt.max_block, _rt.max_threads(dtype, name))
    cap = 1 << (cap.bit_length() - 1)  # a power of two: the block reductions need one
    block = _pow2_at_least(cols, min(32, cap), cap)
    grid = max(1, min(rows, _rt.grid_limit() * 4))
    _rt.launch(dtype, name, (grid,), (block,), args)


def _col_blocks(cols):
    bx = _pow2_at_least(cols, 32, min(256, _rt.max_block))
    return bx, _cdiv(cols, bx)


def _act_args(spec):
    return tuple(spec.numeric[:7]) + (int(spec.numeric[7]),)


def _is_softmax(spec):
    return spec.name in ("softmax", "log_softmax")


def _device(a):
    return _rt.on(a)


# ---- activations ------------------------------------------------------------------------

def activation_forward(x, spec, cols):
    xp = _rt.xp
    with _device(x):
        y = xp.empty_like(x)
        if _is_softmax(spec):
            rows = x.size // cols if cols else 0
            _rows(x.dtype, "softmax_forward", rows, cols, x, y, rows, cols, spec.name == "log_softmax")
        else:
            _elementwise(x.dtype, "act_forward", x.size, x, y, x.size, spec.code, *_act_args(spec))
        return y


def activation_backward(xy, dy, spec, from_y, cols):
    xp = _rt.xp
    with _device(dy):
        dx = xp.empty_like(dy)
        if _is_softmax(spec):
            rows = dy.size // cols if cols else 0
            _rows(dy.dtype, "softmax_backward", rows, cols, xy, dy, dx, rows, cols, spec.name == "log_softmax",
                  not from_y)
        else:
            _elementwise(dy.dtype, "act_backward", dy.size, xy, dy, dx, dy.size, spec.code, bool(from_y),
                         *_act_args(spec))
        return dx


# ---- dense ------------------------------------------------------------------------------

_LINEAR = R.ACTIVATIONS.index("linear")
_NO_ACT = (0.0,) * 7 + (0,)  # the activation parameters of "linear" (unused)


def _bias_act(z, y, b, code, act_args):
    m, n = z.shape
    if m == 0 or n == 0:
        return
    bx, gx = _col_blocks(n)
    gy = max(1, min(m, 65535, _cdiv(_rt.grid_limit() * 4, gx)))
    _rt.launch(z.dtype, "bias_act", (gx, gy), (bx,), (z, y, b, m, n, code) + act_args)


# Bytes of float32 product scratch a 16-bit product's epilogue reads at once (row chunks):
# bounds the extra memory of a 16-bit Dense layer whatever its size.
_ACC_CHUNK_BYTES = 256 << 20


def _bias_act_acc(x, wt, z, y, b, code, act_args):
    """16-bit Dense forward: y = act(x wt + b) and z = x wt + b (z may be None), the
    product accumulated in float32 (scratch of <= _ACC_CHUNK_BYTES, by row chunks) and
    each output rounded once by the epilogue kernel."""
    m, n = y.shape
    if m == 0 or n == 0:
        return
    rows = max(1, min(m, _ACC_CHUNK_BYTES // (4 * n)))
    acc = _rt.xp.empty((rows, n), dtype=np.float32)
    bx, gx = _col_blocks(n)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        a = acc[: r1 - r0]
        _product(x[r0:r1], wt, a)
        gy = max(1, min(r1 - r0, 65535, _cdiv(_rt.grid_limit() * 4, gx)))
        _rt.launch(y.dtype, "bias_act_acc", (gx, gy), (bx,),
                   (a, None if z is None else z[r0:r1], y[r0:r1], b, r1 - r0, n, code) + act_args)


def _dense_forward_half(x, w, w_oi, b, spec, keep_z):
    xp = _rt.xp
    m = x.shape[0]
    n = w.shape[0] if w_oi else w.shape[1]
    wt = w.T if w_oi else w
    y = xp.empty((m, n), dtype=x.dtype)
    z = xp.empty_like(y) if keep_z else None
    if _is_softmax(spec):  # the float32 rows' softmax, by row chunks of the float32 product
        f32 = np.dtype(np.float32)
        rows = max(1, min(m, _ACC_CHUNK_BYTES // (4 * max(1, n))))
        acc = xp.empty((min(rows, m), n), dtype=f32)
        for r0 in range(0, m if n else 0, rows):
            r1 = min(m, r0 + rows)
            a = acc[: r1 - r0]
            _product(x[r0:r1], wt, a)
            if b is not None:
                _elementwise(x.dtype, "add_bias_f32", a.size, a, b, r1 - r0, n)
            if keep_z:
                _elementwise(x.dtype, "from_f32", a.size, a, z[r0:r1], a.size)
            _rows(f32, "softmax_forward", r1 - r0, n, a, a, r1 - r0, n, spec.name == "log_softmax")
            _elementwise(x.dtype, "from_f32", a.size, a, y[r0:r1], a.size)
    elif b is None and spec.name == "linear":
        _product(x, wt, y)  # nothing follows the product: rounded once by cuBLAS
        if keep_z:
            z[...] = y
    else:
        _bias_act_acc(x, wt, z, y, b, spec.code, _act_args(spec))
    return y, z


def dense_forward(x, w, w_oi, b, spec, keep_z):
    xp = _rt.xp
    with _device(x):
        if _is_half(x.dtype):
            return _dense_forward_half(x, w, w_oi, b, spec, keep_z)
        m = x.shape[0]
        n = w.shape[0] if w_oi else w.shape[1]
        z = xp.empty((m, n), dtype=x.dtype)
        _product(x, w.T if w_oi else w, z)  # cuBLAS
        y = xp.empty_like(z) if keep_z else z
        if _is_softmax(spec):
            if b is not None:
                _bias_act(z, z, b, _LINEAR, _NO_ACT)
            _rows(x.dtype, "softmax_forward", m, n, z, y, m, n, spec.name == "log_softmax")
        elif b is not None or spec.name != "linear" or y is not z:
            _bias_act(z, y, b, spec.code, _act_args(spec))
        return y, (z if keep_z else None)


def _col_partials(dy, zy=None, g=None, spec=None, from_y=False, want_db=True, g_lo=None):
    """One pass over dy (m, n), m, n > 0: g = dy * act'(zy) (where g is given; zy None is
    the linear case; g_lo: its 16-bit rounding residue, see act_grad) and, where want_db,
    the column sums of g in double per chunk of rows: returns those (nchunks, n) partial
    sums (None without want_db)."""
    m, n = dy.shape
    bx, gx = _col_blocks(n)
    # about grid_limit() / 2 blocks in all: enough to fill the device, few partial sums
    nchunks = max(1, min(m, 65535, _cdiv(_rt.grid_limit(), 2 * gx)))
    rpc = _cdiv(m, nchunks)
    nchunks = _cdiv(m, rpc)
    partial = _rt.xp.empty((nchunks, n), dtype=np.float64) if want_db else None
    code, act = (spec.code, _act_args(spec)) if spec is not None else (_LINEAR, _NO_ACT)
    _rt.launch(dy.dtype, "act_grad", (gx, nchunks), (bx,),
               (zy, dy, g, g_lo, partial, m, n, rpc, code, bool(from_y)) + act)
    return partial


def _col_sums(dy, zy=None, g=None, spec=None, from_y=False, want_db=True, g_lo=None):
    """g (see _col_partials) and the column sums of g as dy's dtype (None without want_db)."""
    m, n = dy.shape
    db = _rt.xp.empty(n, dtype=dy.dtype) if want_db else None
    if m == 0 or n == 0:
        if db is not None:
            db[...] = 0
        return db
    partial = _col_partials(dy, zy, g, spec, from_y, want_db, g_lo)
    if want_db:
        _elementwise(dy.dtype, "col_reduce", n, partial, partial.shape[0], n, db)
    return db


def dense_backward(dy, x, w, w_oi, zy, from_y, spec, need_dx, need_dw, need_db):
    xp = _rt.xp
    with _device(dy):
        m, n = dy.shape
        db = None
        if spec.name == "linear":
            g = dy
            if need_db:
                db = _col_sums(dy)
        elif _is_softmax(spec):
            g = xp.empty_like(dy)
            _rows(dy.dtype, "softmax_backward", m, n, zy, dy, g, m, n, spec.name == "log_softmax", not from_y)
            if need_db:
                db = _col_sums(g)
        else:
            g = xp.empty_like(dy)
            if _is_half(dy.dtype) and not _exact_grad(spec) and (need_dx or need_dw):
                # g = dy f'(z) is an intermediate of this fused op: the products read it
                # unrounded, as 16-bit hi + lo parts (act_grad's g_lo)
                g_lo = xp.empty_like(dy)
                db = _col_sums(dy, zy, g, spec, from_y, need_db, g_lo)
                return _split_input_grads(g, g_lo, x, w, w_oi, need_dx, need_dw) + (db,)
            db = _col_sums(dy, zy, g, spec, from_y, need_db)  # g and its column sums in one pass
        dx, dw = input_grads(_Products, g, x, w, w_oi, need_dx, need_dw)
        return dx, dw, db


def _exact_grad(spec):
    """Whether dy f'(z) is dy or 0 (or a 16-bit-exact -dy): a mask, exact in 16 bits."""
    if spec.name in ("relu6", "hard_tanh"):
        return True
    return spec.name == "relu" and float(spec.numeric[0]) == 0.0  # negative_slope 0


def _split_input_grads(hi, lo, x, w, w_oi, need_dx, need_dw):
    """(dx, dw) of a 16-bit Dense layer from g = hi + lo (m, n): dx = g W, dw = g^T x (w
    (n, k), "oi") or x^T g (w (k, n)), each as two GemmEx products accumulated in a
    float32 scratch of at most _ACC_CHUNK_BYTES (dx by rows, dw by its leading rows: column
    blocks of g) and rounded once."""
    xp = _rt.xp
    m, n = hi.shape
    k = x.shape[1]
    f32 = np.dtype(np.float32)
    dx = dw = None
    if need_dx:
        dx = xp.empty_like(x)
        wg = w if w_oi else w.T                          # (n, k)
        rows = max(1, min(m, _ACC_CHUNK_BYTES // (4 * max(1, k))))
        acc = xp.empty((min(rows, m), k), dtype=f32)
        for r0 in range(0, m, rows):
            r1 = min(m, r0 + rows)
            a = acc[: r1 - r0]
            _product(hi[r0:r1], wg, a)
            _product(lo[r0:r1], wg, a, 1.0)
            _elementwise(x.dtype, "from_f32", a.size, a, dx[r0:r1], a.size)
    if need_dw:
        dw = xp.empty_like(w)
        # dw's leading axis: n ("oi", dw = g^T x) or k ("io", dw = x^T g)
        lead, other = (n, k) if w_oi else (k, n)
        step = max(1, min(lead, _ACC_CHUNK_BYTES // (4 * max(1, other))))
        acc = xp.empty((min(step, lead), other), dtype=f32)
        for c0 in range(0, lead, step):
            c1 = min(lead, c0 + step)
            a = acc[: c1 - c0]
            for part, beta in ((hi, 0.0), (lo, 1.0)):
                if w_oi:
                    _product(part[:, c0:c1].T, x, a, beta)
                else:
                    _product(x[:, c0:c1].T, part, a, beta)
            _elementwise(x.dtype, "from_f32", a.size, a, dw[c0:c1], a.size)
    return dx, dw


# ---- sums -------------------------------------------------------------------------------

def _sum(v, n):
    """Sum of v[:n] (a device array of T or float64) as a 0-d float64 device array."""
    xp = _rt.xp
    out = xp.zeros(1, dtype=np.float64)
    if n:
        _rt.launch(v.dtype, "sum_all", (1,), (_rt.max_block,), (v, n, out))
    return out.reshape(())


# ---- elementwise losses -----------------------------------------------------------------

_LOSS_CODE = {name: i for i, name in enumerate(R.ELEMENTWISE_LOSSES)}


def _loss_args(spec):
    """The FK_LOSS_DECL arguments of the loss kernels."""
    p = spec.params
    pw = p.get("pos_weight")
    return (_LOSS_CODE[spec.name], float(p.get("delta", 1.0)), float(p.get("beta", 1.0)), float(p.get("eps", 1e-8)),
            bool(p.get("log_target", False)), bool(p.get("log_input", True)), bool(p.get("full", False)),
            pw, 1 if pw is None else int(pw.size))


def loss_forward(pred, target, spec, want_none):
    xp = _rt.xp
    with _device(pred):
        n = pred.size
        out = xp.empty_like(pred) if want_none else None
        if n == 0:
            return xp.zeros((), dtype=np.float64), out
        grid, block = _grid(n)
        partial = xp.empty(grid, dtype=np.float64)  # one sum per block, then summed in order
        _rt.launch(pred.dtype, "loss_forward", (grid,), (block,), (pred, target, out, n) + _loss_args(spec) + (partial,))
        return _sum(partial, grid), out


def loss_backward(pred, target, spec, grad, grad_scalar, need_target_grad):
    xp = _rt.xp
    with _device(pred):
        dpred = xp.empty_like(pred)
        dtarget = xp.empty_like(target) if need_target_grad else None
        n = pred.size
        _elementwise(pred.dtype, "loss_backward", n, pred, target, None if grad is None else grad.reshape(-1),
                     float(grad_scalar), dpred, dtarget, n, *_loss_args(spec))
        return dpred, dtarget


# ---- cross_entropy / nll ----------------------------------------------------------------

def _class_common(spec):
    p = spec.params
    return p.get("weight"), float(p.get("label_smoothing", 0.0))


def class_loss_forward(pred, target, spec, want_none):
    xp = _rt.xp
    with _device(pred):
        rows, cols = pred.shape
        out = xp.empty(rows, dtype=pred.dtype)
        w, ls = _class_common(spec)
        if target.dtype.kind in "iu":
            _rows(pred.dtype, "class_rows", rows, cols, pred, target, w, None, 0.0, out, None, rows, cols,
                  spec.name == "nll", spec.params["ignore_index"], ls)
        else:
            _rows(pred.dtype, "soft_rows", rows, cols, pred, target, w, None, 0.0, out, None, None, rows, cols, ls)
        return _sum(out, rows), (out if want_none else None)


def class_loss_backward(pred, target, spec, grad, grad_scalar, need_target_grad):
    xp = _rt.xp
    with _device(pred):
        rows, cols = pred.shape
        dpred = xp.empty_like(pred)
        w, ls = _class_common(spec)
        g = None if grad is None else grad.reshape(-1)
        if target.dtype.kind in "iu":
            _rows(pred.dtype, "class_rows", rows, cols, pred, target, w, g, float(grad_scalar), None, dpred, rows,
                  cols, spec.name == "nll", spec.params["ignore_index"], ls)
            return dpred, None
        dtarget = xp.empty_like(target) if need_target_grad else None
        _rows(pred.dtype, "soft_rows", rows, cols, pred, target, w, g, float(grad_scalar), None, dpred, dtarget,
              rows, cols, ls)
        return dpred, dtarget


# ---- fused dense + cross-entropy ----------------------------------------------------------

# Logits held at once by default: 1 GiB (the GPU's memory is large; chunks only bound it).
_CE_CHUNK_BYTES = 1 << 30


def dense_cross_entropy(x, w, w_oi, b, target, ignore_index, label_smoothing, grad, grad_scalar, want_none,
                        need_grads, chunk_size, extras=None):
    if extras is not None:
        on = [name for name, v in (("row_weight", extras.row_weight is not None), ("softcap", extras.softcap > 0),
                                   ("lse_square_scale", extras.z_scale > 0), ("return_lse", extras.want_lse)) if v]
        if on:
            raise ValueError(f"dense_cross_entropy: {', '.join(on)} not available on the cupy backend (CUDA "
                             f"arrays); expected CPU arrays (the cpp and numba backends have them) or these "
                             f"options off")
    cw = None if extras is None else extras.class_weight
    if _is_half(x.dtype):
        with _device(x):
            return _dense_ce_half(x, w, w_oi, b, target, ignore_index, label_smoothing, grad, grad_scalar, want_none,
                                  need_grads, chunk_size, cw)
    xp = _rt.xp
    with _device(x):
        n, h = x.shape
        c = w.shape[0] if w_oi else w.shape[1]
        chunk = chunk_size or max(512, _CE_CHUNK_BYTES // max(1, c * x.dtype.itemsize))
        chunk = max(1, min(chunk, n))
        rows = xp.empty(n, dtype=x.dtype)
        dx = xp.empty_like(x) if need_grads else None
        dw = xp.empty_like(w) if need_grads else None
        logits = xp.empty((chunk, c), dtype=x.dtype)
        wt = w.T if w_oi else w              # (h, c)
        partials = []
        g = None if grad is None else grad.reshape(-1)
        for s0 in range(0, n, chunk):
            s1 = min(n, s0 + chunk)
            xc, lc = x[s0:s1], logits[: s1 - s0]
            _product(xc, wt, lc)
            if b is not None:
                _bias_act(lc, lc, b, _LINEAR, _NO_ACT)
            _rows(x.dtype, "class_rows", s1 - s0, c, lc, target[s0:s1], cw, None if g is None else g[s0:s1],
                  float(grad_scalar), rows[s0:s1], lc if need_grads else None, s1 - s0, c, False, ignore_index,
                  float(label_smoothing))
            if not need_grads:
                continue
            _product(lc, w if w_oi else w.T, dx[s0:s1])
            a, bm = (lc.T, xc) if w_oi else (xc.T, lc)
            _product(a, bm, dw, 1.0 if s0 else 0.0)
            partials.append(_col_partials(lc))  # db: the logits' gradient summed over rows
        db = None
        if need_grads:
            if n == 0:
                dw[...] = 0
            db = xp.empty(c, dtype=x.dtype)
            if partials:
                allp = partials[0] if len(partials) == 1 else xp.concatenate(partials, axis=0)
                _elementwise(x.dtype, "col_reduce", c, allp, allp.shape[0], c, db)
            else:
                db[...] = 0
        return _sum(rows, n), (rows if want_none else None), dx, dw, db, None


def _dense_ce_half(x, w, w_oi, b, target, ignore_index, label_smoothing, grad, grad_scalar, want_none, need_grads,
                   chunk_size, cw):
    """dense_cross_entropy in float16 / bfloat16, rounding once at each output:
    * logits = x W^T + b stay float32 (GemmEx float32 output, add_bias_f32): the loss and
      the logits' gradient G come from them by the float32 class_rows;
    * G leaves as two 16-bit parts, G = hi + lo (split_f32), so that dx = G W and
      dW = G^T x, each two GemmEx products accumulated in float32 (cuBLAS beta = 1), see G
      to ~2^-16 (bfloat16) / 2^-22 (float16), not one 16-bit rounding of it. A scalar
      gradient (mean / sum reductions) is left out of G and applied as the products' alpha
      (and to db's sums): G then has magnitude ~1 and never sinks into float16's
      subnormals, whatever the batch size.
    Extra memory: per chunk, the float32 logits and G's two 16-bit parts (8 bytes per
    logit); dW's float32 accumulator (W's size in float32); the per-row loss in float32."""
    xp = _rt.xp
    f32 = np.dtype(np.float32)
    n, h = x.shape
    c = w.shape[0] if w_oi else w.shape[1]
    dt = x.dtype
    chunk = chunk_size or max(512, _CE_CHUNK_BYTES // max(1, c * 8))
    chunk = max(1, min(chunk, n))
    rows = xp.empty(n, dtype=f32)
    logits = xp.empty((chunk, c), dtype=f32)
    wt = w.T if w_oi else w                  # (h, c)
    g = None if grad is None else grad.reshape(-1)
    alpha = 1.0 if g is not None else float(grad_scalar)
    cw32 = None if cw is None else cw.astype(f32)  # c values: the float32 kernel's class weights
    dx = dw = db = None
    if need_grads:
        dx = xp.empty_like(x)
        dw = xp.empty_like(w)
        hi_buf = xp.empty((chunk, c), dtype=dt)
        lo_buf = xp.empty((chunk, c), dtype=dt)
        dx_acc = xp.empty((chunk, h), dtype=f32)
        dw_acc = xp.empty(w.shape, dtype=f32)
        partials = []
    for s0 in range(0, n, chunk):
        s1 = min(n, s0 + chunk)
        xc, lc = x[s0:s1], logits[: s1 - s0]
        _product(xc, wt, lc)
        if b is not None:
            _elementwise(dt, "add_bias_f32", lc.size, lc, b, s1 - s0, c)
        gc = None if g is None else g[s0:s1].astype(f32)
        _rows(f32, "class_rows", s1 - s0, c, lc, target[s0:s1], cw32, gc, 1.0, rows[s0:s1],
              lc if need_grads else None, s1 - s0, c, False, ignore_index, float(label_smoothing))
        if not need_grads:
            continue
        hi, lo = hi_buf[: s1 - s0], lo_buf[: s1 - s0]
        _elementwise(dt, "split_f32", lc.size, lc, hi, lo, lc.size)
        acc = dx_acc[: s1 - s0]
        wg = w if w_oi else w.T                # (c, h)
        _product(hi, wg, acc, alpha=alpha)
        _product(lo, wg, acc, 1.0, alpha)
        _elementwise(dt, "from_f32", acc.size, acc, dx[s0:s1], acc.size)
        for part, first in ((hi, s0 == 0), (lo, False)):
            a, bm = (part.T, xc) if w_oi else (xc.T, part)
            _product(a, bm, dw_acc, 0.0 if first else 1.0, alpha)
        partials.append(_col_partials(lc))  # db: the float32 logits' gradient summed over rows
    if need_grads:
        if n == 0:
            dw_acc[...] = 0
        _elementwise(dt, "from_f32", dw.size, dw_acc, dw, dw.size)
        db = xp.empty(c, dtype=dt)
        if partials:
            allp = xp.concatenate(partials, axis=0)
            if alpha != 1.0:
                allp *= alpha
            _elementwise(dt, "col_reduce", c, allp, allp.shape[0], c, db)
        else:
            db[...] = 0
    out = None
    if want_none:
        out = xp.empty(n, dtype=dt)
        _elementwise(dt, "from_f32", n, rows, out, n)
    return _sum(rows, n), out, dx, dw, db, None
