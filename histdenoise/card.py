"""What a model is, as data: the shape of its network (`NetworkConfig`) and its model card
(`ModelCard`), read and written as JSON.

Every loader, exporter, backend and report uses these. This module must not import
TensorFlow, Keras or onnxruntime: the ONNX backend reads cards where neither is installed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from histdenoise.errors import check_keys
from histdenoise.stft import StftConfig

CARD_NAME = "model.json"
"""File name of the model card in a native checkpoint folder and beside an export."""
WEIGHTS_NAME = "model.weights.h5"
"""File name of the Keras 3 weights in a native checkpoint folder."""
FORMAT_VERSION = 1
"""Version of the native checkpoint format a card describes."""

FREQ_BINS = 1025
"""Frequency bins of the 2048-point STFT the network expects."""


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of a two-stage U-Net.

    Attributes:
        channels: filters per level, ``channels[i]`` for encoder level ``i`` and
            ``channels[depth]`` for the bottleneck; at least ``depth + 1`` entries.
            ``channels[0]`` is also the width of the stems and the attention module.
            Longer lists are cut to ``depth + 1`` entries.
        depth: number of down-sampling levels per stage.
        dense_layers: 3x3 convolutions in each dense block.
        freq_encodings: cosine frequency-position channels appended to the input.
        freq_bins: frequency bins of the input spectrogram.
    """

    channels: tuple[int, ...] = (32, 64, 64, 128, 128, 256, 512)
    depth: int = 6
    dense_layers: int = 3
    freq_encodings: int = 10
    freq_bins: int = FREQ_BINS

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if len(self.channels) < self.depth + 1:
            raise ValueError(
                f"channels needs depth + 1 = {self.depth + 1} entries, got {self.channels}"
            )
        if self.dense_layers < 1:
            raise ValueError(f"dense_layers must be >= 1, got {self.dense_layers}")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive, got {self.channels}")
        # Only depth + 1 entries are used: keep the config canonical.
        object.__setattr__(self, "channels", self.channels[: self.depth + 1])

    @classmethod
    def paper(cls) -> NetworkConfig:
        """The published configuration: 71,408,196 parameters."""
        return cls()

    @classmethod
    def small(cls) -> NetworkConfig:
        """The reference test configuration: depth 2, 2 layers per dense block."""
        return cls(depth=2, dense_layers=2)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetworkConfig:
        check_keys("network config fields", d, cls.__dataclass_fields__)
        return cls(**d)


@dataclass
class ModelCard:
    """What a model is: enough to rebuild, verify and cite it.

    Attributes:
        name: short model name (``bundled``, ``moliner2022``).
        config: network shape; None only in a card that does not say (an ONNX export made
            elsewhere), where the graph itself is the model.
        stft: STFT the network was trained with.
        description: one paragraph for people.
        licence: SPDX identifier of the weights' licence.
        source: where the weights come from (converted file, training run).
        training: data and settings of training (free-form).
        training_pieces: the pieces of its training split, as `histdenoise.training.data.piece_key`
            names them (corpus ``source``, e.g. ``music21:haydn/opus1no1/movement2.mxl``, or
            piece name); `histdenoise.training.evaluate.evaluate` warns when a test set uses any.
        metrics: measured quality (free-form, with units in the keys).
        weights_sha256: sha256 of ``model.weights.h5`` (checked on load), or of the weights
            an export was made from.
        software: versions that wrote the checkpoint.
        created: ISO 8601 UTC time of writing.
    """

    name: str
    config: NetworkConfig | None
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
        d["config"] = self.config.to_dict() if self.config is not None else None
        d["stft"] = self.stft.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        """Build from a card dictionary (as in ``model.json``). Keys this card does not
        know (an export's ``"export"`` record) are left out.

        Raises:
            ValueError, TypeError, KeyError: ``d`` is not a model card.
        """
        if not isinstance(d, dict) or "name" not in d:
            raise ValueError("not a model card (no 'name')")
        d = dict(d)
        config = d.get("config")
        d["config"] = NetworkConfig.from_dict(config) if config is not None else None
        d["stft"] = StftConfig.from_dict(d.get("stft") or {})
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def card_path(path: str | Path) -> Path:
    """The card file of a model folder (``path/model.json``), or ``path`` itself."""
    path = Path(path)
    return path / CARD_NAME if path.is_dir() else path


def parse_card(text: str) -> ModelCard:
    """A card from its JSON text.

    Raises:
        ValueError, TypeError, KeyError: not a model card.
    """
    return ModelCard.from_dict(json.loads(text))


class LoadedModel(NamedTuple):
    """A loaded network and its card, carried side by side (nothing is attached to the
    network object).

    Attributes:
        network: the network: a ``keras.Model`` with outputs ``(stage2, stage1)``.
        card: its model card.
    """

    network: Any
    card: ModelCard


__all__ = [
    "CARD_NAME",
    "FORMAT_VERSION",
    "FREQ_BINS",
    "WEIGHTS_NAME",
    "LoadedModel",
    "ModelCard",
    "NetworkConfig",
    "card_path",
    "parse_card",
]
