"""Exceptions with one-line messages that name the file or model and the problem.

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class HistdenoiseError(Exception):
    """Base class: its message is one line meant for the user."""


class CheckpointError(HistdenoiseError):
    """A checkpoint is missing, unreadable or does not fit the network."""


class DownloadError(HistdenoiseError):
    """A model could not be downloaded or failed verification."""


class RegistryError(HistdenoiseError):
    """The model registry is unreadable or has no such model."""


class VerificationError(DownloadError):
    """A downloaded or supplied file is not what the registry describes."""


class ExportError(HistdenoiseError):
    """A model could not be exported, or the export target is unusable."""


class UnknownKeysError(HistdenoiseError, ValueError):
    """A settings dictionary (a config's ``from_dict``, a JSON file) has keys nobody reads.

    Also a `ValueError`, as these errors were before they were one type."""


def check_keys(what: str, given, known) -> None:
    """Raise `UnknownKeysError` naming the keys of ``given`` outside ``known`` and the known
    ones (in their given order): ``unknown <what>: a, b (known: x, y, z)``."""
    known = list(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UnknownKeysError(
            f"unknown {what}: {', '.join(map(str, unknown))} (known: {', '.join(known)})")
