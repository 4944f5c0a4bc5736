// bindings.cpp — the pybind11 module fastnn._C: numpy arrays in and out of the front end
// (front/front.h), which checks every precondition of the kernels and runs them. The
// Python layer (fastnn/_backends/cpp.py) passes C-contiguous arrays of one float dtype and
// preallocated outputs; activations and losses arrive as (code, 8 numbers), ActSpec.numeric
// and LossSpec.numeric. Kernels run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <string>

#include "cpu/api.h"
#include "cpu/blas.h"
#include "front/front.h"

namespace py = pybind11;
namespace F = fastnn::front;
namespace fastnn {
void bind_gemm_lp(py::module_& m);  // bind_gemm.cpp: the 16-bit products' hooks
}
using OptArr = std::optional<py::array>;

namespace {

// ---- numpy <-> the front end ---------------------------------------------------------------
constexpr int kNpyHalf = 23;      // NPY_HALF: numpy.float16 (a fixed number of numpy's C API)
constexpr int kNpyUserDef = 256;  // NPY_USERDEF: user dtypes are numbered from here on

// ml_dtypes.bfloat16's type number: a user dtype, numbered when ml_dtypes registers it, so
// looked up (with the GIL held, as every caller of view() holds it) the first time a user
// dtype comes by; -1 when ml_dtypes cannot be imported (no array is bfloat16 then).
int bf16_type_num() {
  static const int num = [] {
    try {
      return py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16")).num();
    } catch (const py::error_already_set&) {
      return -1;
    }
  }();
  return num;
}

F::DType dtype_of(const py::array& a) {
  const auto* d = py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr);
  if (d->byteorder == '>') return F::DType::other;  // not native (x86-64: little-endian)
  switch (d->type_num) {
    case py::detail::npy_api::NPY_FLOAT_: return F::DType::f32;
    case py::detail::npy_api::NPY_DOUBLE_: return F::DType::f64;
    case py::detail::npy_api::NPY_INT_: return F::DType::i32;
    case py::detail::npy_api::NPY_LONG_:
    case py::detail::npy_api::NPY_LONGLONG_: return F::DType::i64;
    case kNpyHalf: return F::DType::f16;
    default:
      // ml_dtypes.bfloat16: kind 'V', 2 bytes, its registered number
      if (d->type_num >= kNpyUserDef && d->kind == 'V' && bf16_type_num() == d->type_num) return F::DType::bf16;
      return F::DType::other;
  }
}

