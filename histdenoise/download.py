"""Download, verify, cache and unpack registered models.

Cache layout under `histdenoise.registry.cache_dir()`::

    downloads/<name>/<filename>        verified archive (``.part`` while incomplete)
    downloads/<name>/pinned.json       sha256 and size of the first verified archive, for
                                       models whose registry entry has no sha256
    models/<name>/                     unpacked model, with ``download.json`` when complete

An archive is renamed from ``.part`` only once complete and verified (size and sha256 when
the registry knows them, every member's CRC, the expected files), and a model folder only
once fully unpacked, so an interrupted run never leaves something that looks usable.
An archive the registry gives no sha256 for is pinned on first use: its sha256 and size are
recorded and printed, and a different archive under that name is refused later (a changed
release, a poisoned mirror) unless ``force`` is given.
Interrupted HTTP downloads resume with a ``Range`` request.

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from histdenoise.errors import DownloadError, VerificationError, first_line
from histdenoise.files import atomic_folder, sha256_file
from histdenoise.registry import ModelEntry, Source, cache_dir

COMPLETE_MARK = "download.json"
PIN_FILE = "pinned.json"


@dataclass(frozen=True)
class DownloadConfig:
    """How hard to try.

    Attributes:
        retries: further attempts per source after a transient failure (connection
            reset, timeout, HTTP 429/5xx, truncated body); each resumes where it stopped.
        timeout: seconds to wait for the server to connect or send more data.
        backoff: seconds before the first retry; doubles each time, at most 30 s.
        progress: show a tqdm progress bar in bytes.
    """

    retries: int = 5
    timeout: float = 30.0
    backoff: float = 1.0
    progress: bool = True


class _Transient(Exception):
    """A failure worth retrying."""


def archive_path(entry: ModelEntry, cache: Path | None = None) -> Path:
    """Where the verified archive of ``entry`` is kept (or may be put by hand)."""
    return (cache or cache_dir()) / "downloads" / entry.name / (entry.filename or "archive.zip")


def model_dir(entry: ModelEntry, cache: Path | None = None) -> Path:
    """Where the unpacked model of ``entry`` lives."""
    return (cache or cache_dir()) / "models" / entry.name


def is_cached(entry: ModelEntry, cache: Path | None = None) -> bool:
    return (model_dir(entry, cache) / COMPLETE_MARK).is_file()


def ensure_model(
    entry: ModelEntry,
    cache: Path | None = None,
    *,
    force: bool = False,
    options: DownloadConfig | None = None,
) -> Path:
    """The folder of ``entry``'s unpacked model, downloading and unpacking it if needed.

    Models shipped with histdenoise are returned in place. ``force`` downloads again.
    """
    if entry.bundled:
        return entry.local_path()
    cache = cache or cache_dir()
    if is_cached(entry, cache) and not force:
        return model_dir(entry, cache)
    archive = download_archive(entry, cache, force=force, options=options)
    return install_archive(entry, archive, cache)


def download_archive(
    entry: ModelEntry,
    cache: Path | None = None,
    *,
    force: bool = False,
    options: DownloadConfig | None = None,
) -> Path:
    """Download ``entry``'s archive into the cache, trying each source in turn.

    An archive already at `archive_path` (downloaded before, or put there by hand) is
    verified and used.
    """
    options = options or DownloadConfig()
    dest = archive_path(entry, cache)
    if dest.is_file() and not force:
        try:
            verify_archive(entry, dest)
            check_pin(entry, dest, cache)
            return dest
        except VerificationError:
            dest.unlink()
    if not entry.sources:
        raise DownloadError(f"{entry.name}: the registry lists no download URL")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if force and part.exists():
        part.unlink()
    failures = []
    for source in entry.sources:
        try:
            if source.kind == "gdrive":
                _gdrive_download(source.location, part, options)
            else:
                _http_download(source.location, part, entry, options)
            verify_archive(entry, part)
            check_pin(entry, part, cache, force=force)
        except DownloadError as exc:
            failures.append(f"{source.describe()}: {exc}")
            if isinstance(exc, VerificationError):
                part.unlink(missing_ok=True)
            continue
        os.replace(part, dest)
        return dest
    urls = " or ".join(s.describe() for s in entry.sources)
    raise DownloadError(
        f"could not download model {entry.name!r} ({'; '.join(failures)}). "
        f"Fetch {urls} by other means, then run "
        f"`histdenoise download {entry.name} --file PATH`, or put it at {dest}"
    )


def verify_archive(entry: ModelEntry, path: Path) -> None:
    """Check size, sha256 (when the registry knows them), zip integrity and contents."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise VerificationError(f"{path}: verification failed: {size} bytes, expected {entry.size}")
    if entry.sha256:
        digest = sha256_file(path)
        if digest != entry.sha256.lower():
            raise VerificationError(
                f"{path}: verification failed: sha256 {digest} != expected {entry.sha256}"
            )
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = {Path(n).name for n in zf.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise VerificationError(
            f"{path}: verification failed: not a readable zip ({exc})"
        ) from None
    if bad is not None:
        raise VerificationError(f"{path}: verification failed: corrupted member {bad}")
    missing = [f for f in entry.files if f not in names]
    if missing:
        raise VerificationError(f"{path}: verification failed: archive lacks {', '.join(missing)}")


def pin_path(entry: ModelEntry, cache: Path | None = None) -> Path:
    """Where the sha256 and size of ``entry``'s first verified archive are kept."""
    return archive_path(entry, cache).parent / PIN_FILE


def check_pin(
    entry: ModelEntry, path: Path, cache: Path | None = None, *, force: bool = False
) -> None:
    """Pin on first use, for entries without a sha256 in the registry.

    The first verified archive's sha256 and size are saved in `pin_path` and printed;
    later archives must match them (`VerificationError` otherwise) unless ``force``, which
    pins the new one instead. Entries with a registry sha256 are checked by
    `verify_archive` and never pinned.
    """
    if entry.sha256:
        return
    digest, size = sha256_file(path), path.stat().st_size
    pin_file = pin_path(entry, cache)
    try:
        pin = json.loads(pin_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pin = None
    except (OSError, ValueError) as exc:
        raise VerificationError(
            f"{pin_file}: unreadable pin ({first_line(exc)}); delete it or pass --force"
        ) from None
    if pin is not None and not force:
        if pin.get("sha256") != digest or pin.get("size") != size:
            raise VerificationError(
                f"{path}: verification failed: sha256 {digest} ({size} bytes) is not the "
                f"archive pinned on first use ({pin.get('sha256')}, {pin.get('size')} bytes, "
                f"{pin.get('pinned')}): a changed release or a tampered mirror; compare the "
                "hash with the publisher's, then pass --force to accept it"
            )
        return
    pin_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pin_file.with_name(f".{PIN_FILE}.{os.getpid()}.part")
    record = {
        "model": entry.name,
        "sha256": digest,
        "size": size,
        "pinned": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": [s.describe() for s in entry.sources],
    }
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, pin_file)
    print(
        f"histdenoise: {entry.name}: pinned on first use: sha256 {digest}, {size} bytes "
        f"({pin_file}); a different archive will be refused",
        file=sys.stderr,
    )


def install_archive(
    entry: ModelEntry, archive: str | Path, cache: Path | None = None, *, force: bool = False
) -> Path:
    """Verify ``archive`` (and its pin, see `check_pin`) and unpack it as ``entry``'s
    model folder (atomically)."""
    archive = Path(archive)
    if not archive.is_file():
        raise DownloadError(f"{archive}: no such file")
    verify_archive(entry, archive)
    cache = cache or cache_dir()
    check_pin(entry, archive, cache, force=force)
    target = model_dir(entry, cache)
    with atomic_folder(target) as tmp:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)
        _flatten(tmp, entry.files)
        (tmp / COMPLETE_MARK).write_text(
            json.dumps(
                {
                    "model": entry.name,
                    "archive": str(archive),
                    "archive_sha256": sha256_file(archive),
                    "archive_size": archive.stat().st_size,
                    "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=2,
            )
            + "\n"
        )
    return target


def _flatten(root: Path, files: tuple[str, ...]) -> None:
    """Move the expected files up to ``root`` when the archive nests them in a folder."""
    for name in files:
        if (root / name).exists():
            continue
        found = sorted(root.rglob(name))
        if found:
            shutil.move(str(found[0]), root / name)


def _http_download(url: str, part: Path, entry: ModelEntry, options: DownloadConfig) -> None:
    """Fetch ``url`` into ``part``, resuming what is there; retries transient failures."""
    import requests
    from tqdm.auto import tqdm

    failures = 0
    last = ""
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        received = 0
        try:
            with requests.get(url, headers=headers, stream=True, timeout=options.timeout) as r:
                if r.status_code == 416:
                    total = _content_range_total(r.headers.get("Content-Range", ""))
                    if total is not None and have == total:
                        return
                    part.unlink(missing_ok=True)
                    raise _Transient("server refused to resume; starting again")
                if r.status_code == 429 or r.status_code >= 500:
                    raise _Transient(f"HTTP {r.status_code} {r.reason}")
                if r.status_code >= 400:
                    raise DownloadError(f"HTTP {r.status_code} {r.reason}")
                if r.status_code == 206:
                    start = _content_range_start(r.headers.get("Content-Range", ""))
                    if start != have:
                        part.unlink(missing_ok=True)
                        raise _Transient("server resumed at the wrong offset; starting again")
                    total = _content_range_total(r.headers.get("Content-Range", ""))
                    mode = "ab"
                else:
                    have = 0
                    length = r.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else entry.size
                    mode = "wb"
                with (
                    open(part, mode) as f,
                    tqdm(
                        total=total,
                        initial=have,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=entry.name,
                        disable=not options.progress,
                        leave=False,
                    ) as bar,
                ):
                    for chunk in r.iter_content(chunk_size=1 << 16):
                        f.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            size = part.stat().st_size
            if total is not None and size < total:
                raise _Transient(f"connection closed after {size} of {total} bytes")
            return
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            _Transient,
        ) as exc:
            last = first_line(exc)
            failures = 0 if received else failures + 1
            if failures > options.retries:
                raise DownloadError(f"{last} (gave up after {options.retries} retries)") from None
            time.sleep(min(30.0, options.backoff * 2 ** max(failures - 1, 0)))
        except requests.RequestException as exc:
            raise DownloadError(first_line(exc)) from None


def _gdrive_download(file_id: str, part: Path, options: DownloadConfig) -> None:
    """Fetch a Google Drive file with gdown (which resumes ``part`` itself)."""
    import gdown

    try:
        out = gdown.download(id=file_id, output=str(part), quiet=not options.progress, resume=True)
    except Exception as exc:
        raise DownloadError(first_line(exc)) from None
    if out is None or not part.is_file():
        raise DownloadError("Google Drive refused the download")


def _content_range_start(value: str) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _content_range_total(value: str) -> int | None:
    try:
        total = value.rsplit("/", 1)[1]
        return int(total) if total != "*" else None
    except (IndexError, ValueError):
        return None



__all__ = [
    "DownloadConfig",
    "Source",
    "archive_path",
    "check_pin",
    "download_archive",
    "ensure_model",
    "install_archive",
    "is_cached",
    "model_dir",
    "pin_path",
    "verify_archive",
]
