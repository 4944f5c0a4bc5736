"""Run fastnn.bench from a checkout and append its rows to bench/results/.

    python bench/run.py --quick             # same as python -m fastnn.bench --quick,
                                            # plus --csv bench/results/fastnn_bench.csv
    python bench/run.py --csv other.csv     # an explicit --csv wins

Every option of `python -m fastnn.bench --help` is passed through.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CSV = os.path.join(ROOT, "bench", "results", "fastnn_bench.csv")


def main(argv):
    if not any(a == "--csv" or a.startswith("--csv=") for a in argv):
        argv = [*argv, "--csv", DEFAULT_CSV]
    sys.path.insert(0, ROOT)  # the in-place build, when fastnn is not installed
    from fastnn.bench import main as bench_main
    return bench_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
