"""The registry of known models (``checkpoints/registry.json``) and the cache folder.

``$HISTDENOISE_REGISTRY`` points to another registry file (a mirror, a lab's own models);
``$HISTDENOISE_HOME`` moves the cache (downloads and unpacked models).

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from histdenoise.errors import RegistryError, UnknownKeysError, check_keys
from histdenoise.files import shipped_file

DEFAULT_MODEL = "bundled"
"""The model `histdenoise denoise` uses when none is named."""

REGISTRY_ENV = "HISTDENOISE_REGISTRY"
HOME_ENV = "HISTDENOISE_HOME"


@dataclass(frozen=True)
class Source:
    """One place to fetch a model archive from.

    Attributes:
        kind: ``"http"`` (any HTTP(S) URL) or ``"gdrive"`` (a Google Drive file id).
        location: the URL or the Drive id.
    """

    kind: str
    location: str

    def describe(self) -> str:
        if self.kind == "gdrive":
            return f"Google Drive file {self.location}"
        return self.location


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: registry key.
        description: one line for people.
        licence: SPDX identifier of the weights' licence.
        format: ``"tf-checkpoint"`` (the authors' format) or ``"native"``.
        filename: name of the downloaded archive (``checkpoint.zip``).
        sources: where to download it, tried in order.
        files: files the unpacked archive must contain.
        size: archive size in bytes, if known.
        sha256: archive sha256, if known.
        path: for models shipped with histdenoise, the folder relative to the registry.
        citation: what to cite.
    """

    name: str
    description: str = ""
    licence: str = ""
    format: str = "tf-checkpoint"
    filename: str = ""
    sources: tuple[Source, ...] = ()
    files: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    path: str | None = None
    citation: str = ""
    registry_dir: Path | None = field(default=None, compare=False)

    @property
    def bundled(self) -> bool:
        return self.path is not None

    def local_path(self) -> Path | None:
        """Folder of a model shipped with histdenoise, else None."""
        if self.path is None or self.registry_dir is None:
            return None
        return self.registry_dir / self.path

    @classmethod
    def from_dict(cls, name: str, d: dict, registry_dir: Path | None = None) -> ModelEntry:
        # An unknown key is an error: a misspelt "sha256" would leave downloads unverified.
        try:
            check_keys(f"key of model {name}", d, ENTRY_KEYS)
        except UnknownKeysError as exc:
            raise RegistryError(str(exc)) from None
        sources = []
        for s in d.get("urls", []):
            if "url" in s:
                sources.append(Source("http", s["url"]))
            elif "gdrive_id" in s:
                sources.append(Source("gdrive", s["gdrive_id"]))
            else:
                raise RegistryError(f"model {name}: a url entry needs 'url' or 'gdrive_id'")
        return cls(
            name=name,
            description=d.get("description", ""),
            licence=d.get("licence", ""),
            format=d.get("format", "tf-checkpoint"),
            filename=d.get("filename", ""),
            sources=tuple(sources),
            files=tuple(d.get("files", ())),
            size=d.get("size"),
            sha256=d.get("sha256"),
            path=d.get("path"),
            citation=d.get("citation", ""),
            registry_dir=registry_dir,
        )


ENTRY_KEYS = ("description", "licence", "format", "filename", "urls", "files", "size", "sha256",
              "path", "citation")


def default_registry_path() -> Path:
    """``checkpoints/registry.json`` shipped with histdenoise."""
    return shipped_file("histdenoise.checkpoints", "registry.json")


def registry_path() -> Path:
    """The registry in use: ``$HISTDENOISE_REGISTRY`` or the shipped one."""
    env = os.environ.get(REGISTRY_ENV)
    return Path(env).expanduser() if env else default_registry_path()


def load_registry(path: str | Path | None = None) -> dict[str, ModelEntry]:
    """All registered models by name."""
    path = Path(path) if path else registry_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        models = data["models"]
        return {name: ModelEntry.from_dict(name, d, path.parent) for name, d in models.items()}
    except FileNotFoundError:
        raise RegistryError(f"{path}: model registry not found") from None
    except (RegistryError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"{path}: invalid model registry ({exc})") from None


def list_models(path: str | Path | None = None) -> list[str]:
    """Names of the registered models, default first."""
    names = sorted(load_registry(path))
    if DEFAULT_MODEL in names:
        names.remove(DEFAULT_MODEL)
        names.insert(0, DEFAULT_MODEL)
    return names


def get_model(name: str, path: str | Path | None = None) -> ModelEntry:
    """The registry entry of ``name``."""
    registry = load_registry(path)
    if name not in registry:
        raise RegistryError(
            f"{name}: no such model in the registry {path or registry_path()} "
            f"(known: {', '.join(sorted(registry))})"
        )
    return registry[name]


def cache_dir() -> Path:
    """Where downloads and unpacked models live: ``$HISTDENOISE_HOME`` or the user cache."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("histdenoise", appauthor=False))
