// bindings.cpp — the pybind11 module fastnn._C: argument plumbing only, no math.
//
// The Python layer (fastnn/backends/cpp.py) passes C-contiguous arrays of one float
// dtype and preallocated outputs. These bindings still re-check every precondition
// the kernels rely on (dtype, contiguity, sizes, writability), so no caller can make a
// kernel read or write out of bounds. Kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "cpu/api.h"
#include "cpu/blas.h"
#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/pool.h"

namespace py = pybind11;
using fastnn::Act;
using fastnn::ActParams;
using fastnn::Loss;
using OptArr = std::optional<py::array>;

namespace {

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Pointer to a C-contiguous array of dtype T with `size` elements (size < 0: any).
template <class T> T* ptr(const py::array& a, const char* name, int64_t size, bool write) {
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string("fastnn._C: ") + name + " has dtype " + std::string(py::str(a.dtype())) +
                         ", expected " + std::string(py::str(py::dtype::of<T>())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string("fastnn._C: ") + name + " must be C-contiguous");
  if (size >= 0 && a.size() != size)
    throw py::value_error(std::string("fastnn._C: ") + name + " has shape " + shape_of(a) + ", expected " +
                          std::to_string(size) + " elements");
  if (write && !a.writeable()) throw py::value_error(std::string("fastnn._C: ") + name + " is read-only");
  return static_cast<T*>(const_cast<void*>(a.data()));
}
template <class T> T* opt(const OptArr& a, const char* name, int64_t size, bool write) {
  return a ? ptr<T>(*a, name, size, write) : nullptr;
}

int64_t dim(const py::array& a, int axis, const char* name, int ndim) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string("fastnn._C: ") + name + " must be " + std::to_string(ndim) + "-D, got " +
                          shape_of(a));
  return a.shape(axis);
}

bool is_f32(const py::array& a) {
  if (a.dtype().is(py::dtype::of<float>())) return true;
  if (a.dtype().is(py::dtype::of<double>())) return false;
  throw py::type_error("fastnn._C: expected float32 or float64 data, got " + std::string(py::str(a.dtype())));
}

Act act_of(int a) {
  if (a < 0 || a > static_cast<int>(Act::log_softmax)) throw py::value_error("fastnn._C: bad activation code");
  return static_cast<Act>(a);
}

ActParams params_of(const py::tuple& t) {
  if (t.size() != 8) throw py::value_error("fastnn._C: activation params must be an 8-tuple");
  return ActParams{t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(),
                   t[4].cast<double>(), t[5].cast<double>(), t[6].cast<double>(), t[7].cast<int>()};
}

// ---- activations -------------------------------------------------------------------
template <class T> void act_fwd(const py::array& x, const py::array& y, int act, const py::tuple& prm, int64_t cols) {
  const int64_t n = x.size();
  const T* xp = ptr<T>(x, "x", -1, false);
  T* yp = ptr<T>(y, "y", n, true);
  const Act a = act_of(act);
  const ActParams p = params_of(prm);
  if ((a == Act::softmax || a == Act::log_softmax) && (cols <= 0 ? n != 0 : n % cols != 0))
    throw py::value_error("fastnn._C: softmax row length does not divide the size");
  py::gil_scoped_release nogil;
  fastnn::act_forward<T>(a, p, xp, yp, n, cols);
}

template <class T> void act_bwd(const py::array& xy, const py::array& dy, const py::array& dx, int act,
                                const py::tuple& prm, int64_t cols, bool from_y) {
  const int64_t n = xy.size();
  const T* xyp = ptr<T>(xy, from_y ? "y" : "x", -1, false);
  const T* dyp = ptr<T>(dy, "dy", n, false);
  T* dxp = ptr<T>(dx, "dx", n, true);
  const Act a = act_of(act);
  const ActParams p = params_of(prm);
  if ((a == Act::softmax || a == Act::log_softmax) && (cols <= 0 ? n != 0 : n % cols != 0))
    throw py::value_error("fastnn._C: softmax row length does not divide the size");
  if (from_y && !fastnn::act_has_y_backward(a)) throw py::value_error("fastnn._C: this activation needs x");
  py::gil_scoped_release nogil;
  if (from_y) fastnn::act_backward_y<T>(a, p, xyp, dyp, dxp, n, cols);
  else fastnn::act_backward_x<T>(a, p, xyp, dyp, dxp, n, cols);
}

