"""Small file utilities shared by checkpoints, downloads and outputs: hashes, atomic
folders, temporaries, shipped data files. Must not import TensorFlow or Keras."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The source tree's root (where ``checkpoints/`` and ``examples/`` are in a checkout)."""


def shipped_file(package: str, name: str) -> Path:
    """A data file shipped with histdenoise: ``name`` in the installed package ``package``
    (``histdenoise.checkpoints``, ``histdenoise.examples``), else in its folder of the
    source tree (``checkpoints/``, ``examples/``) when running from a checkout."""
    try:
        from importlib.resources import files

        path = Path(str(files(package).joinpath(name)))
        if path.is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return REPO_ROOT / package.rsplit(".", 1)[-1] / name


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: list[Path], chunk: int = 1 << 20) -> str:
    """Hex sha256 of the concatenation of several files, in the given order."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``target``; move it into place on success.

    ``with atomic_folder(dest) as tmp: ...fill tmp...`` - an existing ``dest`` is replaced
    only when the block completes; on any error the temporary folder is removed and
    ``dest`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- temporaries
TEMP_SUFFIX = ".part"


def temp_path(final: str | Path, pid: int | None = None) -> Path:
    """The temporary name under which ``final`` is written: ``.hd-<hash>-<pid>.part``.

    At most 40 bytes whatever the final name (a legal 255-byte name included), in the same
    folder (so the rename is atomic); the hash of the final name lets a later run find the
    leftovers of a killed one (`stale_temporaries`).
    """
    final = Path(final)
    return final.with_name(f".hd-{_name_hash(final.name)}-{pid or os.getpid()}{TEMP_SUFFIX}")


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def temporaries(final: str | Path) -> list[tuple[Path, int]]:
    """Temporary files of ``final`` in its folder, with the process id that wrote each.

    Also finds the ``.<name>.<pid>.part`` temporaries of histdenoise 0.1.
    """
    final = Path(final)
    found = []
    try:
        names = os.listdir(final.parent)
    except OSError:
        return []
    short = f".hd-{_name_hash(final.name)}-"
    old = f".{final.name}."
    for name in names:
        if not name.endswith(TEMP_SUFFIX):
            continue
        for prefix in (short, old):
            pid = name[len(prefix) : -len(TEMP_SUFFIX)]
            if name.startswith(prefix) and pid.isdigit():
                found.append((final.parent / name, int(pid)))
    return found


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(final: str | Path) -> list[Path]:
    """Delete the temporaries of ``final`` left by processes that no longer run."""
    removed = []
    for path, pid in temporaries(final):
        if pid != os.getpid() and not process_alive(pid):
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


# --------------------------------------------------------------------------- error lines
_CAUSES = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long for the file system",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder (removed during the run?)",
    errno.EISDIR: "is a folder",
    errno.EIO: "input/output error (failing disk, or a network share that went away)",
    errno.EFBIG: "file too large for the file system",
    errno.EMFILE: "too many open files",
}


def os_error_cause(exc: BaseException) -> str:
    """The cause of a file system error in a few plain words.

    Takes an `OSError` (by errno) or any error whose text holds a system message (as
    libsndfile's ``System error : No space left on device.`` does).
    """
    code = getattr(exc, "errno", None)
    if code in _CAUSES:
        return _CAUSES[code]
    text = str(exc)
    for code, cause in _CAUSES.items():
        if os.strerror(code) in text:
            return cause
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def os_error_line(exc: OSError, path: str | Path | None = None) -> str:
    """One line for the user: the file (``path``, else the error's) and the cause."""
    name = path if path is not None else (exc.filename or "")
    return f"{name}: {os_error_cause(exc)}" if name else os_error_cause(exc)
