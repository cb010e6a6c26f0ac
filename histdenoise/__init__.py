"""histdenoise: remove hiss, clicks, crackle, thumps, hum and rumble from historical music.

The two-stage U-Net of Moliner & Välimäki (ICASSP 2022) on current TensorFlow and Keras 3.
Heavy modules (TensorFlow) are imported only when first used.

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import importlib

from histdenoise import _moved

__version__ = "0.1.0"

_moved.install()  # ``import histdenoise.network`` and the other flat paths of before

_LAZY = {
    "load_network": "histdenoise.model.loading",
    "load_model": "histdenoise.model.loading",
    "LoadedModel": "histdenoise.card",
    "NetworkConfig": "histdenoise.model.network",
    "build_network": "histdenoise.model.network",
    "ModelCard": "histdenoise.card",
    "save_native": "histdenoise.model.native",
    "load_native": "histdenoise.model.native",
    "DEFAULT_MODEL": "histdenoise.registry",
    "list_models": "histdenoise.registry",
    "cache_dir": "histdenoise.registry",
    "ensure_model": "histdenoise.download",
    "HistdenoiseError": "histdenoise.errors",
    "Denoiser": "histdenoise.denoiser",
    "DenoiseConfig": "histdenoise.denoiser",
    "DenoiseSettings": "histdenoise.denoiser",
    "export_model": "histdenoise.model.export",
    "OnnxNetwork": "histdenoise.onnx_backend",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'histdenoise' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