F::View view(const py::array& a) {
  const auto* p = py::detail::array_proxy(a.ptr());
  static_assert(sizeof(ssize_t) == sizeof(int64_t));
  return F::View{p->data, dtype_of(a), p->nd, reinterpret_cast<const int64_t*>(p->dimensions),
                 (p->flags & py::array::c_style) != 0, (p->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0};
}

// Views of optional arrays: null where absent.
struct Opt {
  F::View v;
  const F::View* p = nullptr;
  Opt(const OptArr& a) {  // NOLINT(google-explicit-constructor)
    if (a) v = view(*a), p = &v;
  }
};

void raise(const F::Status& s) {
  if (s.ok()) return;
  const std::string msg = std::string("fastnn._C: ") + s.msg;
  if (s.err == F::Err::type) throw py::type_error(msg);
  if (s.err == F::Err::memory) throw std::bad_alloc();
  throw py::value_error(msg);
}

// (code, numeric) -> the decoded activation or loss; numeric: a tuple of 8 numbers.
template <class Out> Out decode(F::Status (*fn)(int64_t, const double*, size_t, Out*), int64_t code,
                                const py::tuple& t) {
  if (t.size() != F::kNumNumeric)
    throw py::value_error("fastnn._C: parameters must be 8 numbers, got " + std::to_string(t.size()));
  double v[F::kNumNumeric];
  for (size_t i = 0; i < F::kNumNumeric; ++i) {
    v[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(t.ptr(), i));
    if (v[i] == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  }
  Out out;
  raise(fn(code, v, F::kNumNumeric, &out));
  return out;
}
F::ActArgs act_of(int64_t code, const py::tuple& t) { return decode(&F::decode_act, code, t); }
F::LossDesc loss_of(int64_t code, const py::tuple& t) { return decode(&F::decode_loss, code, t); }

// Runs a front-end call without the GIL, then raises its error.
template <class Fn> void call(Fn&& fn) {
  F::Status s;
  {
    py::gil_scoped_release nogil;
    s = fn();
  }
  raise(s);
}

// ---- outputs from the buffer cache (cpu/pool.h) ----------------------------------------
// An uninitialized C-contiguous array of `shape` and `dtype`; large ones from the pool,
// whose memory goes back when the array and every view of it are gone (its base is a
// capsule that owns the block).
py::array empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype, bool pooled_only) {
  size_t count = 1;
  for (py::ssize_t d : shape) {
    if (d < 0) throw py::value_error("fastnn._C.empty: negative dimension");
    count = F::checked_bytes(count, size_t(d));
  }
  const size_t bytes = F::checked_bytes(count, size_t(dtype.itemsize()));
  const auto plain = [&] { return py::array(dtype, shape); };
  const auto wrap = [&](void* p, size_t block, void (*release)(void*, size_t)) {
    struct Owner { void* p; size_t bytes; void (*release)(void*, size_t); };
    auto* owner = new Owner{p, block, release};
    py::capsule base;
    try {
      base = py::capsule(owner, [](void* o) {
        auto* ow = static_cast<Owner*>(o);
        ow->release(ow->p, ow->bytes);
        delete ow;
      });
    } catch (...) {  // the capsule does not own the block yet
      delete owner;
      throw;
    }
    return py::array(dtype, shape, {}, p, base);
  };
  if (pooled_only) return F::pooled_or(fastnn::cpu_api(), std::max(bytes, fastnn::pool::kMinBytes), plain, wrap);
  return F::pooled_or(fastnn::cpu_api(), bytes, plain, wrap);
}

// ---- the common small Dense call, checked and allocated here -------------------------
// fastnn/_dense.py's plain route first offers its arguments to these: exact
// numpy.ndarray (no subclass), aligned, C-contiguous, one kernel dtype (float32, float64,
// float16, bfloat16), x (m, k), w (n, k) ("oi"), b (n,), dy / y / z (m, n). Anything else
// returns None and the caller takes its general path, so results and errors are the same
// either way. At seed sizes Python's checks and allocation cost more than the layer itself
// (python -m fastnn.bench --ops dense, the 10x20x10 row).
bool plain(py::handle h, int ndim, F::DType dt, py::array* out) {
  const auto& api = py::detail::npy_api::get();
  if (Py_TYPE(h.ptr()) != reinterpret_cast<PyTypeObject*>(api.PyArray_Type_)) return false;
  auto a = py::reinterpret_borrow<py::array>(h);
  const int need = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if (a.ndim() != ndim || (a.flags() & need) != need) return false;
  const F::DType d = dtype_of(a);
  const bool floating = d == F::DType::f32 || d == F::DType::f64 || d == F::DType::f16 || d == F::DType::bf16;
  if (dt == F::DType::other ? !floating : d != dt) return false;
  *out = std::move(a);
  return true;
}

py::object maybe(OptArr& o) { return o ? py::object(std::move(*o)) : py::none(); }

py::object dense_fwd_plain(py::handle xh, py::handle wh, py::handle bh, int64_t code, const py::tuple& prm,
                           bool need_z) {
  py::array x, w, b;
  if (!plain(xh, 2, F::DType::other, &x)) return py::none();
  const F::DType dt = dtype_of(x);
  if (!plain(wh, 2, dt, &w) || w.shape(1) != x.shape(1)) return py::none();
  if (!bh.is_none() && (!plain(bh, 1, dt, &b) || b.shape(0) != w.shape(0))) return py::none();
  const F::ActArgs a = act_of(code, prm);
  OptArr y = empty({x.shape(0), w.shape(0)}, x.dtype(), false), z;
  if (need_z) z = empty({x.shape(0), w.shape(0)}, x.dtype(), false);
  const F::View xv = view(x), wv = view(w), yv = view(*y);
  const Opt bv(bh.is_none() ? OptArr() : OptArr(b)), zv(z);
  call([&] { return F::dense_forward(a, xv, wv, true, bv.p, yv, zv.p); });
  return py::make_tuple(maybe(y), maybe(z));
}

// y and z as the caller got them (each None or checked like dy); the activation's
// backward reads y when use_y, else z.
py::object dense_bwd_plain(py::handle dyh, py::handle xh, py::handle wh, py::handle yh, py::handle zh, bool use_y,
                           bool need_dx, bool need_dw, bool need_db, int64_t code, const py::tuple& prm) {
  py::array dy, x, w, y, z;
  if (!plain(xh, 2, F::DType::other, &x)) return py::none();
  const F::DType dt = dtype_of(x);
  if (!plain(wh, 2, dt, &w) || w.shape(1) != x.shape(1)) return py::none();
  if (!plain(dyh, 2, dt, &dy) || dy.shape(0) != x.shape(0) || dy.shape(1) != w.shape(0)) return py::none();
  for (auto [h, a] : {std::pair<py::handle, py::array*>{yh, &y}, {zh, &z}})
    if (!h.is_none() && (!plain(h, 2, dt, a) || a->shape(0) != dy.shape(0) || a->shape(1) != dy.shape(1)))
      return py::none();
  const F::ActArgs a = act_of(code, prm);
  const bool linear = a.act == fastnn::Act::linear;
  if (!linear && ((use_y ? yh : zh).is_none() || (use_y && !fastnn::act_has_y_backward(a.act)))) return py::none();
  OptArr zy, dx, dw, db;
  if (!linear) zy = use_y ? y : z;
  if (need_dx) dx = empty({x.shape(0), x.shape(1)}, x.dtype(), false);
  if (need_dw) dw = empty({w.shape(0), w.shape(1)}, x.dtype(), false);
  if (need_db) db = empty({w.shape(0)}, x.dtype(), false);
  const F::View dyv = view(dy), xv = view(x), wv = view(w);
  const Opt zyv(zy), dxv(dx), dwv(dw), dbv(db);
  call([&] { return F::dense_backward(a, use_y, dyv, xv, wv, true, zyv.p, dxv.p, dwv.p, dbv.p, nullptr); });
  return py::make_tuple(maybe(dx), maybe(dw), maybe(db));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  fastnn::bind_gemm_lp(m);
  m.doc() = "fastnn C++ CPU kernels (OpenBLAS + fused epilogues). Use the fastnn package, not this module.";
  m.def("act_forward", [](py::array x, py::array y, int64_t code, py::tuple p, int64_t cols) {
    const F::ActArgs a = act_of(code, p);
    const F::View xv = view(x), yv = view(y);
    call([&] { return F::act_forward(a, xv, yv, cols); });
  });
  m.def("act_backward", [](py::array xy, py::array dy, py::array dx, int64_t code, py::tuple p, int64_t cols,
                           bool from_y) {
    const F::ActArgs a = act_of(code, p);
    const F::View xyv = view(xy), dyv = view(dy), dxv = view(dx);
    call([&] { return F::act_backward(a, from_y, xyv, dyv, dxv, cols); });
  });
  m.def("dense_forward", [](py::array x, py::array w, bool w_oi, OptArr b, py::array y, OptArr z, int64_t code,
                            py::tuple p) {
    const F::ActArgs a = act_of(code, p);
    const F::View xv = view(x), wv = view(w), yv = view(y);
    const Opt bv(b), zv(z);
    call([&] { return F::dense_forward(a, xv, wv, w_oi, bv.p, yv, zv.p); });
  });
  m.def("dense_backward", [](py::array dy, py::array x, py::array w, bool w_oi, OptArr zy, bool from_y, OptArr dx,
                             OptArr dw, OptArr db, int64_t code, py::tuple p) {
    const F::ActArgs a = act_of(code, p);
    const F::View dyv = view(dy), xv = view(x), wv = view(w);
    const Opt zyv(zy), dxv(dx), dwv(dw), dbv(db);
    call([&] { return F::dense_backward(a, from_y, dyv, xv, wv, w_oi, zyv.p, dxv.p, dwv.p, dbv.p, nullptr); });
  });
  m.def("dense_forward_plain", &dense_fwd_plain, "dense_forward of plain numpy arguments, or None (see above)");
  m.def("dense_backward_plain", &dense_bwd_plain, "dense_backward of plain numpy arguments, or None (see above)");
  // weight: bce_with_logits' pos_weight or the class losses' per-class weight (or None)
  m.def("loss_forward", [](int64_t code, py::tuple p, py::array pred, py::array target, OptArr weight, OptArr out) {
    const F::LossDesc d = loss_of(code, p);
    const Opt wv(weight), ov(out);
    const F::LossCall c{&d, view(pred), view(target), wv.p};
    double sum = 0;
    call([&] { return F::loss_forward(c, ov.p, &sum); });
    return sum;
  });
  m.def("loss_backward", [](int64_t code, py::tuple p, py::array pred, py::array target, OptArr weight, OptArr grad,
                            double gs, py::array dpred, OptArr dtarget) {
    const F::LossDesc d = loss_of(code, p);
    const Opt wv(weight), gv(grad), dtv(dtarget);
    const F::LossCall c{&d, view(pred), view(target), wv.p};
    const F::View dv = view(dpred);
    call([&] { return F::loss_backward(c, gv.p, gs, dv, dtv.p); });
  });
  m.def("dense_cross_entropy", [](py::array x, py::array w, bool w_oi, OptArr b, py::array target, int64_t ignore,
                                  double ls, OptArr grad, double gs, OptArr loss_rows, OptArr dx, OptArr dw, OptArr db,
                                  int64_t chunk, OptArr class_weight, OptArr row_weight, double softcap,
                                  double z_scale, OptArr lse) {
    const Opt bv(b), gv(grad), lv(loss_rows), dxv(dx), dwv(dw), dbv(db), cwv(class_weight), rwv(row_weight),
        ev(lse);
    const F::DenseCeCall c{view(x), view(w), w_oi, bv.p, view(target), ignore, ls, gv.p, gs, lv.p, dxv.p, dwv.p,
                           dbv.p, chunk, cwv.p, rwv.p, ev.p, softcap, z_scale};
    double total = 0;
    call([&] { return F::dense_cross_entropy(c, &total); });
    return total;
  });
  m.def("dense_ce_chunk", &fastnn::dense_ce_chunk);
  m.def("num_threads", &fastnn::num_threads, "Threads fastnn's CPU kernels use (the caller included).");
  m.def("set_num_threads", &fastnn::set_num_threads, "Set the threads fastnn's CPU kernels use (>= 1).");
  m.def("blas_config", [] { return std::string(fastnn::blas::config()); });
  m.def("empty", [](const std::vector<py::ssize_t>& shape, const py::dtype& dt) { return empty(shape, dt, true); },
        "An uninitialized array from the output buffer cache.");
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
  m.def("_gelu_path", [] { return fastnn::isa() == fastnn::Isa::baseline ? "portable" : fastnn::isa_name(fastnn::isa()); },
        "which float32 gelu kernel runs now: the hand-vectorized one of that ISA level ('avx512', 'avx2', "
        "csrc/cpu/simd_kernels.h) or the portable code ('portable')");
  m.def("_isa", [] { return fastnn::isa_name(fastnn::isa()); },
        "the ISA level the CPU kernels run at now: 'avx512', 'avx2' or 'baseline' (csrc/cpu/isa.h)");
  m.def("_cpu_isa", [] { return fastnn::isa_name(fastnn::cpu_isa()); },
        "the best ISA level this CPU and this build have");
  m.def("_set_isa", [](const std::string& level) {
        fastnn::Isa cap;
        if (!fastnn::parse_isa(level.c_str(), &cap))
          throw py::value_error("level must be 'avx512', 'avx2' or 'baseline', got '" + level + "'");
        return fastnn::isa_name(fastnn::set_isa(cap));
      },
      py::arg("level"),
      "cap the ISA level of the CPU kernels (tests and benchmarks; never above the CPU's); returns the level now "
      "in effect. Not thread-safe against calls running at the same time.");
  static const auto gemm_path = [] {
    return py::make_tuple(fastnn::own_sgemm_on() ? std::string("fastnn-") + fastnn::isa_name(fastnn::isa()) : std::string("openblas"),
                          fastnn::own_sgemm_min_macs());
  };
  m.def("_gemm_path", gemm_path,
        "(library, min_macs): float32 Dense products of at least min_macs multiply-adds run on that "
        "library ('fastnn-avx512' / 'fastnn-avx2': fastnn's sgemm at that ISA level, or 'openblas'), smaller ones "
        "on OpenBLAS");
  m.def("_set_gemm_path", [](const std::string& path, int64_t min_macs) {
        // "fastnn": fastnn's sgemm at the ISA level in effect; "fastnn-avx512" is kept as
        // its older name (both mean the same).
        if (path != "fastnn" && path != "fastnn-avx512" && path != "openblas")
          throw py::value_error("path must be 'fastnn' (or 'fastnn-avx512') or 'openblas', got '" + path + "'");
        fastnn::set_own_sgemm(path != "openblas", min_macs);
        return gemm_path();
      },
      py::arg("path"), py::arg("min_macs") = -1,
      "route the float32 Dense products (tests and benchmarks; min_macs < 0: the level's default); returns _gemm_path()");
  m.def("set_cache_limit", [](size_t bytes) { fastnn::pool::set_limit(bytes); });
  m.def("_convert_block", [](py::array src, py::array dst) {
        // csrc/cpu/kernels.h's widen_block / narrow_block at the ISA level in effect (tests):
        // float16 / bfloat16 -> float32, or float32 -> float16 / bfloat16.
        const F::View s = view(src), d = view(dst);
        const bool half_in = s.dtype == F::DType::f16 || s.dtype == F::DType::bf16;
        const bool half_out = d.dtype == F::DType::f16 || d.dtype == F::DType::bf16;
        if (!(half_in && d.dtype == F::DType::f32) && !(s.dtype == F::DType::f32 && half_out))
          throw py::type_error(std::string("fastnn._C._convert_block: expected float16 / bfloat16 -> float32 or "
                                           "float32 -> float16 / bfloat16, got ") + F::dtype_name(s.dtype) + " -> " +
                               F::dtype_name(d.dtype));
        if (!s.contiguous || !d.contiguous || !d.writable || s.size() != d.size())
          throw py::value_error("fastnn._C._convert_block: src and dst must be C-contiguous, of one size, dst writable");
        py::gil_scoped_release nogil;
        const int64_t n = s.size();
        switch (half_in ? s.dtype : d.dtype) {
          case F::DType::bf16:
            if (half_in) fastnn::widen_block(s.as<fastnn::bf16>(), d.as<float>(), n);
            else fastnn::narrow_block(s.as<float>(), d.as<fastnn::bf16>(), n);
            break;
          default:
            if (half_in) fastnn::widen_block(s.as<fastnn::f16>(), d.as<float>(), n);
            else fastnn::narrow_block(s.as<float>(), d.as<fastnn::f16>(), n);
        }
      },
      py::arg("src"), py::arg("dst"),
      "dst = src converted by widen_block / narrow_block (csrc/cpu/convert.cpp) at the ISA level in effect (tests)");
  // The front end for C++ bridges built outside this module (csrc/cpu/api.h).
  m.attr("_cpu_api") = py::capsule(&fastnn::cpu_api(), "fastnn._C.cpu_api");
}