// ---- dense -------------------------------------------------------------------------
template <class T> void dense_fwd(const py::array& x, const py::array& w, bool w_oi, const OptArr& b,
                                  const py::array& y, const OptArr& z, int act, const py::tuple& prm) {
  const int64_t m = dim(x, 0, "x", 2), k = dim(x, 1, "x", 2);
  const int64_t n = dim(y, 1, "y", 2);
  if (dim(y, 0, "y", 2) != m) throw py::value_error("fastnn._C: y rows != x rows");
  if (dim(w, w_oi ? 0 : 1, "w", 2) != n || w.shape(w_oi ? 1 : 0) != k)
    throw py::value_error("fastnn._C: w has shape " + shape_of(w) + ", which does not fit x and y");
  const T *xp = ptr<T>(x, "x", m * k, false), *wp = ptr<T>(w, "w", n * k, false), *bp = opt<T>(b, "b", n, false);
  T *yp = ptr<T>(y, "y", m * n, true), *zp = opt<T>(z, "z", m * n, true);
  const Act a = act_of(act);
  const ActParams p = params_of(prm);
  py::gil_scoped_release nogil;
  fastnn::dense_forward<T>(a, p, xp, wp, w_oi, bp, yp, zp, m, k, n);
}

template <class T> void dense_bwd(const py::array& dy, const py::array& x, const py::array& w, bool w_oi,
                                  const OptArr& zy, bool from_y, const OptArr& dx, const OptArr& dw,
                                  const OptArr& db, int act, const py::tuple& prm) {
  const int64_t m = dim(x, 0, "x", 2), k = dim(x, 1, "x", 2);
  const int64_t n = dim(dy, 1, "dy", 2);
  if (dim(dy, 0, "dy", 2) != m) throw py::value_error("fastnn._C: dy rows != x rows");
  if (dim(w, w_oi ? 0 : 1, "w", 2) != n || w.shape(w_oi ? 1 : 0) != k)
    throw py::value_error("fastnn._C: w has shape " + shape_of(w) + ", which does not fit x and dy");
  const Act a = act_of(act);
  if (a != Act::linear && !zy) throw py::value_error("fastnn._C: the activation's backward needs z or y");
  if (from_y && a != Act::linear && !fastnn::act_has_y_backward(a))
    throw py::value_error("fastnn._C: this activation needs z");
  const T *dyp = ptr<T>(dy, "dy", m * n, false), *xp = ptr<T>(x, "x", m * k, false);
  const T *wp = ptr<T>(w, "w", n * k, false), *zyp = opt<T>(zy, from_y ? "y" : "z", m * n, false);
  T *dxp = opt<T>(dx, "dx", m * k, true), *dwp = opt<T>(dw, "dw", n * k, true), *dbp = opt<T>(db, "db", n, true);
  const ActParams p = params_of(prm);
  py::gil_scoped_release nogil;
  fastnn::dense_backward<T>(a, p, from_y, dyp, xp, wp, w_oi, zyp, dxp, dwp, dbp, nullptr, m, k, n);
}

