"""Training data: clean music segments mixed with gramophone noise, as spectrograms.

`ExampleSource` draws one (noisy, clean) pair at a time from a corpus split (random piece,
random offset) and a noise source (the simulator, real noise recordings, or both), mixed
as in the paper: both peak-normalised, noise at an SNR uniform in 2-20 dB, then a gain
uniform in -6..+4 dB on both. `make_dataset` wraps it in a batched ``tf.data`` pipeline of
spectrograms (frames x 1025 x 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histdenoise.corpus import read_corpus
from histdenoise.degradations import (
    DegradationConfig,
    extend_by_revolutions,
    load_noise_dataset,
    mix,
    simulate,
)
from histdenoise.errors import HistdenoiseError
from histdenoise.stft import StftConfig, stft, to_channels


@dataclass
class DataConfig:
    """Where examples come from and how they are mixed.

    Attributes:
        corpus: folders of clean music (with ``corpus.csv``, or any audio folder).
        noise: folders of real noise recordings (Gramophone Record Noise Dataset layout
            or plain audio); empty for the simulator alone.
        simulated_fraction: share of examples with simulated noise when real noise exists.
        segment_frames: STFT frames per training example (256 = 2.97 s; paper: 431 = 5 s).
        snr_db: range of the mixture SNR, dB.
        gain_db: range of the gain applied to both signals, dB.
        categories: restrict the corpus to these categories (all when empty).
    """

    corpus: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    simulated_fraction: float = 0.5
    segment_frames: int = 256
    snr_db: tuple[float, float] = (2.0, 20.0)
    gain_db: tuple[float, float] = (-6.0, 4.0)
    categories: list[str] = field(default_factory=list)


def segment_samples(frames: int, cfg: StftConfig | None = None) -> int:
    """Samples whose STFT (no padding) has exactly ``frames`` frames."""
    cfg = cfg or StftConfig()
    return (frames - 1) * cfg.hop + cfg.n_fft


def piece_key(row: dict) -> str:
    """What identifies a piece across corpora and renderings: its ``source`` (the score or
    recording it was made from, e.g. ``music21:haydn/opus1no1/movement2.mxl``), else its
    ``piece`` name."""
    return str(row.get("source") or row.get("piece") or "")


def split_pieces(corpus: list[str], split: str) -> list[str]:
    """Sorted `piece_key` of every piece of ``split`` in the corpora (a model card lists
    its ``train`` split this way as ``training_pieces``)."""
    return sorted({piece_key(row) for root in corpus for row in read_corpus(root)
                   if row["split"] == split})


class ExampleSource:
    """Random (noisy, clean) waveform pairs from one split.

    Args:
        config: data settings.
        split: ``train``, ``validation`` or ``test``.
        seed: seed of the random stream (pieces, offsets, noise, SNR, gain).
        degradations: simulator settings.
    """

    def __init__(
        self,
        config: DataConfig,
        split: str,
        seed: int = 0,
        degradations: DegradationConfig | None = None,
        stft_cfg: StftConfig | None = None,
    ):
        self.config = config
        self.stft = stft_cfg or StftConfig()
        self.split = split
        self.rng = np.random.default_rng(seed)
        self.degradations = degradations or DegradationConfig()
        self.length = segment_samples(config.segment_frames, self.stft)
        self.pieces = []
        for root in config.corpus:
            for row in read_corpus(root):
                if row["split"] == split and (
                    not config.categories or row["category"] in config.categories
                ):
                    self.pieces.append((Path(root) / row["file"], row.get("category", "music")))
        if not self.pieces:
            raise HistdenoiseError(f"no clean music for split {split!r} in {config.corpus}")
        self.noises = [
            n.path for root in config.noise for n in load_noise_dataset(root) if n.split == split
        ]

    def clean_segment(self) -> tuple[np.ndarray, str]:
        """A random segment (length samples) of a random piece, and its category."""
        import soundfile as sf

        path, category = self.pieces[self.rng.integers(len(self.pieces))]
        info = sf.info(str(path))
        for _ in range(10):
            start = int(self.rng.integers(0, max(1, info.frames - self.length)))
            x, _ = sf.read(
                str(path), start=start, frames=self.length, dtype="float32", always_2d=True
            )
            x = x.mean(axis=1)
            if x.size < self.length:
                x = np.pad(x, (0, self.length - x.size))
            if np.max(np.abs(x)) > 1e-3:  # skip near-silent excerpts
                break
        return x, category

    def noise_segment(self) -> np.ndarray:
        use_real = self.noises and self.rng.random() >= self.config.simulated_fraction
        if use_real:
            import soundfile as sf

            path = self.noises[self.rng.integers(len(self.noises))]
            x, sr = sf.read(str(path), dtype="float32", always_2d=True)
            return extend_by_revolutions(x.mean(axis=1), self.length, sr)
        parts = simulate(self.length, self.stft.sample_rate, self.degradations, self.rng)
        return sum(parts.values()) if parts else np.zeros(self.length)

    def example(self, snr_db: float | None = None) -> tuple[np.ndarray, np.ndarray, str]:
        """``(noisy, clean, category)``; ``snr_db`` fixed or drawn from the config."""
        clean, category = self.clean_segment()
        noise = self.noise_segment()
        snr = self.rng.uniform(*self.config.snr_db) if snr_db is None else snr_db
        gain = self.rng.uniform(*self.config.gain_db)
        noisy, clean = mix(clean, noise, snr, gain)
        return noisy, clean, category

    def spectrogram_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames, 1025, 2) noisy and clean spectrograms."""
        noisy, clean, _ = self.example()
        return to_channels(stft(noisy, self.stft)), to_channels(stft(clean, self.stft))


def make_dataset(source: ExampleSource, batch_size: int):
    """An endless batched ``tf.data.Dataset`` of (noisy, clean) spectrograms."""
    import tensorflow as tf

    frames, bins = source.config.segment_frames, source.stft.bins
    spec = tf.TensorSpec((frames, bins, 2), tf.float32)

    def gen():
        failures = 0
        while True:
            try:
                pair = source.spectrogram_pair()
            except Exception as exc:  # a bad file or example must not end a long run
                failures += 1
                if failures > 20:
                    raise
                print(f"histdenoise: skipped a training example ({exc})")
                continue
            failures = 0
            yield pair

    ds = tf.data.Dataset.from_generator(gen, output_signature=(spec, spec))
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def fixed_examples(
    config: DataConfig, split: str, count: int, seed: int, snr_db: float | None = None
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``count`` reproducible (noisy, clean, category) waveform pairs (for validation)."""
    source = ExampleSource(config, split, seed)
    return [source.example(snr_db) for _ in range(count)]
