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
REFERENCE = REPO.parent / "shared" / "reference"
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
