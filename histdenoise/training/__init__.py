"""Training the network: simulated 78 rpm noise (`degradations`), real noise recordings
(`noise_folders`), music to train on (`corpus` reads a corpus folder, `render` makes one
from scores), clean/noisy pairs in batches (`data`), the training loop (`trainer`),
held-out test sets (`testsets`) and scoring on them (`evaluate`).

Needs TensorFlow or another Keras backend (the trainer) and the ``training`` extra. The
runtime core (`histdenoise.denoiser`, `histdenoise.cli`, ...) must not import this
package at module level. ``from histdenoise.training import TrainConfig`` works as it
did when training was one module: the trainer's names are loaded on first use.
"""

from __future__ import annotations

import importlib

_TRAINER = (
    "POLICIES",
    "TrainConfig",
    "Trainer",
    "learning_rate_at",
    "make_strategy",
    "read_history",
    "spectrogram_loss",
    "train",
)

__all__ = list(_TRAINER)


def __getattr__(name: str):
    if name in _TRAINER:
        return getattr(importlib.import_module("histdenoise.training.trainer"), name)
    raise AttributeError(f"module 'histdenoise.training' has no attribute {name!r}")