// ---- losses ------------------------------------------------------------------------
template <class T> fastnn::LossArgs<T> loss_args(int kind, const py::dict& prm, const OptArr& pw) {
  if (kind < 0 || kind > static_cast<int>(Loss::log_cosh)) throw py::value_error("fastnn._C: bad loss code");
  fastnn::LossArgs<T> a{static_cast<Loss>(kind), prm["delta"].cast<double>(), prm["beta"].cast<double>(),
                        prm["eps"].cast<double>(), prm["log_target"].cast<bool>(), prm["log_input"].cast<bool>(),
                        prm["full"].cast<bool>(), opt<T>(pw, "pos_weight", -1, false), pw ? int64_t(pw->size()) : 0};
  if (pw && a.pw_len == 0) throw py::value_error("fastnn._C: pos_weight is empty");
  return a;
}

template <class T> double loss_fwd(int kind, const py::array& pred, const py::array& target, const OptArr& out,
                                   const py::dict& prm, const OptArr& pw) {
  const int64_t n = pred.size();
  const T *pp = ptr<T>(pred, "pred", n, false), *tp = ptr<T>(target, "target", n, false);
  T* op = opt<T>(out, "out", n, true);
  const auto a = loss_args<T>(kind, prm, pw);
  py::gil_scoped_release nogil;
  return fastnn::loss_forward<T>(a, pp, tp, op, n);
}

template <class T> void loss_bwd(int kind, const py::array& pred, const py::array& target, const OptArr& grad,
                                 double gs, const py::array& dpred, const OptArr& dtarget, const py::dict& prm,
                                 const OptArr& pw) {
  const int64_t n = pred.size();
  const T *pp = ptr<T>(pred, "pred", n, false), *tp = ptr<T>(target, "target", n, false);
  const T* gp = opt<T>(grad, "grad", n, false);
  T *dp = ptr<T>(dpred, "dpred", n, true), *dtp = opt<T>(dtarget, "dtarget", n, true);
  const auto a = loss_args<T>(kind, prm, pw);
  py::gil_scoped_release nogil;
  fastnn::loss_backward<T>(a, pp, tp, gp, gs, dp, dtp, n);
}

fastnn::ClassArgs class_args(bool log_probs, int64_t ignore_index, double ls) {
  return fastnn::ClassArgs{log_probs, ignore_index, ls};
}

template <class T> double class_fwd(const py::array& pred, const py::array& target, const OptArr& weight,
                                    const OptArr& out, bool log_probs, int64_t ignore, double ls) {
  const int64_t r = dim(pred, 0, "pred", 2), c = dim(pred, 1, "pred", 2);
  const T* pp = ptr<T>(pred, "pred", r * c, false);
  const T* wp = opt<T>(weight, "weight", c, false);
  T* op = opt<T>(out, "out", r, true);
  if (target.dtype().is(py::dtype::of<int64_t>())) {
    const int64_t* tp = ptr<int64_t>(target, "target", r, false);
    py::gil_scoped_release nogil;
    return fastnn::class_forward<T>(class_args(log_probs, ignore, ls), pp, tp, wp, op, r, c);
  }
  const T* tp = ptr<T>(target, "target", r * c, false);
  py::gil_scoped_release nogil;
  return fastnn::soft_class_forward<T>(class_args(log_probs, ignore, ls), pp, tp, wp, op, r, c);
}

template <class T> void class_bwd(const py::array& pred, const py::array& target, const OptArr& weight,
                                  const OptArr& grad, double gs, const py::array& dpred, const OptArr& dtarget,
                                  bool log_probs, int64_t ignore, double ls) {
  const int64_t r = dim(pred, 0, "pred", 2), c = dim(pred, 1, "pred", 2);
  const T* pp = ptr<T>(pred, "pred", r * c, false);
  const T* wp = opt<T>(weight, "weight", c, false);
  const T* gp = opt<T>(grad, "grad", r, false);
  T* dp = ptr<T>(dpred, "dpred", r * c, true);
  if (target.dtype().is(py::dtype::of<int64_t>())) {
    const int64_t* tp = ptr<int64_t>(target, "target", r, false);
    py::gil_scoped_release nogil;
    fastnn::class_backward<T>(class_args(log_probs, ignore, ls), pp, tp, wp, gp, gs, dp, r, c);
    return;
  }
  const T* tp = ptr<T>(target, "target", r * c, false);
  T* dtp = opt<T>(dtarget, "dtarget", r * c, true);
  py::gil_scoped_release nogil;
  fastnn::soft_class_backward<T>(class_args(log_probs, ignore, ls), pp, tp, wp, gp, gs, dp, dtp, r, c);
}

