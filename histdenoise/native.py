"""histdenoise's own checkpoint format: a folder with a Keras 3 weights file and a model card.

Layout of a native checkpoint folder::

    model.json          the model card (`ModelCard`): config, STFT, provenance, sha256
    model.weights.h5    Keras 3 weights of the network built from the card's config
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

from histdenoise.errors import CheckpointError
from histdenoise.files import atomic_folder, sha256_file
from histdenoise.network import NetworkConfig, build_network
from histdenoise.stft import StftConfig

CARD_NAME = "model.json"
WEIGHTS_NAME = "model.weights.h5"
FORMAT_VERSION = 1


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


@dataclass
class ModelCard:
    """What a native checkpoint is: enough to rebuild, verify and cite it.

    Attributes:
        name: short model name (``bundled``, ``moliner2022``).
        config: network shape.
        stft: STFT the network was trained with.
        description: one paragraph for people.
        licence: SPDX identifier of the weights' licence.
        source: where the weights come from (converted file, training run).
        training: data and settings of training (free-form).
        training_pieces: the pieces of its training split, as `histdenoise.data.piece_key`
            names them (corpus ``source``, e.g. ``music21:haydn/opus1no1/movement2.mxl``, or
            piece name); `histdenoise.evaluate.evaluate` warns when a test set uses any.
        metrics: measured quality (free-form, with units in the keys).
        weights_sha256: sha256 of ``model.weights.h5``; checked on load.
        software: versions that wrote the checkpoint.
        created: ISO 8601 UTC time of writing.
    """

    name: str
    config: NetworkConfig
    stft: StftConfig = field(default_factory=StftConfig)
    description: str = ""
    licence: str = ""
    source: str = ""
    training: dict = field(default_factory=dict)
    training_pieces: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    software: dict = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["stft"] = self.stft.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        d = dict(d)
        d["config"] = NetworkConfig.from_dict(d["config"])
        d["stft"] = StftConfig.from_dict(d.get("stft", {}))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


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
    path = Path(path)
    card_path = path / CARD_NAME if path.is_dir() else path
    try:
        return ModelCard.from_dict(json.loads(card_path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CheckpointError(f"{card_path}: no model card") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{card_path}: invalid model card ({exc})") from None


def is_native(path: str | Path) -> bool:
    """True for a native checkpoint folder or its card / weights file."""
    path = Path(path)
    if path.is_dir():
        return (path / CARD_NAME).is_file()
    return path.name in (CARD_NAME, WEIGHTS_NAME) and (path.parent / CARD_NAME).is_file()


def load_native(path: str | Path, verify: bool = True) -> tuple[keras.Model, ModelCard]:
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
    model.histdenoise_card = card
    return model, card
