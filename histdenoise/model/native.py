"""histdenoise's own checkpoint format: a folder with a Keras 3 weights file and a model card.

Layout of a native checkpoint folder::

    model.json          the model card (`histdenoise.card.ModelCard`): config, STFT,
                        provenance, sha256
    model.weights.h5    Keras 3 weights of the network built from the card's config

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path

import keras

from histdenoise.card import (
    CARD_NAME,
    WEIGHTS_NAME,
    LoadedModel,
    ModelCard,
    card_path,
    parse_card,
)
from histdenoise.errors import CheckpointError
from histdenoise.files import atomic_folder, sha256_file
from histdenoise.model.network import build_network


def software_versions() -> dict[str, str]:
    """Versions of the software that wrote a checkpoint: histdenoise, Keras and its
    backend (``keras_backend``, and that framework's version), NumPy, Python."""
    import importlib

    import numpy as np

    from histdenoise import __version__

    backend = keras.backend.backend()
    module = {"torch": "torch"}.get(backend, backend)
    return {
        "histdenoise": __version__,
        "keras": keras.__version__,
        "keras_backend": backend,
        backend: importlib.import_module(module).__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_native(
    model: keras.Model, directory: str | Path, card: ModelCard, overwrite: bool = False
) -> Path:
    """Write ``model`` and its card to ``directory`` atomically.

    The folder is assembled under a temporary name beside ``directory`` and renamed when
    complete, so a crash leaves no half-written checkpoint. Fills in ``weights_sha256``,
    ``software`` and ``created`` of the card (a copy is written; ``card`` is updated too).
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise CheckpointError(f"{directory}: already exists (pass overwrite=True to replace it)")
    with atomic_folder(directory) as tmp:
        model.save_weights(tmp / WEIGHTS_NAME)
        card.weights_sha256 = sha256_file(tmp / WEIGHTS_NAME)
        card.software = software_versions()
        card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        (tmp / CARD_NAME).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    return directory


def read_card(path: str | Path) -> ModelCard:
    """The model card of a native checkpoint folder (or of its ``model.json``)."""
    where = card_path(path)
    try:
        card = parse_card(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{where}: no model card") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: invalid model card ({exc})") from None
    if card.config is None:
        raise CheckpointError(f"{where}: invalid model card ('config')")
    return card


def is_native(path: str | Path) -> bool:
    """True for a native checkpoint folder or its card / weights file."""
    path = Path(path)
    if path.is_dir():
        return (path / CARD_NAME).is_file()
    return path.name in (CARD_NAME, WEIGHTS_NAME) and (path.parent / CARD_NAME).is_file()


def load_native(path: str | Path, verify: bool = True) -> LoadedModel:
    """Load a native checkpoint; checks the weights' sha256 against the card.

    Returns:
        The network (outputs ``(stage2, stage1)``) and its card.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    card = read_card(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file missing")
    if verify and card.weights_sha256:
        actual = sha256_file(weights)
        if actual != card.weights_sha256:
            raise CheckpointError(
                f"{weights}: sha256 {actual[:12]}... does not match the model card "
                f"({card.weights_sha256[:12]}...); the file is corrupted or was replaced"
            )
    model = build_network(card.config)
    try:
        model.load_weights(weights)
    except Exception as exc:
        raise CheckpointError(f"{weights}: cannot load weights ({exc})") from None
    return LoadedModel(model, card)
