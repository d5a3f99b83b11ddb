"""Every binary in `experiments/` imports beside every other one (no flag defined twice)."""

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = """
import importlib, pkgutil
import experiments
from absl import flags
names = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__))
for name in names:
    importlib.import_module("experiments." + name)
print(len(names), "binaries,", len(list(flags.FLAGS)), "flags")
"""


def test_every_binary_imports_in_one_process():
    # A fresh process: the order of the test run must not hide a duplicate definition.
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    count = len(
        [n for n in os.listdir(os.path.join(REPO_ROOT, "experiments")) if n.endswith(".py")]
    )
    assert out.stdout.split()[0] == str(count - 1)  # Every module but __init__.py.
