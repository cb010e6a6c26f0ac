"""The corpus folder: clean music laid out for training, read and written.

Layout: ``<root>/<split>/<category>/<piece>.flac`` (44.1 kHz mono, 16 bit, peak -1 dBFS,
at most `MAX_SECONDS`) and ``<root>/corpus.csv`` listing every file with its provenance
(`FIELDS`). `read_corpus` reads one, or any folder of audio without a table (every file a
piece of category ``music``); `split_of` is the split rule by a hash of a piece's name;
`store_piece` writes one piece. Rendering music into this layout (music21 scores through
FluidSynth, `build_corpus`) is `histdenoise.training.render`; its public names stay
importable from here.

Training layer: must not import histdenoise.notebook, TensorFlow or Keras at module level,
nor `histdenoise.training.render` (which imports this module) except on first use of one
of its names.
"""

from __future__ import annotations

import csv
import importlib
import zlib
from pathlib import Path

import numpy as np

from histdenoise.errors import HistdenoiseError
from histdenoise.stft import SAMPLE_RATE

MAX_SECONDS = 180.0
"""Renderings are cut to their first three minutes, to keep the categories balanced."""


class CorpusError(HistdenoiseError):
    """The corpus cannot be built (missing tools or packages)."""


def split_of(key: str, validation: float = 0.1, test: float = 0.1) -> str:
    """Deterministic split of a piece by the crc32 of its source name."""
    u = (zlib.crc32(key.encode()) % 10_000) / 10_000
    return "test" if u < test else "validation" if u < test + validation else "train"


def store_piece(
    mono: np.ndarray,
    sample_rate: int,
    category: str,
    piece: str,
    split: str,
    out_root: Path,
    max_seconds: float,
    extra: dict,
) -> dict:
    """Write ``mono`` (samples at ``sample_rate`` Hz) as
    ``<out_root>/<split>/<category>/<piece>.flac``: resampled to 44.1 kHz, silence trimmed,
    cut to ``max_seconds``, peak -1 dBFS; returns its ``corpus.csv`` row (``extra`` holds the
    provenance fields)."""
    import soundfile as sf
    import soxr

    if sample_rate != SAMPLE_RATE:
        mono = soxr.resample(mono, sample_rate, SAMPLE_RATE)
    loud = np.nonzero(np.abs(mono) > 1e-4)[0]
    if loud.size == 0:
        raise CorpusError(f"{piece}: rendering is silent")
    mono = mono[loud[0] : loud[-1] + 1][: int(max_seconds * SAMPLE_RATE)]
    mono = mono / np.max(np.abs(mono)) * 10 ** (-1 / 20)
    dest = out_root / split / category / f"{piece}.flac"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    sf.write(tmp, mono, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    tmp.replace(dest)
    return {
        "file": dest.relative_to(out_root).as_posix(),
        "piece": piece,
        "category": category,
        "split": split,
        "seconds": round(mono.size / SAMPLE_RATE, 2),
        **extra,
    }


FIELDS = (
    "file",
    "piece",
    "category",
    "split",
    "seconds",
    "source",
    "soundfont",
    "programs",
    "tempo_bpm",
    "seed",
)


def read_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def read_corpus(root: str | Path) -> list[dict]:
    """Rows of ``<root>/corpus.csv``, or, for any folder of audio without one, every audio
    file as a piece (category ``music``, split by a hash of its path)."""
    from histdenoise.audio import audio_files_below

    root = Path(root)
    table = root / "corpus.csv"
    if table.is_file():
        return list(read_rows(table).values())
    rows = []
    for p in audio_files_below(root):
        rel = p.relative_to(root).as_posix()
        rows.append({"file": rel, "piece": rel, "category": "music", "split": split_of(rel)})
    return rows


_RENDER = (
    "CorpusConfig",
    "ScoreJob",
    "build_corpus",
    "check_tools",
    "plan_scores",
    "render_score",
    "render_recording",
    "score_events",
    "synthesize",
    "available_soundfonts",
    "SOUNDFONTS",
    "PROGRAMS",
    "WESNOTH_MUSIC",
)
"""Names of `histdenoise.training.render`, importable from here as before the split."""

__all__ = ["CorpusError", "read_corpus", "split_of", *_RENDER]


def __getattr__(name: str):
    if name in _RENDER:
        return getattr(importlib.import_module("histdenoise.training.render"), name)
    raise AttributeError(f"module 'histdenoise.training.corpus' has no attribute {name!r}")
