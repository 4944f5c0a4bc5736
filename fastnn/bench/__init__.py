"""fastnn.bench: fastnn's kernels timed against torch and numpy on this machine.

    python -m fastnn.bench --quick          # well under a minute
    python -m fastnn.bench --csv bench/results/fastnn_bench.csv

Layout (one module per op family, as in the rest of fastnn):
    machine.py     CPU, versions, commit, and the ceilings (numpy gemm, np.copyto)
    timing.py      Case/Impl, the correctness check, interleaved timing, progress bar
    impls.py       which implementations exist here (fastnn CPU backends, torch)
    dense.py       dense_relu forward and forward+backward       (GFLOP/s)
    activation.py  gelu (or relu) forward and backward            (GB/s)
    loss.py        cross_entropy forward and forward+backward     (GB/s)
    report.py      the table and the CSV rows
    cli.py         the command line
A new op family is a module with `specs(quick)` and `make_case(spec, dtype, fw)`,
listed in cli.plan().
"""


def main(argv=None):
    """Run the benchmark with command-line arguments `argv`; returns the exit status."""
    from .cli import main as _main
    return _main(argv)
