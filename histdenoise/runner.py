"""Denoising many files: find them, plan the run, decide what to skip, run it with one
error line per failed file, and count the outcome.

1. `collect` turns files and folders into `Job`s (folders give their audio files).
2. `plan_run` works out every input's three outputs (denoised, residual, report) before
   anything is written; two inputs that would write the same file, or an output that is
   one of the inputs (compared as files: links, ``..`` and case are resolved by the file
   system), are clashes that refuse the run.
3. `pending` applies the skip rule (``--skip-existing``: complete outputs are kept).
4. `run_files` denoises the planned files, one failure not stopping the others, into a
   `RunSummary` (``N denoised, M skipped, K failed``).

Used by ``histdenoise denoise`` and `histdenoise.notebook.denoise_files`; the denoiser it
is given runs the network.

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from histdenoise.audio import (
    AUDIO_EXTENSIONS,
    AudioInfo,
    OutputFormat,
    choose_output,
    probe,
    special_file,
)
from histdenoise.errors import HistdenoiseError, first_line
from histdenoise.files import os_error_line, remove_stale_temporaries, temporaries

OUTPUT_SUFFIXES = ("_denoised", "_residual")
"""Stems ending like this are our own outputs and are not picked up from folders."""

NAME_MAX = 255
"""Bytes in a file name on the common file systems, when the system does not say."""


# --------------------------------------------------------------------------- finding
@dataclass(frozen=True)
class Job:
    """One recording to denoise.

    Attributes:
        path: the input file.
        subdir: its folder relative to the folder it was found in (``.`` for files given
            directly); outputs into an OUTDIR keep this structure.
    """

    path: Path
    subdir: Path = Path(".")

    def out_dir(self, out_root: Path | None) -> Path | None:
        """Where the outputs go: beside the input, or under ``out_root``."""
        return None if out_root is None else out_root / self.subdir


def is_audio_name(path: Path) -> bool:
    return (
        path.suffix.lower() in AUDIO_EXTENSIONS
        and not path.name.startswith(".")
        and not path.stem.endswith(OUTPUT_SUFFIXES)
    )


def collect(paths: list[str | Path], recursive: bool = False) -> tuple[list[Job], list[str]]:
    """Jobs for the given files and folders, and one error line per unusable path.

    Files given directly are always taken (their content is checked later); folders
    contribute files with audio extensions (see `AUDIO_EXTENSIONS`), in name order,
    descending into subfolders with ``recursive``, never our own ``*_denoised`` /
    ``*_residual`` outputs.
    """
    jobs: list[Job] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            found = [Job(path)]
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            # FIFOs, dangling links and the like are taken too: `probe` says what they are
            files = sorted(p for p in path.glob(pattern) if is_audio_name(p) and not p.is_dir())
            found = [Job(p, p.parent.relative_to(path)) for p in files]
            if not found:
                where = "or its subfolders " if recursive else ""
                hint = "" if recursive else "; use --recursive for subfolders"
                errors.append(
                    f"{path}: no audio files in this folder {where}"
                    f"({', '.join(AUDIO_EXTENSIONS)}){hint}"
                )
        elif special_file(path):
            found = [Job(path)]  # `probe` says what it is
        else:
            errors.append(f"{path}: no such file or folder")
            found = []
        for job in found:
            key = job.path.resolve()
            if key not in seen:
                seen.add(key)
                jobs.append(job)
    return jobs, errors


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class PlannedFile:
    """One input and what it will write.

    Attributes:
        job: the input and its subfolder.
        info: its header (`probe`).
        format: the output format.
        outputs: (denoised, residual, report) paths.
    """

    job: Job
    info: AudioInfo
    format: OutputFormat
    outputs: tuple[Path, Path, Path]


@dataclass
class Plan:
    """A run, planned.

    Attributes:
        files: inputs to process, in order.
        errors: one line per input left out (unreadable, output name too long, ...).
        clashes: one line per pair of inputs whose outputs collide, or per output that
            is an input; a run with clashes must write nothing.
    """

    files: list[PlannedFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    clashes: list[str] = field(default_factory=list)


def output_names(
    path: Path, folder: Path | None, extension: str, keep_extension: bool = False
) -> tuple[Path, Path, Path]:
    """``<stem>_denoised<ext>``, ``<stem>_residual<ext>``, ``<stem>_report.json`` in
    ``folder`` (the input's own when None); with ``keep_extension`` the stem is the whole
    input name (``a.flac_denoised.flac``), so that ``a.wav`` and ``a.flac`` do not clash."""
    folder = folder if folder is not None else path.parent
    stem = path.name if keep_extension else path.stem
    return (
        folder / f"{stem}_denoised{extension}",
        folder / f"{stem}_residual{extension}",
        folder / f"{stem}_report.json",
    )


def plan_run(
    jobs: list[Job],
    out_root: Path | None = None,
    fmt: str | None = None,
    subtype: str | None = None,
    keep_extension: bool = False,
) -> Plan:
    """Probe every input and work out its outputs; find the clashes (see `Plan`)."""
    plan = Plan()
    for job in jobs:
        try:
            info = probe(job.path)
            out_fmt = choose_output(info, fmt, subtype)
        except HistdenoiseError as exc:
            plan.errors.append(str(exc))
            continue
        outs = output_names(job.path, job.out_dir(out_root), out_fmt.extension, keep_extension)
        long = [p for p in outs if len(os.fsencode(p.name)) > _name_max(p.parent)]
        if long:
            plan.errors.append(
                f"{job.path}: output name too long for the file system "
                f"({len(os.fsencode(long[0].name))} bytes, at most {_name_max(long[0].parent)}): "
                "rename the input to a shorter name"
            )
            continue
        plan.files.append(PlannedFile(job, info, out_fmt, outs))
    plan.clashes = find_clashes(plan.files, out_root, keep_extension)
    return plan


def find_clashes(
    files: list[PlannedFile], out_root: Path | None = None, keep_extension: bool = False
) -> list[str]:
    """One line per pair of inputs that would write the same output, and per input whose
    output is another input, each with a way out."""
    inputs: dict[tuple, Path] = {}
    for f in files:
        for key in _keys(f.job.path):
            inputs[key] = f.job.path
    writers: dict[tuple, PlannedFile] = {}
    lines: list[str] = []
    pairs: set[tuple[str, str]] = set()
    for f in files:
        for out in f.outputs:
            victim = next((inputs[k] for k in _keys(out) if k in inputs), None)
            if victim is not None:
                pair = (str(f.job.path), str(victim))
                if pair not in pairs:
                    pairs.add(pair)
                    lines.append(
                        f"{f.job.path}: its output {out} is the input {victim}; write the "
                        "outputs elsewhere with -o OUTDIR"
                        + ("" if keep_extension else " or use --keep-extension")
                    )
                continue
            key = _keys(out)[0]
            other = writers.get(key)
            if other is None:
                writers[key] = f
                continue
            pair = (str(other.job.path), str(f.job.path))
            if pair in pairs:
                continue
            pairs.add(pair)
            lines.append(
                f"{other.job.path} and {f.job.path}: both would write {out}; "
                + _way_out(other.job.path, f.job.path, out_root, keep_extension)
            )
    return lines


def _way_out(a: Path, b: Path, out_root: Path | None, keep_extension: bool) -> str:
    if _real(a.parent) == _real(b.parent) and not keep_extension:
        return (
            "use --keep-extension to name outputs after the whole input name "
            f"({a.name}_denoised..., {b.name}_denoised...)"
        )
    try:
        common = os.path.commonpath([_real(a.parent), _real(b.parent)])
    except ValueError:
        common = None
    keep = (
        f"pass their common folder {common} with --recursive to keep the structure, or "
        if common
        else ""
    )
    return f"{keep}run them separately with one -o OUTDIR per folder"


def _real(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _keys(path: Path) -> list[tuple]:
    """Identities of a path: its resolved name, and (device, inode) when it exists."""
    keys: list[tuple] = [("name", _real(path.parent), os.path.normcase(path.name))]
    try:
        st = os.stat(path)
        keys.append(("inode", st.st_dev, st.st_ino))
    except OSError:
        pass
    return keys


def _name_max(folder: Path) -> int:
    """Longest file name in bytes the file system of ``folder`` (or its nearest existing
    parent) accepts."""
    probe_dir = Path(os.path.abspath(folder))
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        return int(os.pathconf(probe_dir, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


# --------------------------------------------------------------------------- running
FileProgress = Callable[["PlannedFile", int], contextlib.AbstractContextManager]
"""``file_progress(item, slot)``: a context manager around one file's run that gives the
``progress(seconds_done, seconds_total)`` callback for it (or None); ``slot`` (1, 2, ...)
is the row of the file's progress bar among those in flight."""


@dataclass
class RunSummary:
    """The outcome of a run, filled in as files finish.

    Attributes:
        results: a `histdenoise.denoiser.FileResult` per denoised file, in input order.
        errors: one line per input that failed or was left out.
        skipped: inputs whose complete outputs were kept (``--skip-existing``).
    """

    results: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0

    def line(self, note: str = "") -> str:
        """``N denoised, M skipped, K failed`` and ``note``."""
        return (
            f"{len(self.results)} denoised, {self.skipped} skipped, "
            f"{len(self.errors)} failed{note}"
        )


def error_line(exc: HistdenoiseError | OSError) -> str:
    """The one line a failed file reports."""
    return first_line(exc) if isinstance(exc, HistdenoiseError) else os_error_line(exc)


def pending(files: list[PlannedFile], skip_existing: bool = False) -> tuple[list, int]:
    """The planned files to run, and how many are skipped: with ``skip_existing``, those
    whose three outputs all exist and none is being written. Temporaries that killed runs
    left for the outputs to run are removed now, before anything else happens."""
    todo, skipped = [], 0
    for item in files:
        complete = all(p.exists() for p in item.outputs) and not any(
            temporaries(p) for p in item.outputs
        )
        if skip_existing and complete:
            skipped += 1
            continue
        todo.append(item)
        for p in item.outputs:
            remove_stale_temporaries(p)
    return todo, skipped


def run_files(
    denoiser,
    files: list[PlannedFile],
    settings,
    summary: RunSummary,
    *,
    overwrite: bool = False,
    workers: int = 1,
    file_progress: FileProgress | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> RunSummary:
    """Denoise the planned ``files`` with ``denoiser`` (a `histdenoise.denoiser.Denoiser`)
    and `DenoiseConfig` ``settings``; a failing file is an error line in ``summary``
    (given to ``on_error`` too) and does not stop the others.

    ``workers`` files are in flight at once (threads). ``summary`` is filled in as files
    finish, so it is up to date when the run is interrupted.
    """

    def run_one(item: PlannedFile, slot: int):
        scope = file_progress(item, slot) if file_progress else contextlib.nullcontext()
        with scope as progress:
            try:
                result = denoiser.denoise_file(
                    item.job.path,
                    settings=settings,
                    overwrite=overwrite,
                    progress=progress,
                    outputs=item.outputs,
                )
            except (HistdenoiseError, OSError) as exc:
                message = error_line(exc)
                if on_error:
                    on_error(message)
                return None, message
            for line in result.warnings:
                if on_warning:
                    on_warning(line)
        return result, None

    def account(outcome) -> None:
        result, message = outcome
        if message is None:
            summary.results.append(result)
        else:
            summary.errors.append(message)

    workers = max(1, min(workers, len(files)))
    if workers == 1:
        for item in files:
            account(run_one(item, 1))
        return summary
    slots = list(range(1, workers + 1))  # progress bar rows
    lock = threading.Lock()

    def in_slot(item: PlannedFile):
        with lock:
            row = slots.pop()
        try:
            return run_one(item, row)
        finally:
            with lock:
                slots.append(row)

    with denoiser.shared(workers), ThreadPoolExecutor(workers) as pool:
        for outcome in pool.map(in_slot, files):
            account(outcome)
    return summary
