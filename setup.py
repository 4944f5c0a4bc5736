"""Build of the fastnn._C extension (C++17, pybind11, OpenBLAS from scipy-openblas32).

Portable by default: no -march=native. The kernels' entry points are compiled for
AVX-512, AVX2 and baseline x86-64 (csrc/cpu/isa.h) and the best level the CPU has is
chosen at run time (FASTNN_ISA=avx2|baseline caps it, for tests and benchmarks).

Environment switches:
  FASTNN_SANITIZE=address,undefined   build with those sanitizers (debug aid)
  FASTNN_DEBUG=1                      -O0 -g
  FASTNN_BASELINE=1                   no AVX2/AVX-512 code (to test the baseline-only build)
"""
import glob
import importlib.util
import os
import platform
import shutil

import scipy_openblas32 as openblas
from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup
from setuptools.command.build_py import build_py

# Compile the C++ sources in parallel (all cores; NPY_NUM_BUILD_JOBS=N to cap).
ParallelCompile("NPY_NUM_BUILD_JOBS").install()

# csrc/include/fastnn/op_table.h is generated from the op table (fastnn/_registry.py):
# regenerated here when it differs, so an op added to the table needs no manual step.
# (A source tree without tools/, such as an sdist, builds with the header it carries.)
_GEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools", "gen_op_table.py")
if os.path.isfile(_GEN):
    _spec = importlib.util.spec_from_file_location("gen_op_table", _GEN)
    gen_op_table = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(gen_op_table)
    if gen_op_table.write():
        print("setup.py: regenerated csrc/include/fastnn/op_table.h from fastnn/_registry.py")

SOURCES = [
    "csrc/bindings.cpp",
    "csrc/bind_gemm.cpp",
    "csrc/cpu/activation.cpp",
    "csrc/cpu/dense.cpp",
    "csrc/cpu/dense_lp.cpp",
    "csrc/cpu/convert.cpp",
    "csrc/cpu/dense_ce.cpp",
    "csrc/cpu/gemm_lp.cpp",
    "csrc/cpu/isa.cpp",
    "csrc/cpu/simd_avx512.cpp",
    "csrc/cpu/simd_avx2.cpp",
    "csrc/cpu/sgemm.cpp",
    "csrc/cpu/sgemm_avx512.cpp",
    "csrc/cpu/sgemm_avx2.cpp",
    "csrc/cpu/loss.cpp",
    "csrc/cpu/parallel.cpp",
    "csrc/cpu/pool.cpp",
]
# The C++ front end (csrc/front/front.cpp), where the checkout has it.
SOURCES += sorted(glob.glob("csrc/front/*.cpp"))

# -fno-math-errno / -fno-trapping-math: lets the compiler vectorize selects and inline
# sqrt; they change no result (fastnn never reads errno or FP exception flags).
# -fopenmp-simd: honours `#pragma omp simd reduction` (no OpenMP runtime is linked).
compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fvisibility=hidden"]
# the extension finds libscipy_openblas next to it in site-packages (a runtime dependency,
# not bundled into the wheel: fastnn/_backends/cpp.py also loads it before the extension)
_origin = "@loader_path" if platform.system() == "Darwin" else "$ORIGIN"
link_args = [f"-Wl,-rpath,{_origin}/../{openblas.__name__}/lib"]
libraries = [openblas.get_library()]
if platform.system() == "Linux" and platform.machine() == "x86_64":
    libraries.append("mvec")  # glibc's SIMD math (csrc/cpu/vecmath.h)
sanitize = os.environ.get("FASTNN_SANITIZE", "").strip()
if sanitize:
    # -fno-sanitize-recover: a UBSan finding aborts (a test failure), not just a message
    compile_args += [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g", "-O1"]
    link_args += [f"-fsanitize={sanitize}"]
if os.environ.get("FASTNN_BASELINE"):  # only the baseline x86-64 code: tests the fallback ISA path
    compile_args += ["-DFASTNN_NO_CLONES"]
if os.environ.get("FASTNN_DEBUG"):
    compile_args += ["-O0", "-g"]

ext = Pybind11Extension(
    "fastnn._C",
    SOURCES,
    include_dirs=["csrc", "csrc/include", openblas.get_include_dir()],
    library_dirs=[openblas.get_lib_dir()],
    libraries=libraries,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    depends=sorted(glob.glob("csrc/**/*.h", recursive=True)),  # rebuild when a header changes
    cxx_std=17,
)


class build_py_with_cuda(build_py):
    """Ships the CUDA kernels and the headers they include inside the package
    (fastnn/_csrc), where the CuPy backend compiles them from at run time, and the source
    of fastnn.torch's C++ autograd nodes and of fastnn.keras' XLA FFI handlers with the
    kernel table headers they include (compiled against the installed torch / jaxlib on
    first use). An editable install reads them
    from the checkout's csrc/ instead."""

    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "fastnn", "_csrc")
        for pattern in ("csrc/cuda/*.cu", "csrc/cuda/*.cuh", "csrc/include/fastnn/*.h", "csrc/torch/*.cpp",
                        "csrc/jax/*.cpp", "csrc/tf/*.cc", "csrc/front/*.h", "csrc/cpu/api.h", "csrc/cpu/kernels.h", "csrc/cpu/isa.h",
                        "csrc/cpu/pool.h", "csrc/cpu/parallel.h"):
            for src in glob.glob(pattern):
                out = os.path.join(dest, os.path.relpath(src, "csrc"))
                os.makedirs(os.path.dirname(out), exist_ok=True)
                shutil.copyfile(src, out)


setup(ext_modules=[ext], cmdclass={"build_ext": build_ext, "build_py": build_py_with_cuda})
