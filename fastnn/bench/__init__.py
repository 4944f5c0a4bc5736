"""fastnn.bench: fastnn's kernels timed against torch (and numpy) on this machine.

    python -m fastnn.bench --quick          # the short run: fastnn vs torch
    python -m fastnn.bench --json run.json  # the full run, saved
    python -m fastnn.bench compare old.json run.json

Layout (one module per op family, as in the rest of fastnn):
    machine.py     CPU, versions, commit, load, and the ceilings (numpy gemm, threaded copy)
    timing.py      Case/Impl, the correctness check, interleaved timing, progress lines
    impls.py       which implementations exist here, and which process group each runs in
    procs.py       each library alone in its own processes, alternated (worker.py: one)
    mixed.py       fastnn called right after torch in one process
    dense.py       dense_relu forward and forward+backward       (GFLOP/s)
    activation.py  relu, gelu, sigmoid, silu, tanh, softplus      (GB/s)
    softmax.py     softmax, log_softmax forward+backward          (GB/s)
    loss.py        cross_entropy, mse, bce_with_logits fwd+bwd    (GB/s)
    dense_ce.py    fused Dense + cross-entropy                    (GFLOP/s)
    mlp.py         one MLP training step, stock vs patched torch  (GFLOP/s)
    threads.py     fastnn[cpp] with 1 vs 2 threads                (GB/s)
    report.py      plain-words labels, ratios (withheld when busy or noisy), table, CSV, JSON
    compare.py     two --json runs side by side
    targets.py     the project's own performance goals (--targets)
    plot.py        --plot (matplotlib)
    pytest_support.py  the glue for bench/test_bench_*.py (pytest-benchmark)
    cli.py         the command line
A new op family is a module with `specs(quick)` and `make_case(spec, dtype, fw)`,
listed in cli.FAMILIES.
"""


def main(argv=None):
    """Run the benchmark with command-line arguments `argv`; returns the exit status."""
    from .cli import main as _main
    return _main(argv)
