"""The user-facing tools: `python -m fastnn.bench` (its JSON, compare, ratios withheld when
busy or noisy, targets in plain words), `python -m fastnn` / fastnn.info(), the build
messages of the framework extensions and `python -m fastnn build`.

The benchmark runs here are real but tiny (one Dense case, one round); what is checked is
what the numbers must satisfy whatever the machine's speed: rate = work / median,
vs torch = torch's median / this median, percentiles ordered, the header's facts equal to
what fastnn reports, and a worker that times fastnn alone never imported torch.
"""
import json
import os
import subprocess
import sys

import pytest

import fastnn
from fastnn import _extbuild, _info
from fastnn.bench import machine, procs, report, targets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "dense_relu forward+backward 10x20x10"


def _run(args, env=None, timeout=300):
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=e,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One real quick run of the tiny Dense case, saved as JSON (module-scoped: ~10 s)."""
    path = tmp_path_factory.mktemp("bench") / "a.json"
    r = _run(["-m", "fastnn.bench", "--quick", "--only", TINY, "--rounds", "1", "--no-progress",
              "--json", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout, json.loads(path.read_text()), path


def test_bench_json_rows_are_consistent(tiny_run):
    stdout, data, _ = tiny_run
    rows = {r["impl"]: r for r in data["rows"]}
    assert set(rows) == {"fastnn[cpp]", "torch"}  # --quick: the C++ backend vs torch
    work = 6 * 10 * 20 * 10  # forward + backward FLOPs of Dense (10, 20, 10)
    for r in rows.values():
        assert r["process"] == "alone" and r["error"] is None and r["samples"] >= 3
        assert 0 < r["p20"] <= r["p50"] <= r["p80"]
        assert r["rate"] == pytest.approx(work / r["p50"] / 1e9, rel=1e-12)
        assert r["frac_ceiling"] == pytest.approx(r["rate"] / data["ceilings"]["gemm"], rel=1e-12)
        assert r["label"] == "Dense+relu, batch 10, 20 -> 10 features"
    assert rows["fastnn[cpp]"]["vs_torch"] == pytest.approx(rows["torch"]["p50"] / rows["fastnn[cpp]"]["p50"])
    assert data["ceilings"]["gemm"] > 0 and data["ceilings"]["bandwidth"] > 0
    # the header's facts are fastnn's own answers
    meta = data["meta"]
    assert meta["isa"] == _info.isa_level()
    assert meta["paths"] == {k: list(v) if isinstance(v, tuple) else v
                             for k, v in _info.code_paths().items() if k != "blas"}
    assert meta["fastnn_threads"] == fastnn.num_threads()
    assert f"instruction set level: {meta['isa']}" in stdout
    assert "Dense+relu, batch 10, 20 -> 10 features, forward+backward" in stdout
    assert "sgemm ceiling" in stdout and "copy ceiling" in stdout
    assert "issue" not in stdout.lower() and "T1" not in stdout  # the team's words stay out


def test_compare_reports_speed_changes(tiny_run, tmp_path):
    _, data, a = tiny_run
    faster = json.loads(a.read_text())
    for r in faster["rows"]:
        if r["impl"] == "fastnn[cpp]":
            for k in ("p20", "p50", "p80"):
                r[k] /= 4  # 4x faster, ranges cannot overlap (p80 / 4 < p20 unless p80 > 4 p20)
            spread = r["p80"] / r["p20"]
    b = tmp_path / "b.json"
    b.write_text(json.dumps(faster))
    out = _run(["-m", "fastnn.bench", "compare", str(a), str(b)])
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("Dense+relu")]
    line = next(ln for ln in lines if " fastnn " in ln)
    assert "4.00x" in line
    assert ("faster" if spread < 4 else "within noise") in line
    torch_line = next(ln for ln in lines if " torch " in ln)
    assert "1.00x" in torch_line and "within noise" in torch_line
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    out = _run(["-m", "fastnn.bench", "compare", str(a), str(bad)])
    assert out.returncode == 2 and "not a fastnn.bench --json file" in out.stderr


def test_worker_times_fastnn_without_torch():
    plan = {"min_sample_s": 0.001, "samples_per_turn": 2, "min_rounds": 1, "max_rounds": 2,
            "budget_s": 0.05, "calibrate_s": 0.01, "settle_s": 0.01, "heavy_s": 0.1}
    request = {"group": "fastnn", "dtype": "float32", "seed": 0, "check": True, "compile": False,
               "backends": ["cpp"], "cache_rows": False, "no_output_cache": False, "timing": plan,
               "jobs": [["dense", "dense_relu", "forward", [10, 20, 10]]]}
    r = _run(["-m", "fastnn.bench.worker"], timeout=120)  # no input: fails cleanly
    assert r.returncode != 0
    e = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "fastnn.bench.worker"], input=json.dumps(request),
                       capture_output=True, text=True, cwd=ROOT, env=e, timeout=120)
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith(procs.MARK))
    result = json.loads(line[len(procs.MARK):])
    assert result["modules"]["fastnn"] and not result["modules"]["torch"]
    (job,) = result["jobs"]
    assert [i["name"] for i in job["impls"]] == ["fastnn[cpp]"] and job["impls"][0]["error"] is None
    assert job["work"] == 2 * 10 * 20 * 10 and job["unit"] == "GFLOP/s"


def _row(impl, samples, busy=False):
    return report.make_row("dense_relu", "forward+backward", (10, 20, 10), "float32", impl, "GFLOP/s",
                           12000, 100.0, samples, busy=busy)


def test_ratios_withheld_when_noisy_or_busy():
    # the case: torch's samples bunched at a time slice, fastnn's tight
    fast, torch = _row("fastnn[cpp]", [4e-6, 5e-6, 5e-6, 6e-6]), _row("torch", [4e-6, 5e-6, 16e-3, 17e-3])
    report.add_ratios([fast, torch])
    assert fast.withheld == "noisy" and report._ratio_cell(fast) == "(noisy)"
    assert "(noisy)" in report.format_table([fast, torch])
    fast, torch = _row("fastnn[cpp]", [4e-6, 5e-6, 6e-6], busy=True), _row("torch", [9e-6, 10e-6, 11e-6])
    report.add_ratios([fast, torch])
    assert fast.withheld == "busy" and report._ratio_cell(fast) == "(busy)"
    report.add_ratios([fast, torch], ignore_load=True)
    assert fast.withheld == "" and report._ratio_cell(fast) == f"{10e-6 / fast.p50:.2f}x"


def test_targets_in_plain_words():
    rows = []
    for impl, p in (("fastnn[cpp]", 1e-3), ("torch", 2e-3), ("numpy", 3e-3)):
        rows.append(report.make_row("dense_relu", "forward+backward", (64, 256, 256), "float32", impl,
                                    "GFLOP/s", 6 * 64 * 256 * 256, 100.0, [p * 0.99, p, p * 1.01]))
    lines = targets.evaluate(rows)
    assert lines[0].startswith("fastnn's own performance goals") and "1 of 1 met" in lines[0]
    (line,) = [ln for ln in lines[1:] if "64, 256 -> 256" in ln]
    assert line.endswith("2.00x: met") and "1.50x as fast as torch" in line
    assert not any("T2" in ln or "issue" in ln.lower() for ln in lines)


def test_isa_levels_and_paths():
    assert _info.isa_level({"avx2", "fma", "f16c"}) == "AVX2"
    assert _info.isa_level({"avx2", "fma", "avx512f"}) == "AVX-512"
    assert _info.isa_level({"avx2", "fma", "avx512f", "avx512_bf16"}) == "AVX512-BF16"
    assert _info.isa_level({"sse4_2"}) == "baseline"
    lines = _info.describe_paths({"gemm": ("fastnn-avx512", 1 << 20), "gelu": "portable"})
    assert lines == ["matrix products: fastnn's own AVX-512 sgemm from 1,048,576 multiply-adds up, "
                     "OpenBLAS below (float64: OpenBLAS)", "gelu kernel: portable C++ (compiler-vectorized)"]
    assert _info.describe_paths({"gemm": ("openblas", 0)}) == ["matrix products: OpenBLAS"]
    # an AVX2 sgemm path (another ISA's kernel) reads the same way
    assert _info.describe_paths({"gemm": ("fastnn-avx2", 4096)})[0].startswith(
        "matrix products: fastnn's own AVX2 sgemm from 4,096 multiply-adds up")


def test_info_output(tmp_path):
    r = _run(["-m", "fastnn"], env={"FASTNN_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith(f"fastnn {fastnn.__version__} ")
    assert f"instruction set level: {_info.isa_level()}" in out
    # the backends of a fresh process (this one has the test suite's emulator registered)
    backends = json.loads(_run(["-c", "import fastnn, json; print(json.dumps(fastnn.backends()))"]).stdout)
    assert set(backends) >= {"cpp", "numba", "cupy"}
    for name, status in backends.items():
        assert f"  {name:6s} " + ("available" if status == "ok" else f"unavailable: {status}") in out
    assert f"framework extensions (cache: {tmp_path};" in out
    for target in ("torch", "tensorflow", "jax"):  # an empty cache: nothing built
        assert f"python -m fastnn build {target}" in out
    assert "python -m fastnn build all" in out
    d = _info.collect()
    assert d["threads"] == fastnn.num_threads() and d["isa"] == _info.isa_level()
    assert fastnn.info(return_string=True) == _info.format_info(_info.collect())


def _tiny_build(tmp_path, monkeypatch, body="int fastnn_test_answer() { return 42; }"):
    monkeypatch.setenv("FASTNN_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "t.cpp"
    src.write_text(f'extern "C" {body}\n')
    cmd = lambda out, cxx: [cxx, "-shared", "-fPIC", str(src), "-o", out]  # noqa: E731
    return lambda key="k|1": _extbuild.build("_t", [str(src)], cmd, key, "torch_native")


def test_build_message_and_cache_record(tmp_path, monkeypatch, capsys):
    build = _tiny_build(tmp_path, monkeypatch)
    with _extbuild.planned():
        planned = build()
    assert not os.path.exists(planned)  # planning compiles nothing
    assert capsys.readouterr().err == ""
    so = build()
    assert so == planned and os.path.exists(so)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "fastnn: building the torch extension (one time, ~20 s) ..."
    assert err[1].startswith("fastnn: built the torch extension in ") and err[1].endswith(
        f" s (cached in {os.path.dirname(so)})")
    import ctypes
    assert ctypes.CDLL(so).fastnn_test_answer() == 42
    assert build() == so and capsys.readouterr().err == ""  # cached: silent
    (entry,) = _extbuild.cached("torch_native")
    assert entry["path"] == so and entry["built_for"] == "k|1"


def test_build_failure_is_reported(tmp_path, monkeypatch, capsys):
    build = _tiny_build(tmp_path, monkeypatch, body="int broken( { }")
    with pytest.raises(RuntimeError, match="compiling .*t.cpp failed"):
        build()
    err = capsys.readouterr().err
    assert "fastnn: building the torch extension" in err and "failed after" in err
    assert _extbuild.cached("torch_native") == []  # nothing half-built is left


def test_build_command_arguments():
    r = _run(["-m", "fastnn", "build", "pytorch"])
    assert r.returncode == 2 and "invalid choice: 'pytorch'" in r.stderr
    with pytest.raises(ValueError, match="unknown extension 'x'; expected one of torch, tensorflow, jax"):
        _extbuild.extension("x")


@pytest.mark.slow
def test_build_torch_ahead_of_time(tmp_path):
    pytest.importorskip("torch")
    env = {"FASTNN_CACHE_DIR": str(tmp_path)}
    r = _run(["-m", "fastnn", "build", "torch"], env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    path = r.stdout.strip().split("torch: ", 1)[1]
    assert os.path.exists(path) and path.startswith(str(tmp_path / "torch_native"))
    assert "fastnn: building the torch extension (one time" in r.stderr
    # the same cache is what first use loads: fastnn.torch finds it and builds nothing
    r = _run(["-c", "import torch, fastnn.torch as ft; x = torch.ones(2, 3); "
                    "ft.functional.relu(x); from fastnn.torch import _native; print(_native.status())"],
             env=env)
    assert r.stdout.strip().endswith("ok") and "building" not in r.stderr, r.stderr
    info = _run(["-m", "fastnn"], env=env).stdout
    assert f"built (built for torch" in info and path in info


def test_load_lines():
    assert machine.load_lines(0.05, "at start") == [
        "load at start: quiet (other processes used 5% of the cores)"]
    (busy,) = machine.load_lines(0.8, "during the run", remeasured=False)
    assert busy.startswith("load during the run: BUSY: other processes used 80% of the cores.")
