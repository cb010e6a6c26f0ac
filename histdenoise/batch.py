"""Finding the recordings to denoise among files and folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from histdenoise.audio import AUDIO_EXTENSIONS, special_file

OUTPUT_SUFFIXES = ("_denoised", "_residual")
"""Stems ending like this are our own outputs and are not picked up from folders."""


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
