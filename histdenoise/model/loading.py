"""`load_model` and `load_network`: one entry point for every kind of checkpoint.

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from histdenoise.card import CARD_NAME, LoadedModel, ModelCard
from histdenoise.download import DownloadConfig, ensure_model
from histdenoise.errors import CheckpointError
from histdenoise.files import atomic_folder, sha256_file, sha256_files
from histdenoise.model.native import is_native, load_native
from histdenoise.model.network import network_config
from histdenoise.model.tf_checkpoint import find_prefix, load_tf_checkpoint
from histdenoise.registry import ModelEntry, cache_dir, get_model


def load_network(
    source: str | os.PathLike | keras.Model,
    *,
    cache: str | Path | None = None,
    registry: str | Path | None = None,
    options: DownloadConfig | None = None,
) -> keras.Model:
    """Load the two-stage U-Net from wherever its weights are (`load_model` without the
    card).

    Returns:
        A Keras model mapping (batch, frames, 1025, 2) to ``(stage2, stage1)``.
    """
    return load_model(source, cache=cache, registry=registry, options=options).network


def load_model(
    source: str | os.PathLike | keras.Model | LoadedModel,
    *,
    cache: str | Path | None = None,
    registry: str | Path | None = None,
    options: DownloadConfig | None = None,
) -> LoadedModel:
    """Load the two-stage U-Net and its model card from wherever its weights are.

    Args:
        source: a registry name (``"moliner2022"``; downloaded and cached on first use),
            a TF checkpoint prefix (``.../checkpoint``), its ``.index`` file, a folder
            holding one, the release zip (``checkpoint.zip``), a native histdenoise
            checkpoint folder (or its ``model.json``), an already built model (its card
            then has the model's name and the config read from its weights), or a
            `LoadedModel` (returned as it is).
        cache: cache folder; `histdenoise.registry.cache_dir()` when omitted.
        registry: registry file; the shipped one (or ``$HISTDENOISE_REGISTRY``) when omitted.
        options: download settings.

    Returns:
        ``(network, card)``: a Keras model mapping (batch, frames, 1025, 2) to
        ``(stage2, stage1)``, and its `ModelCard`.
    """
    if isinstance(source, LoadedModel):
        return source
    if isinstance(source, keras.Model):
        name = getattr(source, "name", "custom")
        return LoadedModel(source, ModelCard(name=name, config=network_config(source)))
    cache = Path(cache) if cache else None
    path = Path(os.fspath(source)).expanduser()
    if path.exists() or find_prefix(path) is not None:
        return _load_path(path, cache=cache)
    text = os.fspath(source)
    if os.sep in text or "/" in text or path.suffix:
        raise CheckpointError(f"{text}: no such file or folder")
    entry = get_model(text, registry)
    folder = ensure_model(entry, cache, options=options)
    loaded = _load_path(folder, cache=cache)
    _describe_from_registry(loaded.card, entry)
    return loaded


def _load_path(path: Path, cache: Path | None) -> LoadedModel:
    if path.is_file() and path.suffix.lower() == ".zip":
        path = _unpack_zip(path, cache or cache_dir())
    if is_native(path):
        return load_native(path)
    prefix = find_prefix(path)
    if prefix is None:
        raise CheckpointError(
            f"{path}: not a checkpoint (expected a TF checkpoint prefix or folder, "
            "checkpoint.zip, or a histdenoise model folder with model.json)"
        )
    network = load_tf_checkpoint(prefix)
    card = ModelCard(
        name=prefix.parent.name if prefix.name == "checkpoint" else prefix.name,
        config=network_config(network),
        source=str(prefix),
        weights_sha256=_sha256_data(prefix),
    )
    return LoadedModel(network, card)


def _sha256_data(prefix: Path) -> str:
    """sha256 over a TF checkpoint's data shards, in name order."""
    return sha256_files(sorted(prefix.parent.glob(f"{prefix.name}.data-*")))


def _unpack_zip(archive: Path, cache: Path) -> Path:
    """Unpack a checkpoint zip once into the cache, keyed by its content hash."""
    digest = sha256_file(archive)[:16]
    target = cache / "archives" / digest
    if target.is_dir():
        return _checkpoint_root(target)
    try:
        with atomic_folder(target) as tmp, zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"{archive}: not a readable zip ({exc})") from None
    return _checkpoint_root(target)


def _checkpoint_root(folder: Path) -> Path:
    """The folder inside an unpacked archive that holds the checkpoint."""
    for card in sorted(folder.rglob(CARD_NAME)):
        return card.parent
    for index in sorted(folder.rglob("*.index")):
        return index.parent
    return folder


def _describe_from_registry(card: ModelCard, entry: ModelEntry) -> None:
    card.name = entry.name
    card.description = card.description or entry.description
    card.licence = card.licence or entry.licence
