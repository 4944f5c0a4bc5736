// bind_gemm.cpp — fastnn._C's test and benchmark hooks for the 16-bit products
// (cpu/kernels.h, gemm_lp): called from bindings.cpp's module definition.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace py = pybind11;

namespace fastnn {
void bind_gemm_lp(py::module_& m) { (void)m; }
}  // namespace fastnn
