// bind_gemm.cpp — fastnn._C's test and benchmark hooks for the 16-bit products
// (cpu/kernels.h, gemm_lp; cpu/gemm_lp.h, its paths): called from bindings.cpp's module
// definition.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cpu/blas.h"
#include "cpu/gemm_lp.h"
#include "cpu/kernels.h"

namespace py = pybind11;

namespace fastnn {
namespace {

enum class Ty { f32, bf16, f16 };

Ty type_of(const py::array& x, const char* arg) {
  const std::string name = py::str(x.dtype().attr("name"));
  if (name == "float32") return Ty::f32;
  if (name == "bfloat16") return Ty::bf16;
  if (name == "float16") return Ty::f16;
  throw py::type_error(std::string("_gemm_lp: ") + arg + " has dtype " + name +
                       ", expected float32, float16 or bfloat16");
}

// A 2-D array with unit stride along its rows: its row stride in elements.
int64_t ld_of(const py::array& x, const char* arg) {
  if (x.ndim() != 2) throw py::value_error(std::string("_gemm_lp: ") + arg + " must be 2-D");
  const int64_t item = x.itemsize();
  if ((x.shape(1) > 1 && x.strides(1) != item) || x.strides(0) % item || x.strides(0) < 0)
    throw py::value_error(std::string("_gemm_lp: ") + arg + " needs unit stride along its rows");
  return std::max<int64_t>(x.strides(0) / item, x.shape(1));
}

GemmLpPath path_of(const std::string& s) {
  if (s == "best") return GemmLpPath::best;
  if (s == "widen") return GemmLpPath::widen;
  if (s == "bf16dot") return GemmLpPath::bf16dot;
  if (s == "blas") return GemmLpPath::blas;
  if (s == "reference") return GemmLpPath::reference;
  if (s == "amx") return GemmLpPath::amx;
  if (s == "amx_split") return GemmLpPath::amx_split;
  throw py::value_error("_gemm_lp: path is '" + s + "', expected best, widen, bf16dot, amx, amx_split, blas or reference");
}

using Calls = std::vector<std::pair<int64_t, int64_t>>;

const char* path_name(GemmLpPath p) {
  switch (p) {
    case GemmLpPath::widen: return "widen";
    case GemmLpPath::bf16dot: return "bf16dot";
    case GemmLpPath::blas: return "blas";
    case GemmLpPath::reference: return "reference";
    case GemmLpPath::amx: return "amx";
    case GemmLpPath::amx_split: return "amx_split";
    default: return "best";
  }
}

template <class TA, class TB>
py::tuple run(const py::array& a, const py::array& b, bool at, bool bt, float alpha, float beta, py::array& c,
              GemmLpPath path, int64_t group) {
  const int64_t m = at ? a.shape(1) : a.shape(0), k = at ? a.shape(0) : a.shape(1);
  const int64_t n = bt ? b.shape(0) : b.shape(1), kb = bt ? b.shape(1) : b.shape(0);
  if (kb != k) throw py::value_error("_gemm_lp: op(A) is (" + std::to_string(m) + ", " + std::to_string(k) +
                                     "), op(B) has " + std::to_string(kb) + " rows");
  if (c.shape(0) != m || c.shape(1) != n) throw py::value_error("_gemm_lp: c must be (m, n)");
  if (!c.writeable()) throw py::value_error("_gemm_lp: c must be writeable");
  const int64_t lda = ld_of(a, "a"), ldb = ld_of(b, "b"), ldc = ld_of(c, "c");
  const TA* ap = static_cast<const TA*>(a.data());
  const TB* bp = static_cast<const TB*>(b.data());
  float* cp = static_cast<float*>(c.mutable_data());
  std::mutex mu;
  Calls done, made;
  std::vector<std::thread::id> group_thread;
  bool group_split = false;
  RowsDone rd = [&](int64_t r0, int64_t r1) {
    std::lock_guard<std::mutex> g(mu);
    done.emplace_back(r0, r1);
  };
  BRows br;
  if (group > 0) {  // op(B) produced row by row from b (float32, read as op(B)), each call recorded
    if constexpr (!std::is_same_v<TB, float>) throw py::value_error("_gemm_lp: b_rows_group needs float32 b");
    group_thread.resize(size_t((k + group - 1) / group));
    br.group = group;
    br.fn = [&, bp](int64_t p0, int64_t p1, float* rows) {
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t j = 0; j < n; ++j) rows[(p - p0) * n + j] = widen(bt ? bp[j * ldb + p] : bp[p * ldb + j]);
      std::lock_guard<std::mutex> g(mu);
      made.emplace_back(p0, p1);
      if (p1 > p0 && (p1 - 1) / group != p0 / group) group_split = true;  // a call across a group's end
      auto& t = group_thread[size_t(p0 / group)];
      if (t == std::thread::id()) t = std::this_thread::get_id();
      else if (t != std::this_thread::get_id()) group_split = true;  // a group on two threads
    };
  }
  {
    py::gil_scoped_release nogil;
    gemm_lp_path<TA, TB>(path, at, bt, m, n, k, alpha, ap, lda, bp, ldb, beta, cp, ldc, &rd,
                         group > 0 ? &br : nullptr);
  }
  return py::make_tuple(done, made, group_split, path_name(path == GemmLpPath::best ? gemm_lp_best<TA, TB>(m, n, k) : path));
}

}  // namespace

