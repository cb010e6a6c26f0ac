"""Shared fixtures: reference data, an isolated cache, a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.httpserver import ModelServer

REPO = Path(__file__).resolve().parent.parent
# Vendored from the project's shared reference data (see tests/reference/README.md):
# no test reads anything outside the repository.
REFERENCE = REPO / "tests" / "reference"
SMALL_CKPT = REFERENCE / "small_checkpoint"


@pytest.fixture(scope="session")
def reference() -> Path:
    assert (SMALL_CKPT / "checkpoint.index").is_file(), f"reference data missing: {REFERENCE}"
    return REFERENCE


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own cache and the shipped registry."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("HISTDENOISE_HOME", str(cache))
    monkeypatch.delenv("HISTDENOISE_REGISTRY", raising=False)
    return cache


@pytest.fixture(scope="session")
def small_zip_bytes(reference) -> bytes:
    """The small reference checkpoint packed like the published ``checkpoint.zip``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in ("checkpoint", "checkpoint.index", "checkpoint.data-00000-of-00001"):
            zf.write(SMALL_CKPT / name, f"trained_model/{name}")
    return buf.getvalue()


@pytest.fixture(scope="session")
def small_model(reference):
    from histdenoise import load_network

    return load_network(SMALL_CKPT)


@pytest.fixture
def server():
    with ModelServer() as srv:
        yield srv


SENTINEL_CONFIG = {"channels": (4, 8, 8), "depth": 2, "dense_layers": 1}


@pytest.fixture(scope="session")
def sentinel(tmp_path_factory) -> Path:
    """A tiny native model with seeded random weights: fast plumbing for every test."""
    import numpy as np

    from histdenoise.card import ModelCard
    from histdenoise.model.native import save_native
    from histdenoise.model.network import NetworkConfig, build_network, checkpoint_variables

    config = NetworkConfig(**SENTINEL_CONFIG)
    model = build_network(config)
    rng = np.random.default_rng(0)
    for var in checkpoint_variables(model).values():
        var.assign(rng.standard_normal(var.shape).astype("float32") * 0.05)
    folder = tmp_path_factory.mktemp("models") / "sentinel"
    return save_native(model, folder, ModelCard(name="sentinel", config=config, licence="MIT"))


@pytest.fixture(scope="session")
def identity_model():
    """A 'network' whose stage-2 output equals its input."""
    import keras

    x = keras.Input((None, 1025, 2))
    return keras.Model(x, [x, x], name="identity")


@pytest.fixture(scope="session")
def sentinel_onnx(sentinel, tmp_path_factory) -> Path:
    """The sentinel model exported to ONNX: a folder with model.onnx and model.json."""
    from histdenoise.model.export import export_model

    return export_model(sentinel, tmp_path_factory.mktemp("exports") / "sentinel-onnx")