// ---- fused dense + cross-entropy ----------------------------------------------------
template <class T> double dense_ce(const py::array& x, const py::array& w, bool w_oi, const OptArr& b,
                                  const py::array& target, int64_t ignore, double ls, const OptArr& grad, double gs,
                                  const OptArr& loss_rows, const OptArr& dx, const OptArr& dw, const OptArr& db,
                                  int64_t chunk) {
  const int64_t n = dim(x, 0, "x", 2), h = dim(x, 1, "x", 2);
  const int64_t c = dim(w, w_oi ? 0 : 1, "w", 2);
  if (w.shape(w_oi ? 1 : 0) != h) throw py::value_error("fastnn._C: w has shape " + shape_of(w) + ", not fitting x");
  const T *xp = ptr<T>(x, "x", n * h, false), *wp = ptr<T>(w, "w", c * h, false), *bp = opt<T>(b, "b", c, false);
  const int64_t* tp = ptr<int64_t>(target, "target", n, false);
  const T* gp = opt<T>(grad, "grad", n, false);
  T *lp = opt<T>(loss_rows, "loss", n, true), *dxp = opt<T>(dx, "dx", n * h, true);
  T *dwp = opt<T>(dw, "dw", c * h, true), *dbp = opt<T>(db, "db", c, true);
  if (chunk <= 0) chunk = fastnn::dense_ce_chunk(n, c, sizeof(T));
  py::gil_scoped_release nogil;
  return fastnn::dense_cross_entropy<T>(xp, wp, w_oi, bp, tp, n, h, c, ignore, ls, gp, gs, lp, dxp, dwp, dbp, chunk);
}

// ---- outputs from the buffer cache (cpu/pool.h) ----------------------------------------
// An uninitialized C-contiguous array of `shape` and `dtype` whose memory comes from the
// pool; the memory goes back when the array and every view of it are gone (its base is
// a capsule that owns the block).
py::array pooled_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
  size_t count = 1;
  for (py::ssize_t d : shape) {
    if (d < 0) throw py::value_error("fastnn._C.empty: negative dimension");
    if (d && count > SIZE_MAX / size_t(d)) throw std::bad_alloc();
    count *= size_t(d);
  }
  const size_t item = size_t(dtype.itemsize());
  if (count > SIZE_MAX / item) throw std::bad_alloc();
  size_t block = 0;
  void* p = fastnn::pool::acquire(count * item, &block);
  struct Owner { void* p; size_t bytes; };
  Owner* owner = nullptr;
  py::capsule base;
  try {
    owner = new Owner{p, block};
    base = py::capsule(owner, [](void* o) {
      auto* ow = static_cast<Owner*>(o);
      fastnn::pool::release(ow->p, ow->bytes);
      delete ow;
    });
  } catch (...) {  // the capsule does not own the block yet
    delete owner;
    fastnn::pool::release(p, block);
    throw;
  }
  return py::array(dtype, shape, {}, p, base);
}

