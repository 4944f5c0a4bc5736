"""The CUDA kernels on the CPU emulator under ThreadSanitizer (tests/cuda_emu/tsan_driver.cpp):
every kernel, float32 and float64, several blocks of 32/64 threads, against serial loops
over the same formulas. A missing __syncthreads shows up as a TSan data race and as wrong
results; the second test removes one barrier and checks that it is caught.
"""
import os
import shutil
import subprocess

import pytest

from fastnn._backends import _cuda_src as S

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cuda_emu")
# slow: a ThreadSanitizer build (~30 s each); the full suite (--full, CI) runs them
pytestmark = [pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"), pytest.mark.slow]


def build_and_run(tmp_path, kernels_dir):
    exe = tmp_path / "tsan_driver"
    cmd = ["g++", "-std=c++20", "-O1", "-g", "-fsanitize=thread", "-pthread", "-I" + HERE, "-I" + kernels_dir,
           "-I" + os.path.join(S.csrc_dir(), "include"), os.path.join(HERE, "tsan_driver.cpp"), "-o", str(exe)]
    b = subprocess.run(cmd, capture_output=True, text=True)
    assert b.returncode == 0, b.stderr[-4000:]
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=0 exitcode=66")
    return subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=600)


def test_every_kernel_race_free_and_correct(tmp_path):
    r = build_and_run(tmp_path, S.csrc_dir())
    out = r.stdout + r.stderr
    assert "ThreadSanitizer" not in out, out[-6000:]
    assert r.returncode == 0 and "0 failed checks" in r.stdout, out[-6000:]


def test_a_missing_barrier_is_caught(tmp_path):
    shutil.copytree(os.path.join(S.csrc_dir(), "cuda"), tmp_path / "cuda")
    common = tmp_path / "cuda" / "common.cuh"
    src = common.read_text()
    barrier = "  const T r = sh[0];\n  __syncthreads();\n  return r;"
    assert src.count(barrier) == 1
    common.write_text(src.replace(barrier, "  const T r = sh[0];\n  return r;"))
    r = build_and_run(tmp_path, str(tmp_path))
    out = r.stdout + r.stderr
    assert "WARNING: ThreadSanitizer: data race" in out, out[-3000:]
    assert r.returncode != 0
