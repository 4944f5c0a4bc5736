"""fastnn.bench: fastnn's kernels timed against torch and numpy on this machine.

    python -m fastnn.bench --quick          # under a minute
    python -m fastnn.bench --csv bench/results/cpu_zen4.csv --plot bench/results/cpu_zen4.png

Layout (one module per op family, as in the rest of fastnn):
    machine.py     CPU, versions, commit, and the ceilings (numpy gemm, np.copyto)
    timing.py      Case/Impl, the correctness check, interleaved timing, progress bar
    impls.py       which implementations exist here (fastnn CPU backends, fastnn
                   with its output cache off, torch, torch.compile)
    dense.py       dense_relu forward and forward+backward       (GFLOP/s)
    activation.py  relu, gelu, sigmoid, silu, tanh, softplus      (GB/s)
    softmax.py     softmax, log_softmax forward+backward          (GB/s)
    loss.py        cross_entropy, mse, bce_with_logits fwd+bwd    (GB/s)
    dense_ce.py    fused Dense + cross-entropy                    (GFLOP/s)
    mlp.py         one MLP training step, stock vs patched torch  (GFLOP/s)
    threads.py     fastnn[cpp] with 1 vs 2 threads                (GB/s)
    report.py      the table and the CSV rows
    targets.py     issue 6's targets checked against the rows
    plot.py        --plot (matplotlib)
    pytest_support.py  the glue for bench/test_bench_*.py (pytest-benchmark)
    cli.py         the command line
A new op family is a module with `specs(quick)` and `make_case(spec, dtype, fw)`,
listed in cli.plan().
"""


def main(argv=None):
    """Run the benchmark with command-line arguments `argv`; returns the exit status."""
    from .cli import main as _main
    return _main(argv)
