"""The package layout: the runtime core denoises without TensorFlow or Keras.

Every module directly in ``histdenoise/`` (and the notebook helpers) is runtime core;
``histdenoise/model/`` and ``histdenoise/training/`` hold what needs Keras.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

FLAT = sorted(p.stem for p in (REPO / "histdenoise").glob("*.py") if p.stem != "__main__")
"""The runtime core: the modules directly in histdenoise/."""
CORE = [f"histdenoise.{m}" for m in FLAT] + [
    "histdenoise",
    "histdenoise.model",
    "histdenoise.training",
    "histdenoise.notebook",
    "histdenoise.notebook.app",
    "histdenoise.notebook.widgets",
]
"""Modules and packages that must import without TensorFlow or Keras."""

HEAVY = ("tensorflow", "keras", "jax", "torch")

CHECK = """
import importlib, sys
importlib.import_module({module!r})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(",".join(heavy))
"""


def test_the_core_is_every_flat_module():
    assert {"audio", "stft", "engine", "denoiser", "registry", "download", "onnx_backend",
            "cli", "card", "runner", "errors", "files"} <= set(FLAT)
    assert not {"network", "training", "export", "loading", "native", "corpus"} & set(FLAT)


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_tensorflow_or_keras(module):
    proc = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module, heavy=HEAVY)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"{module} imports {proc.stdout.strip()} at module level"


def test_config_dataclasses_are_named_config_and_old_public_names_still_work():
    import dataclasses
    import importlib

    import histdenoise

    assert histdenoise.DenoiseSettings is histdenoise.DenoiseConfig  # the earlier public name
    for module in ("denoiser", "download", "engine", "stft", "card"):
        mod = importlib.import_module(f"histdenoise.{module}")
        names = [n for n, v in vars(mod).items()
                 if isinstance(v, type) and dataclasses.is_dataclass(v)
                 and v.__module__ == mod.__name__ and v.__name__ == n]
        assert not [n for n in names if n.endswith(("Settings", "Options"))], module


OLD_PATHS = """
import importlib, warnings
from histdenoise._moved import MOVED
warnings.simplefilter("always")
for old, new in MOVED.items():
    with warnings.catch_warnings(record=True) as caught:
        module = importlib.import_module(old)
    assert module is importlib.import_module(new), old
    assert [str(w.message).split(";")[0] for w in caught if w.category is FutureWarning] \\
        == [f"{old} moved to {new}"], (old, [str(w.message) for w in caught])
from histdenoise.network import build_network  # the form notebooks used
from histdenoise.model.network import build_network as now
assert build_network is now
print(len(MOVED))
"""


def test_module_paths_from_before_the_restructuring_still_import():
    # Notebooks written for the flat layout (histdenoise.network, .plotting, .data, ...)
    # get the module at its new path, the same object, with a FutureWarning naming it.
    proc = subprocess.run([sys.executable, "-c", OLD_PATHS], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "12"
    proc = subprocess.run([sys.executable, "-c", "import histdenoise.no_such_module"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "No module named 'histdenoise.no_such_module'" in proc.stderr
