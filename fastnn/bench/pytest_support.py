"""The glue between fastnn.bench's cases and pytest-benchmark (bench/test_bench_*.py).

Each microbenchmark is one (family, spec, implementation): the case is built by the
same make_case as `python -m fastnn.bench` (same inputs, same float64 numpy
reference), the implementation is checked against that reference, and only then
timed by pytest-benchmark's `benchmark` fixture. Benchmarks of one (op, mode, shape)
share a group, so pytest-benchmark's table compares them side by side.
"""

import functools

from . import impls, report, timing

DTYPE = "float32"


@functools.lru_cache(maxsize=1)
def frameworks():
    fw = impls.load()
    fw.compile = False  # compile rows belong to the runner: seconds to build each
    return fw


def impl_names():
    """The implementations a case has here: fastnn per CPU backend, torch, numpy."""
    fw = frameworks()
    names = [n for n, _ in fw.fastnn_impls()] if fw.fastnn is not None else []
    if fw.torch is not None:
        names.append("torch")
    return names + ["numpy"]


def params(specs, names=None):
    """[(spec, impl name)] in spec order, so that each case is built once (the cache
    below keeps the last one), with readable ids."""
    import pytest
    names = names or impl_names()
    return [pytest.param(s, n, id=f"{s[0]}-{s[1]}-{report.shape_str(s[2])}-{n}")
            for s in specs for n in names]


@functools.lru_cache(maxsize=1)
def _case(family, spec):
    return family.make_case(spec, DTYPE, frameworks())


def run(benchmark, family, spec, impl_name):
    """Check `impl_name` of `spec` against the float64 reference, then time it."""
    import pytest
    case = _case(family, spec)
    impl = next((i for i in case.impls if i.name == impl_name), None)
    if impl is None:
        pytest.skip(f"{impl_name} has no {spec[0]} {spec[1]} implementation here")
    single = timing.Case(**{**case.__dict__, "impls": [impl]})
    timing.check(single)
    assert impl.error is None, f"{impl_name} {spec}: {impl.error}"
    benchmark.group = f"{spec[0]} {spec[1]} {report.shape_str(spec[2])} ({case.unit})"
    benchmark.extra_info.update(work=case.work, unit=case.unit)
    with impl.context():
        benchmark(impl.fn)