// ---- the common small Dense call, checked and allocated here -------------------------
// fastnn._kernels' dense_forward / dense_backward first offer their arguments to these:
// exact numpy.ndarray (no subclass), aligned, C-contiguous, one kernel dtype, x (m, k),
// w (n, k) ("oi"), b (n,), dy / y / z (m, n). Anything else returns None and the
// caller takes its general path, so results and errors are the same either way. Doing
// the checks and the allocation here instead of in Python took a (10, 20) -> 10 layer's
// forward + backward from ~9.9 to ~7.1 us (numpy's composition: 7.9; fastnn.bench's
// seed-size row).
bool plain(py::handle h, int ndim, const py::dtype* dt, py::array* out) {
  const auto& api = py::detail::npy_api::get();
  if (Py_TYPE(h.ptr()) != reinterpret_cast<PyTypeObject*>(api.PyArray_Type_)) return false;
  auto a = py::reinterpret_borrow<py::array>(h);
  const int need = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if (a.ndim() != ndim || (a.flags() & need) != need) return false;
  if (dt && !a.dtype().is(*dt)) return false;
  *out = std::move(a);
  return true;
}

py::array new_array(int64_t rows, int64_t cols, const py::dtype& dt, int ndim) {
  std::vector<py::ssize_t> shape = ndim == 1 ? std::vector<py::ssize_t>{cols} : std::vector<py::ssize_t>{rows, cols};
  if (size_t(rows) * size_t(cols) * size_t(dt.itemsize()) >= fastnn::pool::kMinBytes) return pooled_empty(shape, dt);
  return py::array(dt, shape);
}

// Allocate the outputs, then the checked bindings above run the kernel.
template <class T> py::object dense_fwd_plain_t(const py::array& x, const py::array& w, const OptArr& b, int act,
                                                const py::tuple& prm, bool need_z) {
  const py::dtype dt = x.dtype();
  py::array y = new_array(x.shape(0), w.shape(0), dt, 2);
  OptArr z;
  if (need_z) z = new_array(x.shape(0), w.shape(0), dt, 2);
  dense_fwd<T>(x, w, true, b, y, z, act, prm);
  return py::make_tuple(std::move(y), z ? py::object(std::move(*z)) : py::none());
}

py::object dense_fwd_plain(py::handle xh, py::handle wh, py::handle bh, int act, const py::tuple& prm, bool need_z) {
  py::array x, w, b;
  if (!plain(xh, 2, nullptr, &x)) return py::none();
  const py::dtype dt = x.dtype();
  const bool f32 = dt.is(py::dtype::of<float>());
  if (!f32 && !dt.is(py::dtype::of<double>())) return py::none();
  if (!plain(wh, 2, &dt, &w) || w.shape(1) != x.shape(1)) return py::none();
  OptArr bo;
  if (!bh.is_none()) {
    if (!plain(bh, 1, &dt, &b) || b.shape(0) != w.shape(0)) return py::none();
    bo = std::move(b);
  }
  return f32 ? dense_fwd_plain_t<float>(x, w, bo, act, prm, need_z) : dense_fwd_plain_t<double>(x, w, bo, act, prm, need_z);
}

// zy: z (from_y false) or y (from_y true), or empty for linear.
template <class T> py::object dense_bwd_plain_t(const py::array& dy, const py::array& x, const py::array& w,
                                                const OptArr& zy, bool from_y, bool need_dx, bool need_dw,
                                                bool need_db, int act, const py::tuple& prm) {
  const Act a = act_of(act);
  if (a != Act::linear && (!zy || (from_y && !fastnn::act_has_y_backward(a)))) return py::none();
  const py::dtype dt = x.dtype();
  OptArr dx, dw, db;
  if (need_dx) dx = new_array(x.shape(0), x.shape(1), dt, 2);
  if (need_dw) dw = new_array(w.shape(0), w.shape(1), dt, 2);
  if (need_db) db = new_array(1, w.shape(0), dt, 1);
  dense_bwd<T>(dy, x, w, true, zy, from_y, dx, dw, db, act, prm);
  const auto obj = [](OptArr& o) { return o ? py::object(std::move(*o)) : py::none(); };
  return py::make_tuple(obj(dx), obj(dw), obj(db));
}

