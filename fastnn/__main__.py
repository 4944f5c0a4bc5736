"""`python -m fastnn`: what this installation runs, and building its framework extensions.

    python -m fastnn                      # version, backends, CPU level, paths, extensions
    python -m fastnn info --check         # the same, checking each extension exactly
    python -m fastnn build all            # build the torch / TensorFlow / jax extensions now
    python -m fastnn build torch jax      # some of them

The extensions are otherwise built on first use; `build` puts them in the same cache
($FASTNN_CACHE_DIR, default ~/.cache/fastnn), so a Docker image or a CI job can build
them once. A framework that is not installed is skipped with a line saying so.
"""
import argparse
import sys
from typing import List, Optional


def _build(targets: List[str]) -> int:
    import importlib.util

    from . import _extbuild

    names = [e.target for e in _extbuild.EXTENSIONS]
    wanted = names if "all" in targets else targets
    failed = 0
    for target in wanted:
        ext = _extbuild.extension(target)
        if importlib.util.find_spec(ext.framework) is None:
            print(f"{target}: skipped, {ext.framework} is not installed")
            if "all" not in targets:
                failed += 1
            continue
        try:
            path = _extbuild.build_ahead(target)
        except Exception as e:  # noqa: BLE001 - one failed build does not stop the others
            print(f"{target}: FAILED: {type(e).__name__}: {e}")
            failed += 1
            continue
        print(f"{target}: {path}")
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    from . import _extbuild

    names = [e.target for e in _extbuild.EXTENSIONS]
    p = argparse.ArgumentParser(prog="python -m fastnn",
                                description="What this installation runs, and building its framework extensions.")
    sub = p.add_subparsers(dest="command")
    i = sub.add_parser("info", help="what this installation runs (the default)")
    i.add_argument("--check", action="store_true",
                   help="import each installed framework to check its extension exactly (slower)")
    b = sub.add_parser("build", help="build framework extensions ahead of time into the cache")
    b.add_argument("targets", nargs="+", choices=names + ["all"], metavar="{" + ",".join(names) + ",all}")
    args = p.parse_args(argv)
    if args.command == "build":
        return _build(args.targets)
    from ._info import info

    info(check=getattr(args, "check", False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
