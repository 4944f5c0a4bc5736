"""Replays the fuzzer's saved inputs (fuzz/corpus: its coverage corpus; fuzz/regressions:
inputs that ever made it fail) through its harness: each must return or raise only the
documented ValueError / TypeError (the harness swallows those; anything else fails here)."""
import glob
import os
import sys

import pytest

atheris = pytest.importorskip("atheris")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "fuzz"))
import fuzz_api  # noqa: E402

FILES = sorted(glob.glob(os.path.join(ROOT, "fuzz", "corpus", "*")) +
               [f for f in glob.glob(os.path.join(ROOT, "fuzz", "regressions", "*")) if not f.endswith(".md")])


def test_saved_inputs_exist():
    assert len(FILES) >= 50, "fuzz/corpus is missing"


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_saved_input(path):
    with open(path, "rb") as f:
        fuzz_api.one_input(f.read())
