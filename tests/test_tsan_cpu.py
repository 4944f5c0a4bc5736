"""The C++ backend's threaded code under ThreadSanitizer: csrc/cpu/*.cpp built with
-fsanitize=thread into tests/tsan_cpu/driver.cpp (a standalone program: libtsan cannot be
preloaded into Python on this machine), every kernel family on the 4-thread pool, from
two caller threads at once, bit-identical to single-threaded runs. ISA clones are off in
this build (GCC's ifunc resolvers run before TSan's runtime is up); the threading code is
the same. The second test plants a race in chunked_sum and checks TSan reports it."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["activation.cpp", "dense.cpp", "dense_ce.cpp", "dense_lp.cpp", "loss.cpp", "parallel.cpp", "pool.cpp"]
# Built without FASTNN_NO_CLONES (their AVX2 / AVX-512 functions carry target attributes,
# the rest is baseline code; no ifunc): the driver also runs the hand-vectorized
# activations and the Dense products on fastnn's own sgemm.
AVX512_SOURCES = ["isa.cpp", "simd_avx512.cpp", "simd_avx2.cpp", "sgemm.cpp", "sgemm_avx512.cpp", "sgemm_avx2.cpp",
                  "convert.cpp", "gemm_lp.cpp"]
# slow: a ThreadSanitizer build (~30 s each); the full suite (--full, CI) runs them
pytestmark = [pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"), pytest.mark.slow]


def build_and_run(tmp_path, csrc):
    ob = pytest.importorskip("scipy_openblas32")
    exe = tmp_path / "tsan_cpu"
    flags = ["g++", "-std=c++17", "-O1", "-g", "-fsanitize=thread", "-fopenmp-simd", "-fno-math-errno",
             f"-I{csrc}", f"-I{csrc}/cpu", f"-I{csrc}/include", f"-I{ob.get_include_dir()}"]
    objs = []
    for src in AVX512_SOURCES:
        obj = tmp_path / (src + ".o")
        b = subprocess.run(flags + ["-c", os.path.join(csrc, "cpu", src), "-o", str(obj)], capture_output=True,
                           text=True)
        assert b.returncode == 0, b.stderr[-4000:]
        objs.append(str(obj))
    cmd = flags + ["-DFASTNN_NO_CLONES", os.path.join(ROOT, "tests", "tsan_cpu", "driver.cpp"),
                   *[os.path.join(csrc, "cpu", s) for s in SOURCES], *objs,
                   f"-L{ob.get_lib_dir()}", f"-l{ob.get_library()}", "-lmvec", f"-Wl,-rpath,{ob.get_lib_dir()}",
                   "-o", str(exe)]
    b = subprocess.run(cmd, capture_output=True, text=True)
    assert b.returncode == 0, b.stderr[-4000:]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TSAN_OPTIONS="halt_on_error=0 exitcode=66")
    return subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=600)


def test_threaded_kernels_race_free_and_deterministic(tmp_path):
    r = build_and_run(tmp_path, os.path.join(ROOT, "csrc"))
    out = r.stdout + r.stderr
    assert "ThreadSanitizer" not in out, out[-6000:]
    assert r.returncode == 0 and "0 failed checks" in r.stdout, out[-6000:]
    from fastnn._backends import cpp  # noqa: PLC0415

    if cpp._C is not None and cpp._C._gelu_path() == "avx512":  # this CPU runs fastnn's sgemm: it was checked
        assert "fastnn's sgemm checked" in r.stdout, out[-6000:]


def test_a_planted_race_is_caught(tmp_path):
    csrc = tmp_path / "csrc"
    shutil.copytree(os.path.join(ROOT, "csrc"), csrc)
    h = csrc / "cpu" / "parallel.h"
    text = h.read_text()
    racy = text.replace("partial[c / chunk] = f(c, std::min(c + chunk, e));",
                        "partial[0] += f(c, std::min(c + chunk, e));")
    assert racy != text
    h.write_text(racy)
    r = build_and_run(tmp_path, str(csrc))
    assert "WARNING: ThreadSanitizer: data race" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
