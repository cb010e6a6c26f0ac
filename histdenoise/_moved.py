"""Module paths from before the 2026-11 restructuring, kept importable.

``import histdenoise.network`` (and the other flat paths below) gives the module at its
new path, the same object, with a FutureWarning naming that path, so notebooks written
for the flat layout keep running. `install` puts the finder on ``sys.meta_path``, after
the normal finders, which look first: it only answers for the names in `MOVED`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "histdenoise.export": "histdenoise.model.export",
    "histdenoise.introspect": "histdenoise.model.introspect",
    "histdenoise.loading": "histdenoise.model.loading",
    "histdenoise.native": "histdenoise.model.native",
    "histdenoise.network": "histdenoise.model.network",
    "histdenoise.onnx_graph": "histdenoise.model.onnx_graph",
    "histdenoise.tf_checkpoint": "histdenoise.model.tf_checkpoint",
    "histdenoise.plotting": "histdenoise.notebook.plotting",
    "histdenoise.corpus": "histdenoise.training.corpus",
    "histdenoise.data": "histdenoise.training.data",
    "histdenoise.degradations": "histdenoise.training.degradations",
    "histdenoise.evaluate": "histdenoise.training.evaluate",
}
"""Old module name -> where it lives now."""


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module at its new path (no second copy)."""

    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {self.new}; import it from there (the old path will "
            "go in a later release)",
            FutureWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module) -> None:
        pass  # already executed under its new name


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the names of `MOVED`; None for everything else."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Append a `MovedFinder` to ``sys.meta_path`` unless one is there."""
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedFinder())