// y and z as the caller got them (each None or checked like dy); the activation's
// backward reads y when use_y, else z.
py::object dense_bwd_plain(py::handle dyh, py::handle xh, py::handle wh, py::handle yh, py::handle zh, bool use_y,
                           bool need_dx, bool need_dw, bool need_db, int act, const py::tuple& prm) {
  py::array dy, x, w, y, z;
  if (!plain(xh, 2, nullptr, &x)) return py::none();
  const py::dtype dt = x.dtype();
  const bool f32 = dt.is(py::dtype::of<float>());
  if (!f32 && !dt.is(py::dtype::of<double>())) return py::none();
  if (!plain(wh, 2, &dt, &w) || w.shape(1) != x.shape(1)) return py::none();
  if (!plain(dyh, 2, &dt, &dy) || dy.shape(0) != x.shape(0) || dy.shape(1) != w.shape(0)) return py::none();
  for (auto [h, a] : {std::pair<py::handle, py::array*>{yh, &y}, {zh, &z}})
    if (!h.is_none() && (!plain(h, 2, &dt, a) || a->shape(0) != dy.shape(0) || a->shape(1) != dy.shape(1)))
      return py::none();
  OptArr zy;
  if (act != static_cast<int>(Act::linear) && !(use_y ? yh : zh).is_none()) zy = use_y ? y : z;
  return f32 ? dense_bwd_plain_t<float>(dy, x, w, zy, use_y, need_dx, need_dw, need_db, act, prm)
             : dense_bwd_plain_t<double>(dy, x, w, zy, use_y, need_dx, need_dw, need_db, act, prm);
}


