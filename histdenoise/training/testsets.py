"""Test sets: held-out clean/noisy pairs on disk, built from a corpus's test split.

A test set is a folder with ``testset.csv`` (``noisy``, ``clean``, ``snr_db``,
``category``, ``piece``, ``source``, ``condition``) and the audio it lists. `build_testset`
makes one from the test split of a corpus (pieces never used in training) and noise drawn
with seeds that training never uses, under one or more conditions (`CONDITIONS`): the full
noise mixture, each disturbance alone, clean music (do no harm), acoustic-era band-limited
music with and without noise. `SUITES` names the sets the README reports, among them
``heldout``: a whole source of music and a family of noise settings kept out of training.
`read_testset` reads the table back. Scoring a model on a test set is
`histdenoise.training.evaluate`.

Training layer: must not import histdenoise.notebook, TensorFlow or Keras at module level,
nor `histdenoise.training.evaluate` (which imports this module).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histdenoise.errors import HistdenoiseError
from histdenoise.stft import HOP, N_FFT, SAMPLE_RATE

TEST_SNRS = (2.0, 6.0, 12.0)
CLEAN_SNR = float("inf")
"""The ``snr_db`` of an example with no noise added."""
CONDITIONS = ("mixture", "hiss", "clicks", "crackle", "thumps", "hum", "rumble", "clean",
              "clean-acoustic", "acoustic")
"""What an example holds: ``mixture`` (every disturbance type, each with its probability),
one type alone, ``clean`` (no noise), ``clean-acoustic`` (acoustic-era colouring, no
noise) or ``acoustic`` (acoustic-era colouring plus the mixture)."""
NOISE_SEED_OFFSET = 10_000_019
"""Test noise seeds start here; training and validation seeds stay far below."""


@dataclass(frozen=True)
class TestsetConfig:
    """How `build_testset` samples.

    Attributes:
        snrs: input SNRs, dB.
        excerpts_per_piece: excerpts taken from each test piece.
        seconds: excerpt length.
        seed: seed of excerpt positions and noise.
        conditions: what the examples hold (`CONDITIONS`); clean ones once per excerpt.
        splits: corpus splits the pieces come from.
        categories: only these categories (all when empty).
        noise: ``"training"`` (the simulator's defaults, as in training) or ``"heldout"``
            (`heldout_noise`: settings outside every training range).
    """

    snrs: tuple[float, ...] = TEST_SNRS
    excerpts_per_piece: int = 2
    seconds: float = 6.0
    seed: int = 0
    conditions: tuple[str, ...] = ("mixture",)
    splits: tuple[str, ...] = ("test",)
    categories: tuple[str, ...] = ()
    noise: str = "training"


def heldout_noise():
    """A family of noise settings no training config of ours uses: 60 Hz mains hum (the
    bundled model trains on 50 Hz only), browner hiss (slope 1.3-1.8; training 0.3-1.2),
    and worn-record click rates (30-60 per second; training 1-25)."""
    from histdenoise.training.degradations import Clicks, DegradationConfig, Hiss, Hum

    return DegradationConfig(hiss=Hiss(slope=(1.3, 1.8)), clicks=Clicks(rate_hz=(30.0, 60.0)),
                             hum=Hum(mains_hz=(60.0,)))


SUITES = {
    "test": TestsetConfig(excerpts_per_piece=3),
    "types": TestsetConfig(snrs=(6.0,), excerpts_per_piece=2,
                           conditions=("hiss", "clicks", "crackle", "thumps", "hum", "rumble")),
    "harm": TestsetConfig(snrs=(6.0,), excerpts_per_piece=3,
                          conditions=("clean", "clean-acoustic", "acoustic")),
    "heldout": TestsetConfig(excerpts_per_piece=2, splits=("validation", "test"),
                             categories=("orchestra",), noise="heldout"),
}
"""The test sets the README reports (``histdenoise evaluate --suite NAME``)."""


def build_testset(corpus: list[str], out: str | Path, config: TestsetConfig | None = None) -> Path:
    """Write a test set from the corpora's chosen splits into ``out``; returns the csv path."""
    import soundfile as sf

    from histdenoise.training.corpus import read_corpus
    from histdenoise.training.data import DataConfig, ExampleSource, piece_key
    from histdenoise.training.degradations import RecordingChain, mix

    config = config or TestsetConfig()
    unknown = set(config.conditions) - set(CONDITIONS)
    if unknown:
        raise HistdenoiseError(f"unknown test conditions {sorted(unknown)}; known: {CONDITIONS}")
    keys = {(Path(root) / row["file"]).as_posix(): piece_key(row)
            for root in corpus for row in read_corpus(root)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = int(config.seconds * SAMPLE_RATE - N_FFT) // HOP + 1
    data = DataConfig(corpus=list(corpus), segment_frames=frames,
                      categories=list(config.categories))
    pieces, first = [], None
    for split in config.splits:
        try:
            pieces += ExampleSource(data, split).pieces
        except HistdenoiseError:  # no pieces in this split
            continue
        first = first or split
    if first is None:
        raise HistdenoiseError(f"{', '.join(corpus)}: no pieces in splits {config.splits}"
                               + (f" of {config.categories}" if config.categories else ""))
    source = ExampleSource(data, first, seed=config.seed + NOISE_SEED_OFFSET)
    if config.noise == "heldout":
        source.degradations = heldout_noise()
    elif config.noise != "training":
        raise HistdenoiseError(f"unknown test noise {config.noise!r} (training, heldout)")
    acoustic = RecordingChain(acoustic=1.0, electrical=0.0)
    rows = []
    for p_idx, (path, category) in enumerate(pieces):
        source.pieces = [(path, category)]
        for e in range(config.excerpts_per_piece):
            music, _ = source.clean_segment()
            coloured = acoustic.apply(music, SAMPLE_RATE, source.rng)
            for condition in config.conditions:
                clean = coloured if "acoustic" in condition else music
                if condition.startswith("clean"):
                    cases = [(CLEAN_SNR, np.zeros_like(clean))]
                else:
                    degradations = source.degradations
                    if condition not in ("mixture", "acoustic"):
                        degradations = degradations.alone(condition)
                    cases = [(snr, source.noise_segment(degradations)) for snr in config.snrs]
                for snr, noise in cases:
                    noisy, ref = mix(clean, noise, 0.0 if snr == CLEAN_SNR else snr, 0.0)
                    stem = f"{p_idx:03d}_{e}_{condition}_{snr:g}dB"
                    sf.write(out / f"{stem}_noisy.flac", noisy, SAMPLE_RATE, subtype="PCM_24")
                    sf.write(out / f"{stem}_clean.flac", ref, SAMPLE_RATE, subtype="PCM_24")
                    rows.append({"noisy": f"{stem}_noisy.flac", "clean": f"{stem}_clean.flac",
                                 "snr_db": snr, "category": category, "piece": path.stem,
                                 "source": keys.get(path.as_posix(), path.stem),
                                 "condition": condition})
    table = out / "testset.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def read_testset(folder: str | Path) -> list[dict]:
    folder = Path(folder)
    table = folder / "testset.csv"
    if not table.is_file():
        raise HistdenoiseError(f"{folder}: no testset.csv (make one with build_testset)")
    with open(table, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
