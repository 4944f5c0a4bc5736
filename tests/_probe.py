"""Run a tests_keras probe script in a fresh process (one Keras backend, its own device
flags) and return the JSON object it prints: the distributed tests' one runner."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_probe(script, keras_backend, **env):
    """tests_keras/<script> under KERAS_BACKEND=keras_backend plus `env`; fails the test
    with the probe's stderr when it exits non-zero."""
    full = dict(os.environ, KERAS_BACKEND=keras_backend, TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **env)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests_keras", script)], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{script} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    return json.loads(proc.stdout)
