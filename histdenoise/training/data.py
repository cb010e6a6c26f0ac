"""Training data: clean music segments mixed with gramophone noise, as spectrograms.

`ExampleSource` draws one (noisy, clean) pair at a time from a corpus split (random piece,
random offset) and a noise source (the simulator, real noise recordings, or both), mixed
as in the paper: both peak-normalised, noise at an SNR drawn from ``snr_db``, then a gain
drawn from ``gain_db`` on both. Beyond the paper, so that the model learns to keep what
historical records really hold:

- ``recording_chain``: a share of clean targets is coloured like an acoustic- or
  early electrical-era record (band limits, horn resonances; see
  `histdenoise.training.degradations.RecordingChain`): band-limited music is music, not noise;
- ``single_noise_fraction``: a share of examples carries one disturbance type alone;
- ``clean_fraction``: a share of examples carries no noise at all (do no harm).

`ExampleSource.batch` makes the batch of a given training step, spectrograms
(batch x frames x 1025 x 2), from that step's own seed (the same batch whichever process
makes it), and `BatchStream` makes batches ahead in worker processes.

Training layer: must not import histdenoise.notebook at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histdenoise.errors import HistdenoiseError, check_keys
from histdenoise.stft import StftConfig, stft, to_channels
from histdenoise.training.corpus import read_corpus
from histdenoise.training.degradations import (
    NOISE_TYPES,
    DegradationConfig,
    RecordingChain,
    mix,
    simulate,
)
from histdenoise.training.noise_folders import extend_by_revolutions, load_noise_dataset


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
        exclude_categories: leave these categories out (a held-out source of music).
        clean_fraction: share of examples with no noise added (the target is the input).
        single_noise_fraction: share of simulated-noise examples with one disturbance
            type alone (drawn uniformly from the enabled types).
        recording_chain: colouring of the clean music (acoustic/electrical era EQ);
            ``None`` leaves the music as rendered.
        degradations: the simulator's settings.
        cache_audio: decode every piece of the split once and keep it in memory
            (float32 mono, 44.1 kHz: about 635 MB per hour of music) instead of reading
            the file for every example; needed for pieces not at 44.1 kHz (Opus).
    """

    corpus: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    simulated_fraction: float = 0.5
    segment_frames: int = 256
    snr_db: tuple[float, float] = (2.0, 20.0)
    gain_db: tuple[float, float] = (-6.0, 4.0)
    categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    clean_fraction: float = 0.0
    single_noise_fraction: float = 0.0
    recording_chain: RecordingChain | None = None
    degradations: DegradationConfig = field(default_factory=DegradationConfig)
    cache_audio: bool = False

    def to_dict(self) -> dict:
        """JSON-ready settings (`from_dict` reads them back)."""
        from dataclasses import asdict

        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["snr_db"], d["gain_db"] = list(self.snr_db), list(self.gain_db)
        d["recording_chain"] = (
            None if self.recording_chain is None else asdict(self.recording_chain)
        )
        d["degradations"] = self.degradations.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        """Settings from a dict (a training JSON's ``data``); unknown keys are an error."""
        d = dict(d)
        check_keys("data settings", d, cls.__dataclass_fields__)
        for key in ("snr_db", "gain_db"):
            if key in d:
                d[key] = tuple(d[key])
        if d.get("recording_chain") is not None:
            d["recording_chain"] = RecordingChain.from_dict(d["recording_chain"])
        if "degradations" in d:
            d["degradations"] = DegradationConfig.from_dict(d["degradations"])
        return cls(**d)


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
        self.degradations = degradations or config.degradations
        self.length = segment_samples(config.segment_frames, self.stft)
        self.pieces = []
        for root in config.corpus:
            for row in read_corpus(root):
                category = row.get("category", "music")
                if (
                    row["split"] == split
                    and (not config.categories or category in config.categories)
                    and category not in config.exclude_categories
                ):
                    self.pieces.append((Path(root) / row["file"], category))
        self.seed = seed
        self._audio: dict[Path, np.ndarray] = {}
        if config.cache_audio:
            from concurrent.futures import ThreadPoolExecutor

            paths = list(dict.fromkeys(p for p, _ in self.pieces))
            with ThreadPoolExecutor(8) as pool:  # libsndfile decodes without the GIL
                arrays = pool.map(lambda p: load_mono(p, self.stft.sample_rate), paths)
                self._audio = dict(zip(paths, arrays, strict=True))
        if not self.pieces:
            raise HistdenoiseError(f"no clean music for split {split!r} in {config.corpus}")
        self.noises = [
            n.path for root in config.noise for n in load_noise_dataset(root) if n.split == split
        ]

    def audio(self, path: Path) -> np.ndarray:
        """The whole piece, float32 mono at the STFT's sample rate, decoded once."""
        if path not in self._audio:
            self._audio[path] = load_mono(path, self.stft.sample_rate)
        return self._audio[path]

    def _read(self, path: Path, start: int | None) -> tuple[np.ndarray, int]:
        """``length`` samples from ``start`` (random when None), and the piece's length."""
        if self.config.cache_audio:
            whole = self.audio(path)
            total = whole.size
            if start is None:
                start = int(self.rng.integers(0, max(1, total - self.length)))
            return whole[start : start + self.length], total
        import soundfile as sf

        total = sf.info(str(path)).frames
        if start is None:
            start = int(self.rng.integers(0, max(1, total - self.length)))
        x, _ = sf.read(str(path), start=start, frames=self.length, dtype="float32",
                       always_2d=True)
        return x.mean(axis=1), total

    def clean_segment(self) -> tuple[np.ndarray, str]:
        """A random segment (length samples) of a random piece, and its category."""
        path, category = self.pieces[self.rng.integers(len(self.pieces))]
        for _ in range(10):
            x, _ = self._read(path, None)
            if x.size < self.length:
                x = np.pad(x, (0, self.length - x.size))
            if np.max(np.abs(x)) > 1e-3:  # skip near-silent excerpts
                break
        return x, category

    def noise_segment(self, degradations: DegradationConfig | None = None) -> np.ndarray:
        """``length`` samples of noise: a real recording or the simulator (all enabled
        types, or with ``single_noise_fraction`` one type alone); ``degradations``
        replaces the source's simulator settings for this segment."""
        use_real = self.noises and self.rng.random() >= self.config.simulated_fraction
        if use_real:
            path = self.noises[self.rng.integers(len(self.noises))]
            return extend_by_revolutions(
                load_mono(path, self.stft.sample_rate), self.length, self.stft.sample_rate
            )
        degradations = degradations or self.degradations
        if self.rng.random() < self.config.single_noise_fraction:
            names = [n for n in degradations.enabled() if n in NOISE_TYPES]
            degradations = degradations.alone(names[int(self.rng.integers(len(names)))])
        parts = simulate(self.length, self.stft.sample_rate, degradations, self.rng)
        return sum(parts.values()) if parts else np.zeros(self.length)

    def example(self, snr_db: float | None = None) -> tuple[np.ndarray, np.ndarray, str]:
        """``(noisy, clean, category)``; ``snr_db`` fixed or drawn from the config."""
        clean, category = self.clean_segment()
        if self.config.recording_chain is not None:
            clean = self.config.recording_chain.apply(clean, self.stft.sample_rate, self.rng)
        snr = self.rng.uniform(*self.config.snr_db) if snr_db is None else snr_db
        gain = self.rng.uniform(*self.config.gain_db)
        if snr_db is None and self.rng.random() < self.config.clean_fraction:
            noise = np.zeros(self.length)
        else:
            noise = self.noise_segment()
        noisy, clean = mix(clean, noise, snr, gain)
        return noisy, clean, category

    def batch(self, step: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of training step ``step``: (size, frames, 1025, 2) noisy and clean.

        Drawn from a random stream seeded by (source seed, step) alone, so the same step
        gives the same batch in any process and after a resume.
        """
        self.rng = np.random.default_rng([self.seed, step])
        pairs = [self.spectrogram_pair() for _ in range(size)]
        return (np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))

    def spectrogram_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames, 1025, 2) noisy and clean spectrograms."""
        noisy, clean, _ = self.example()
        return to_channels(stft(noisy, self.stft)), to_channels(stft(clean, self.stft))


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """A whole audio file as float32 mono at ``sample_rate`` Hz (resampled with soxr, or
    SciPy where soxr is not installed)."""
    import soundfile as sf

    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if rate != sample_rate:
        try:
            import soxr

            x = soxr.resample(x, rate, sample_rate)
        except ImportError:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(rate, sample_rate)
            x = resample_poly(x, sample_rate // g, rate // g)
    return np.ascontiguousarray(x, dtype=np.float32)


class BatchStream:
    """Training batches made ahead in worker processes.

    ``get(step)`` returns `ExampleSource.batch` of that step; the next ``ahead`` steps
    are already being made. Workers are forked from the process that builds the stream
    (sharing a source's decoded audio), so build it before any accelerator runtime
    starts. ``workers=0`` makes batches in the calling process.

    Args:
        source: the training examples.
        batch_size: examples per batch.
        workers: processes (0: none).
        ahead: batches in flight.
    """

    def __init__(self, source: ExampleSource, batch_size: int, workers: int = 0, ahead: int = 0):
        self.source = source
        self.batch_size = batch_size
        self.ahead = max(ahead, workers * 2)
        self.pending: dict[int, object] = {}
        self.pool = None
        if workers > 0:
            self.pool = safe_context().Pool(workers, initializer=_worker_init,
                                            initargs=(source,))

    def get(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The batch of ``step`` (steps are asked for in increasing order)."""
        if self.pool is None:
            return self.source.batch(step, self.batch_size)
        for s in list(self.pending):
            if s < step:
                del self.pending[s]
        for s in range(step, step + self.ahead + 1):
            if s not in self.pending:
                self.pending[s] = self.pool.apply_async(_worker_batch, (s, self.batch_size))
        return self.pending.pop(step).get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def safe_context():
    """A multiprocessing context whose workers cannot inherit a held lock: ``fork`` (cheap,
    shares memory) while TensorFlow is not loaded, else ``forkserver`` (or ``spawn``).

    A forked child of a process with TensorFlow's threads can deadlock on a lock one of
    them held at the fork (seen: a corpus-builder worker stuck in a futex).
    """
    import multiprocessing as mp
    import sys

    methods = mp.get_all_start_methods()
    if "tensorflow" not in sys.modules and "fork" in methods:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


_WORKER: dict[str, ExampleSource] = {}
"""The source of a `BatchStream` worker process (set once, when the worker starts)."""


def _worker_init(source: ExampleSource) -> None:
    _WORKER["source"] = source


def _worker_batch(step: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    return _WORKER["source"].batch(step, size)


def fixed_examples(
    config: DataConfig, split: str, count: int, seed: int, snr_db: float | None = None
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``count`` reproducible (noisy, clean, category) waveform pairs (for validation)."""
    source = ExampleSource(config, split, seed)
    return [source.example(snr_db) for _ in range(count)]
