"""`load_network`: one entry point for every kind of checkpoint."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from histdenoise.download import DownloadOptions, ensure_model
from histdenoise.errors import CheckpointError
from histdenoise.files import atomic_folder, sha256_file, sha256_files
from histdenoise.native import ModelCard, is_native, load_native
from histdenoise.registry import ModelEntry, cache_dir, get_model
from histdenoise.tf_checkpoint import find_prefix, load_tf_checkpoint


def load_network(
    source: str | os.PathLike | keras.Model,
    *,
    cache: str | Path | None = None,
    registry: str | Path | None = None,
    options: DownloadOptions | None = None,
) -> keras.Model:
    """Load the two-stage U-Net from wherever its weights are.

    Args:
        source: a registry name (``"moliner2022"``; downloaded and cached on first use),
            a TF checkpoint prefix (``.../checkpoint``), its ``.index`` file, a folder
            holding one, the release zip (``checkpoint.zip``), a native histdenoise
            checkpoint folder (or its ``model.json``), or an already built model.
        cache: cache folder; `histdenoise.registry.cache_dir()` when omitted.
        registry: registry file; the shipped one (or ``$HISTDENOISE_REGISTRY``) when omitted.
        options: download settings.

    Returns:
        A Keras model mapping (batch, frames, 1025, 2) to ``(stage2, stage1)``, with its
        `ModelCard` as ``model.histdenoise_card``.
    """
    if isinstance(source, keras.Model):
        return source
    cache = Path(cache) if cache else None
    path = Path(os.fspath(source)).expanduser()
    if path.exists() or find_prefix(path) is not None:
        return _load_path(path, cache=cache)
    text = os.fspath(source)
    if os.sep in text or "/" in text or path.suffix:
        raise CheckpointError(f"{text}: no such file or folder")
    entry = get_model(text, registry)
    folder = ensure_model(entry, cache, options=options)
    model = _load_path(folder, cache=cache)
    _describe_from_registry(model.histdenoise_card, entry)
    return model


def _load_path(path: Path, cache: Path | None) -> keras.Model:
    if path.is_file() and path.suffix.lower() == ".zip":
        path = _unpack_zip(path, cache or cache_dir())
    if is_native(path):
        model, _ = load_native(path)
        return model
    prefix = find_prefix(path)
    if prefix is None:
        raise CheckpointError(
            f"{path}: not a checkpoint (expected a TF checkpoint prefix or folder, "
            "checkpoint.zip, or a histdenoise model folder with model.json)"
        )
    model = load_tf_checkpoint(prefix)
    config = model.histdenoise_config
    model.histdenoise_card = ModelCard(
        name=prefix.parent.name if prefix.name == "checkpoint" else prefix.name,
        config=config,
        source=str(prefix),
        weights_sha256=_sha256_data(prefix),
    )
    return model


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
    for card in sorted(folder.rglob("model.json")):
        return card.parent
    for index in sorted(folder.rglob("*.index")):
        return index.parent
    return folder


def _describe_from_registry(card: ModelCard, entry: ModelEntry) -> None:
    card.name = entry.name
    card.description = card.description or entry.description
    card.licence = card.licence or entry.licence