// Every binding dispatches on the dtype of its first array argument.
#define BY_DTYPE(first, fn, ...) (is_f32(first) ? fn<float>(__VA_ARGS__) : fn<double>(__VA_ARGS__))

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastnn C++ CPU kernels (OpenBLAS + fused epilogues). Use the fastnn package, not this module.";
  m.def("act_forward", [](py::array x, py::array y, int act, py::tuple p, int64_t cols) {
    BY_DTYPE(x, act_fwd, x, y, act, p, cols);
  });
  m.def("act_backward", [](py::array xy, py::array dy, py::array dx, int act, py::tuple p, int64_t cols, bool from_y) {
    BY_DTYPE(xy, act_bwd, xy, dy, dx, act, p, cols, from_y);
  });
  m.def("dense_forward", [](py::array x, py::array w, bool w_oi, OptArr b, py::array y, OptArr z, int act, py::tuple p) {
    BY_DTYPE(x, dense_fwd, x, w, w_oi, b, y, z, act, p);
  });
  m.def("dense_forward_plain", &dense_fwd_plain, "dense_forward of plain numpy arguments, or None (see above)");
  m.def("dense_backward_plain", &dense_bwd_plain, "dense_backward of plain numpy arguments, or None (see above)");
  m.def("dense_backward", [](py::array dy, py::array x, py::array w, bool w_oi, OptArr zy, bool from_y, OptArr dx,
                             OptArr dw, OptArr db, int act, py::tuple p) {
    BY_DTYPE(x, dense_bwd, dy, x, w, w_oi, zy, from_y, dx, dw, db, act, p);
  });
  m.def("loss_forward", [](int kind, py::array pred, py::array target, OptArr out, py::dict p, OptArr pw) {
    return BY_DTYPE(pred, loss_fwd, kind, pred, target, out, p, pw);
  });
  m.def("loss_backward", [](int kind, py::array pred, py::array target, OptArr grad, double gs, py::array dpred,
                            OptArr dtarget, py::dict p, OptArr pw) {
    BY_DTYPE(pred, loss_bwd, kind, pred, target, grad, gs, dpred, dtarget, p, pw);
  });
  m.def("class_forward", [](py::array pred, py::array target, OptArr weight, OptArr out, bool log_probs,
                            int64_t ignore_index, double ls) {
    return BY_DTYPE(pred, class_fwd, pred, target, weight, out, log_probs, ignore_index, ls);
  });
  m.def("class_backward", [](py::array pred, py::array target, OptArr weight, OptArr grad, double gs,
                             py::array dpred, OptArr dtarget, bool log_probs, int64_t ignore_index, double ls) {
    BY_DTYPE(pred, class_bwd, pred, target, weight, grad, gs, dpred, dtarget, log_probs, ignore_index, ls);
  });
  m.def("dense_cross_entropy", [](py::array x, py::array w, bool w_oi, OptArr b, py::array target, int64_t ignore,
                                  double ls, OptArr grad, double gs, OptArr loss_rows, OptArr dx, OptArr dw, OptArr db,
                                  int64_t chunk) {
    return BY_DTYPE(x, dense_ce, x, w, w_oi, b, target, ignore, ls, grad, gs, loss_rows, dx, dw, db, chunk);
  });
  m.def("dense_ce_chunk", &fastnn::dense_ce_chunk);
  m.def("num_threads", &fastnn::num_threads, "Threads fastnn's CPU kernels use (the caller included).");
  m.def("set_num_threads", &fastnn::set_num_threads, "Set the threads fastnn's CPU kernels use (>= 1).");
  m.def("blas_config", [] { return std::string(fastnn::blas::config()); });
  m.def("empty", &pooled_empty, "An uninitialized array from the output buffer cache.");
  m.def("cache_min_bytes", [] { return fastnn::pool::kMinBytes; });
  m.def("empty_cache", &fastnn::pool::empty_cache, "Free the cached output buffers; returns the bytes freed.");
  m.def("cache_stats", [] {
    const auto s = fastnn::pool::stats();
    py::dict d;
    d["cached_bytes"] = s.cached_bytes;
    d["limit_bytes"] = s.limit_bytes;
    d["hits"] = s.hits;
    d["misses"] = s.misses;
    return d;
  });
  m.def("_thread_counters", &fastnn::thread_counters,
        "(runs on a host thread executor, OpenBLAS threads callbacks) so far (csrc/cpu/parallel.h)");
  m.def("_gelu_path", [] { return fastnn::have_avx512() ? "avx512" : "portable"; },
        "which float32 gelu (erf form) kernel runs here: AVX-512 intrinsics or the portable ISA clones");
  static const auto gemm_path = [] {
    return py::make_tuple(fastnn::own_sgemm_on() ? "fastnn-avx512" : "openblas", fastnn::own_sgemm_min_macs());
  };
  m.def("_gemm_path", gemm_path,
        "(library, min_macs): float32 Dense products of at least min_macs multiply-adds run on that "
        "library (fastnn's AVX-512 sgemm or OpenBLAS), smaller ones on OpenBLAS");
  m.def("_set_gemm_path", [](const std::string& path, int64_t min_macs) {
        if (path != "fastnn-avx512" && path != "openblas")
          throw py::value_error("path must be 'fastnn-avx512' or 'openblas', got '" + path + "'");
        fastnn::set_own_sgemm(path == "fastnn-avx512", min_macs);
        return gemm_path();
      },
      py::arg("path"), py::arg("min_macs") = -1,
      "route the float32 Dense products (tests and benchmarks; min_macs < 0: the default); returns _gemm_path()");
  m.def("set_cache_limit", [](size_t bytes) { fastnn::pool::set_limit(bytes); });
  // The kernel table for C++ consumers (csrc/cpu/api.h): the torch autograd extension.
  static const fastnn::CpuApi api{fastnn::kCpuApiVersion,      sizeof(fastnn::CpuApi),
                                  fastnn::cpu_kernels<float>(),  fastnn::cpu_kernels<double>(),
                                  &fastnn::act_has_y_backward,   &fastnn::pool::acquire,
                                  &fastnn::pool::release,        &fastnn::set_thread_executor,
                                  &fastnn::use_blas_callback};
  m.attr("_cpu_api") = py::capsule(&api, "fastnn._C.cpu_api");
}
