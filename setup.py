"""Build of the fastnn._C extension (C++17, pybind11, OpenBLAS from scipy-openblas32).

Portable by default: no -march=native. The kernels' entry points are compiled for
AVX-512, AVX2 and baseline x86-64 (GCC target_clones, csrc/cpu/parallel.h) and the
best one is chosen at load time.

Environment switches:
  FASTNN_SANITIZE=address,undefined   build with those sanitizers (debug aid)
  FASTNN_DEBUG=1                      -O0 -g
  FASTNN_BASELINE=1                   no AVX2/AVX-512 clones (to test the baseline path)
"""
import glob
import os
import platform

import scipy_openblas32 as openblas
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

SOURCES = [
    "csrc/bindings.cpp",
    "csrc/cpu/activation.cpp",
    "csrc/cpu/dense.cpp",
    "csrc/cpu/dense_ce.cpp",
    "csrc/cpu/loss.cpp",
    "csrc/cpu/parallel.cpp",
]

# -fno-math-errno / -fno-trapping-math: lets the compiler vectorize selects and inline
# sqrt; they change no result (fastnn never reads errno or FP exception flags).
# -fopenmp-simd: honours `#pragma omp simd reduction` (no OpenMP runtime is linked).
compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fvisibility=hidden"]
link_args = [f"-Wl,-rpath,$ORIGIN/../{openblas.__name__}/lib"]
libraries = [openblas.get_library()]
if platform.system() == "Linux" and platform.machine() == "x86_64":
    libraries.append("mvec")  # glibc's SIMD math (csrc/cpu/vecmath.h)
sanitize = os.environ.get("FASTNN_SANITIZE", "").strip()
if sanitize:
    compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g", "-O1"]
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

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
