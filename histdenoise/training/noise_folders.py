"""Real noise recordings: folders of them, split for training, and lengthened to need.

`load_noise_dataset` lists a noise collection (the Gramophone Record Noise Dataset layout
with its ``info.csv``, or any folder of audio files split by a hash of the file name) as
`NoiseRecording` items; `extend_by_revolutions` lengthens one recording by repeating whole
78 rpm turns. The simulated noise types are `histdenoise.training.degradations`.

Training layer: must not import histdenoise.notebook, TensorFlow or Keras at module level.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histdenoise.training.corpus import split_of
from histdenoise.training.degradations import REVOLUTION_S


def extend_by_revolutions(
    noise: np.ndarray, n: int, sr: int, crossfade_s: float = 0.5
) -> np.ndarray:
    """Lengthen a noise recording to ``n`` samples by repeating whole 78 rpm turns.

    Whole turns keep the once-per-turn structure (scratch clicks, thumps) periodic; the
    joins are equal-power (sine/cosine) cross-fades of ``crossfade_s`` seconds, right for
    the uncorrelated noise either side of a join. Longer input is cut.
    """
    noise = np.asarray(noise, np.float64)
    if noise.size >= n:
        return noise[:n].copy()
    period = int(REVOLUTION_S * sr)
    fade = min(int(crossfade_s * sr), max(1, noise.size // 4))
    turns = max(1, (noise.size - fade) // period)
    loop_len = turns * period if turns * period + fade <= noise.size else noise.size - fade
    loop_len = max(1, loop_len)
    out = np.zeros(n + loop_len + fade)
    t = np.linspace(0, np.pi / 2, fade)
    fade_in, fade_out = np.sin(t), np.cos(t)
    piece = noise[: loop_len + fade].copy()
    piece[:fade] *= fade_in
    piece[loop_len:] *= fade_out
    first = noise[: loop_len + fade].copy()
    first[loop_len:] *= fade_out
    out[: first.size] += first
    pos = loop_len
    while pos < n:
        out[pos : pos + piece.size] += piece
        pos += loop_len
    return out[:n]


@dataclass(frozen=True)
class NoiseRecording:
    """One real noise file and its split (``train``, ``validation``, ``test``)."""

    path: Path
    split: str
    recording: str


def load_noise_dataset(root: str | Path) -> list[NoiseRecording]:
    """Files of a noise collection.

    With an ``info.csv`` (the Gramophone Record Noise Dataset layout: columns
    ``recording``, ``segments`` - a list of file names inside ``<root>/<recording>/`` -,
    ``largest_segment`` and ``split``), every listed segment with its split. Otherwise
    every audio file below ``root``, split by a hash of its path below ``root`` with the
    corpus's rule (`histdenoise.training.corpus.split_of`, 80/10/10), so that a folder of
    one's own noise recordings works too.
    """
    from histdenoise.audio import audio_files_below

    root = Path(root)
    info = root / "info.csv"
    out = []
    if info.is_file():
        with open(info, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                segments = (
                    ast.literal_eval(row["segments"])
                    if row.get("segments")
                    else [row["largest_segment"]]
                )
                for seg in segments:
                    out.append(
                        NoiseRecording(
                            root / row["recording"] / seg, row["split"], row["recording"]
                        )
                    )
        return out
    for p in audio_files_below(root):
        rel = p.relative_to(root).as_posix()
        out.append(NoiseRecording(p, split_of(rel), rel))
    return out
