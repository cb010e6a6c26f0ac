"""Planning a denoising run before anything is written.

Every input's three outputs (denoised, residual, report) are worked out first; two inputs
that would write the same file, or an output that is one of the inputs (compared as files:
links, ``..`` and case are resolved by the file system), are clashes that refuse the run.
Used by ``histdenoise denoise`` and `histdenoise.notebook.denoise_files`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from histdenoise.audio import AudioInfo, OutputFormat, choose_output, probe
from histdenoise.batch import Job
from histdenoise.errors import HistdenoiseError

NAME_MAX = 255
"""Bytes in a file name on the common file systems, when the system does not say."""


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