void bind_gemm_lp(py::module_& m) {
  m.def(
      "_gemm_lp",
      [](const py::array& a, const py::array& b, bool at, bool bt, float alpha, float beta, py::array c,
         const std::string& path, int64_t b_rows_group) {
        const Ty ta = type_of(a, "a"), tb = type_of(b, "b");
        if (std::string(py::str(c.dtype().attr("name"))) != "float32") throw py::type_error("_gemm_lp: c must be float32");
        const GemmLpPath p = path_of(path);
#define FASTNN_CASE(X, Y, TA, TB) \
  if (ta == Ty::X && tb == Ty::Y) return run<TA, TB>(a, b, at, bt, alpha, beta, c, p, b_rows_group);
        FASTNN_CASE(bf16, bf16, bf16, bf16)
        FASTNN_CASE(bf16, f32, bf16, float)
        FASTNN_CASE(f32, bf16, float, bf16)
        FASTNN_CASE(f16, f16, f16, f16)
        FASTNN_CASE(f16, f32, f16, float)
        FASTNN_CASE(f32, f16, float, f16)
#undef FASTNN_CASE
        throw py::type_error("_gemm_lp: (a, b) dtypes must be (T, T), (T, float32) or (float32, T), T float16 or bfloat16");
      },
      py::arg("a"), py::arg("b"), py::arg("at"), py::arg("bt"), py::arg("alpha"), py::arg("beta"), py::arg("c"),
      py::arg("path") = "best", py::arg("b_rows_group") = 0,
      "C = alpha op(A) op(B) + beta C through gemm_lp (csrc/cpu/kernels.h) on the given path; returns "
      "(rows_done calls, b_rows calls, whether a b_rows group was split across threads or calls, the path taken).");
  m.def(
      "_sgemm",
      [](const py::array_t<float>& a, const py::array_t<float>& b, bool at, bool bt, float alpha, float beta,
         py::array_t<float> c, const std::string& path) {
        const int64_t m = at ? a.shape(1) : a.shape(0), k = at ? a.shape(0) : a.shape(1);
        const int64_t n = bt ? b.shape(0) : b.shape(1);
        if ((bt ? b.shape(1) : b.shape(0)) != k || c.shape(0) != m || c.shape(1) != n)
          throw py::value_error("_sgemm: shapes do not match");
        const int64_t lda = ld_of(a, "a"), ldb = ld_of(b, "b"), ldc = ld_of(c, "c");
        const float *ap = a.data(), *bp = b.data();
        float* cp = c.mutable_data();
        if (path == "own") {
          if (!own_sgemm_on() && isa() == Isa::baseline) throw py::value_error("_sgemm: no own sgemm at this ISA level");
          py::gil_scoped_release nogil;
          sgemm_own(at, bt, m, n, k, alpha, ap, lda, bp, ldb, beta, cp, ldc);
        } else if (path == "openblas") {
          py::gil_scoped_release nogil;
          blas::gemm(at ? CblasTrans : CblasNoTrans, bt ? CblasTrans : CblasNoTrans, blas::bi(m), blas::bi(n),
                     blas::bi(k), alpha, ap, blas::bi(lda), bp, blas::bi(ldb), beta, cp, blas::bi(ldc));
        } else {
          throw py::value_error("_sgemm: path is '" + path + "', expected own or openblas");
        }
      },
      py::arg("a"), py::arg("b"), py::arg("at"), py::arg("bt"), py::arg("alpha"), py::arg("beta"), py::arg("c"),
      py::arg("path") = "own",
      "float32 C = alpha op(A) op(B) + beta C on fastnn's sgemm ('own', AVX2 / AVX-512) or OpenBLAS's (benchmarks).");
  m.def("_gemm_lp_has_bf16dot", &has_bf16dot, "True where gemm_lp's bf16dot path (vdpbf16ps) can run now.");
  m.def("_gemm_lp_has_amx", &has_amx, "True where gemm_lp's amx path (AMX-BF16 tiles) can run now.");
}
}  // namespace fastnn
