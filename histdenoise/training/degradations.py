"""Simulated gramophone degradations: the noise types, their settings, and mixing.

Each additive noise type is a dataclass of parameters (ranges are drawn uniformly per
example) and a generator ``render(n, sr, rng) -> (n,) float64``. `simulate` renders the
enabled ones; `mix` combines clean music and noise as in the paper. Real noise recordings
(folders of them, and lengthening them) are `histdenoise.training.noise_folders`.

Parameter values come from the restoration literature and from measurements of 78 rpm
transfers (Godsill & Rayner, "Digital Audio Restoration", 1998; Vaseghi, "Advanced Digital
Signal Processing and Noise Reduction"; the Gramophone Record Noise Dataset of Moliner &
Välimäki, 2022):

- A 78 rpm disc turns once per 60/78 = 0.769 s, so surface damage repeats at 1.3 Hz: hiss
  level is modulated at that rate, and scratches give a click or a thump every turn.
- Clicks last from a few samples to a few milliseconds (most under 1 ms), arrive at a few
  to tens per second on worn shellac, and peak 10-40 dB above the music: heavy-tailed.
- Crackle: hundreds to thousands of tiny impulses per second, 20-40 dB below clicks.
- Thumps (large scratches, warps): decaying low-frequency oscillations of 20-100 Hz lasting
  50-500 ms.
- Hum: mains 50 or 60 Hz and harmonics; rumble: turntable noise below about 30 Hz.

Training layer: must not import histdenoise.notebook, TensorFlow or Keras at module level,
nor `histdenoise.training.noise_folders` (which imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from scipy import signal

from histdenoise.errors import check_keys

REVOLUTION_S = 60.0 / 78.0
"""Seconds per turn of a 78 rpm disc."""


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


@dataclass
class Hiss:
    """Broadband surface noise, 1/f^slope shaped, band-limited, level-modulated per turn.

    Attributes:
        slope: spectral slope exponent (0 white, 1 pink).
        highcut_hz: upper band edge of the transfer chain.
        modulation: depth of the once-per-turn level modulation (0..1).
    """

    slope: tuple[float, float] = (0.3, 1.2)
    highcut_hz: tuple[float, float] = (6000.0, 16000.0)
    modulation: tuple[float, float] = (0.0, 0.4)

    def render(self, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        from scipy import fft

        size = fft.next_fast_len(n, real=True)  # shaped at a fast FFT length, then cut
        spec = fft.rfft(rng.standard_normal(size))
        f = np.fft.rfftfreq(size, 1.0 / sr)
        f[0] = f[1] if size > 1 else 1.0
        hi = min(_uniform(rng, self.highcut_hz), 0.45 * sr)
        shape = f ** (-0.5 * _uniform(rng, self.slope)) / np.sqrt(1 + (f / hi) ** 8)
        x = fft.irfft(spec * shape, size)[:n]
        t = np.arange(n) / sr
        depth = _uniform(rng, self.modulation)
        x *= 1 + depth * np.sin(2 * np.pi * t / REVOLUTION_S + rng.uniform(0, 2 * np.pi))
        return x / (_rms(x) + 1e-12)


def _click_shape(length: int, rng: np.random.Generator) -> np.ndarray:
    """One of: a decaying oscillation, a half-sine bump, a noise burst; random polarity."""
    t = np.arange(length)
    kind = rng.integers(3)
    if kind == 0:
        period = rng.uniform(2, max(3, length / 2))
        shape = np.exp(-4 * t / length) * np.cos(2 * np.pi * t / period)
    elif kind == 1:
        shape = np.sin(np.pi * (t + 0.5) / length)
    else:
        shape = rng.standard_normal(length) * np.hanning(length + 2)[1:-1]
    return shape * rng.choice([-1.0, 1.0]) / (np.max(np.abs(shape)) + 1e-12)


@dataclass
class Clicks:
    """Impulsive clicks: Poisson arrivals, heavy-tailed amplitudes, some in bursts, some
    repeating every turn (a scratch).

    Attributes:
        rate_hz: mean clicks per second.
        duration_ms: click length range.
        pareto_shape: tail index of the amplitude distribution (smaller: heavier).
        burst_prob: probability that a click brings 2-6 more within 20 ms.
        scratches: number of clicks that repeat every revolution.
    """

    rate_hz: tuple[float, float] = (1.0, 25.0)
    duration_ms: tuple[float, float] = (0.05, 4.0)
    pareto_shape: float = 2.0
    burst_prob: float = 0.15
    scratches: tuple[int, int] = (0, 3)

    def render(self, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        x = np.zeros(n)
        count = rng.poisson(_uniform(rng, self.rate_hz) * n / sr)
        starts = list(rng.integers(0, max(1, n), count))
        for s in list(starts):
            if rng.random() < self.burst_prob:
                starts += list(s + rng.integers(1, int(0.02 * sr), rng.integers(2, 7)))
        period = int(REVOLUTION_S * sr)
        for _ in range(rng.integers(self.scratches[0], self.scratches[1] + 1)):
            first = int(rng.integers(0, period))
            starts += list(range(first, n, period))
        for s in starts:
            length = max(1, int(np.exp(rng.uniform(*np.log(self.duration_ms))) * sr / 1000))
            amp = rng.pareto(self.pareto_shape) + 1.0
            seg = _click_shape(length, rng) * amp
            end = min(n, s + length)
            if s < n:
                x[s:end] += seg[: end - s]
        return x / (_rms(x) + 1e-12) if np.any(x) else x


@dataclass
class Crackle:
    """Dense tiny impulses (1-3 samples), high-pass coloured.

    Attributes:
        rate_hz: impulses per second.
    """

    rate_hz: tuple[float, float] = (200.0, 3000.0)

    def render(self, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        x = np.zeros(n)
        count = rng.poisson(_uniform(rng, self.rate_hz) * n / sr)
        pos = rng.integers(0, max(1, n), count)
        x[pos] = rng.laplace(size=count)
        x = np.convolve(x, [1.0, -0.6, 0.2])[:n]  # causal high-pass colouring
        return x / (_rms(x) + 1e-12) if np.any(x) else x


@dataclass
class Thumps:
    """Decaying low-frequency oscillations repeating every revolution.

    Attributes:
        freq_hz: oscillation frequency.
        decay_ms: time constant of the decay.
        count: distinct thump sources (each repeats every turn, with jitter).
    """

    freq_hz: tuple[float, float] = (20.0, 100.0)
    decay_ms: tuple[float, float] = (30.0, 200.0)
    count: tuple[int, int] = (1, 2)

    def render(self, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        x = np.zeros(n)
        period = int(REVOLUTION_S * sr)
        for _ in range(rng.integers(self.count[0], self.count[1] + 1)):
            f0 = _uniform(rng, self.freq_hz)
            tau = _uniform(rng, self.decay_ms) / 1000
            length = int(5 * tau * sr)
            t = np.arange(length) / sr
            pulse = np.exp(-t / tau) * np.sin(2 * np.pi * f0 * t * (1 - 0.3 * t / t[-1]))
            for start in range(int(rng.integers(0, period)), n, period):
                s = min(n - 1, max(0, start + int(rng.normal(0, 0.002 * sr))))
                end = min(n, s + length)
                x[s:end] += pulse[: end - s] * rng.uniform(0.7, 1.0)
        return x / (_rms(x) + 1e-12) if np.any(x) else x


@dataclass
class Hum:
    """Mains hum with harmonics.

    Attributes:
        mains_hz: 50 or 60, chosen at random.
        harmonics: number of harmonics (each 6-20 dB weaker than the one below).
    """

    mains_hz: tuple[float, ...] = (50.0, 60.0)
    harmonics: tuple[int, int] = (2, 8)

    def render(self, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        f0 = float(rng.choice(self.mains_hz)) * (1 + rng.normal(0, 0.002))
        t = np.arange(n) / sr
        x = np.zeros(n)
        amp = 1.0
        for h in range(1, rng.integers(self.harmonics[0], self.harmonics[1] + 1) + 1):
            if h * f0 < 0.45 * sr:
                x += amp * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
            amp *= 10 ** (-rng.uniform(6, 20) / 20)
        return x / (_rms(x) + 1e-12)


@dataclass
class Rumble:
    """Low-pass noise below about 30 Hz, with the 1.3 Hz turn component.

    Attributes:
        cutoff_hz: low-pass corner.
    """

    cutoff_hz: tuple[float, float] = (10.0, 30.0)

    def render(self, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
        sos = signal.butter(4, _uniform(rng, self.cutoff_hz), fs=sr, output="sos")
        x = signal.sosfilt(sos, rng.standard_normal(n + sr))[sr:]
        t = np.arange(n) / sr
        x = x / (_rms(x) + 1e-12)
        x += 0.5 * np.sin(2 * np.pi * t / REVOLUTION_S + rng.uniform(0, 2 * np.pi))
        return x / (_rms(x) + 1e-12)


NOISE_TYPES = ("hiss", "clicks", "crackle", "thumps", "hum", "rumble")


def _loguniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))


def _peaking_sos(f0: float, q: float, gain_db: float, sample_rate: int) -> np.ndarray:
    """One peaking-EQ biquad (the audio-EQ-cookbook form) as a (1, 6) SciPy sos row."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * f0 / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return np.concatenate([b / den[0], den / den[0]])[None]


@dataclass
class RecordingChain:
    """The sound of the recording process itself, applied to clean music.

    Acoustic-era records (before 1925: horn, diaphragm, cutting stylus) pass roughly
    200 Hz - 5 kHz with strong horn resonances; early electrical ones (microphone,
    1925-1950) roughly 60 Hz - 8 kHz, flatter. A clean target coloured this way teaches
    a model that band-limited music is music, not noise to remove.

    Attributes:
        acoustic: probability of the acoustic chain.
        electrical: probability of the electrical chain (otherwise the music is kept).
        acoustic_band_hz, electrical_band_hz: ranges of the low and high corners.
        resonances: number of peaking resonances (acoustic; electrical gets at most 1).
        resonance_db: their gain range.
    """

    acoustic: float = 0.3
    electrical: float = 0.2
    acoustic_band_hz: tuple[tuple[float, float], tuple[float, float]] = (
        (120.0, 400.0), (2500.0, 6500.0))
    electrical_band_hz: tuple[tuple[float, float], tuple[float, float]] = (
        (40.0, 150.0), (5000.0, 10000.0))
    resonances: tuple[int, int] = (1, 3)
    resonance_db: tuple[float, float] = (2.0, 9.0)

    @classmethod
    def from_dict(cls, d: dict) -> RecordingChain:
        return _from_dict(cls, d)

    def apply(self, x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        """``x`` (n,) through a randomly drawn chain (or unchanged), float32."""
        draw = rng.random()
        if draw < self.acoustic:
            band, count, strong = self.acoustic_band_hz, self.resonances, True
        elif draw < self.acoustic + self.electrical:
            band, count, strong = self.electrical_band_hz, (0, 1), False
        else:
            return np.asarray(x, np.float32)
        low, high = _loguniform(rng, band[0]), _loguniform(rng, band[1])
        sos = [
            signal.butter(int(rng.integers(1, 4)), low, "highpass", fs=sr, output="sos"),
            signal.butter(int(rng.integers(2, 7)), min(high, 0.45 * sr), fs=sr, output="sos"),
        ]
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            gain = _uniform(rng, self.resonance_db) * (1.0 if strong else 0.5)
            sos.append(_peaking_sos(_loguniform(rng, (300.0, 3500.0)),
                                    rng.uniform(1.0, 5.0), gain, sr))
        y = signal.sosfilt(np.concatenate(sos), np.asarray(x, np.float64))
        return y.astype(np.float32)


def _from_dict(cls, d: dict):
    """``cls(**d)`` with lists as tuples; unknown keys are an error naming the known ones."""
    check_keys(f"{cls.__name__} settings", d, cls.__dataclass_fields__)

    def tup(v):
        return tuple(tup(e) for e in v) if isinstance(v, list) else v

    return cls(**{k: tup(v) for k, v in d.items()})


@dataclass
class DegradationConfig:
    """Which noise types to add and how loud each is relative to the hiss (dB).

    A type set to None is off. Levels are drawn uniformly from the ranges per example.
    """

    hiss: Hiss | None = field(default_factory=Hiss)
    clicks: Clicks | None = field(default_factory=Clicks)
    crackle: Crackle | None = field(default_factory=Crackle)
    thumps: Thumps | None = field(default_factory=Thumps)
    hum: Hum | None = field(default_factory=Hum)
    rumble: Rumble | None = field(default_factory=Rumble)
    level_db: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "hiss": (0.0, 0.0),
            "clicks": (0.0, 12.0),
            "crackle": (-18.0, -3.0),
            "thumps": (-6.0, 12.0),
            "hum": (-30.0, 0.0),
            "rumble": (-24.0, 0.0),
        }
    )
    probability: dict[str, float] = field(
        default_factory=lambda: {
            "hiss": 1.0,
            "clicks": 0.9,
            "crackle": 0.7,
            "thumps": 0.5,
            "hum": 0.5,
            "rumble": 0.5,
        }
    )

    def to_dict(self) -> dict:
        """JSON-ready settings: each type's parameters (None when off), levels and
        probabilities."""
        from dataclasses import asdict

        d = {n: (None if getattr(self, n) is None else asdict(getattr(self, n)))
             for n in NOISE_TYPES}
        d["level_db"] = {k: list(v) for k, v in self.level_db.items()}
        d["probability"] = dict(self.probability)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DegradationConfig:
        """Settings from a dict (a training JSON's ``data.degradations``): a type given as
        None is off, a dict overrides its parameters; ``level_db`` and ``probability``
        update the defaults. Unknown keys are an error."""
        check_keys("degradation settings", d, (*NOISE_TYPES, "level_db", "probability"))
        cfg = cls()
        classes = {"hiss": Hiss, "clicks": Clicks, "crackle": Crackle, "thumps": Thumps,
                   "hum": Hum, "rumble": Rumble}
        for name in NOISE_TYPES:
            if name in d:
                value = d[name]
                setattr(cfg, name, None if value is None else _from_dict(classes[name], value))
        for key in ("level_db", "probability"):
            extra = d.get(key, {})
            check_keys(f"noise types in {key}", extra, NOISE_TYPES)
            table = getattr(cfg, key)
            table.update({k: tuple(v) if isinstance(v, list) else v for k, v in extra.items()})
        return cfg

    def alone(self, name: str) -> DegradationConfig:
        """This config with only ``name`` enabled, always present (its parameters kept)."""
        from dataclasses import replace

        cfg = replace(self, **{n: None for n in NOISE_TYPES if n != name})
        cfg.probability = dict.fromkeys(NOISE_TYPES, 1.0)
        cfg.level_db = dict(self.level_db)
        return cfg

    @classmethod
    def only(cls, *names: str) -> DegradationConfig:
        """A config with just the named types, each always present."""
        unknown = set(names) - set(NOISE_TYPES)
        if unknown:
            raise ValueError(f"unknown noise types {sorted(unknown)}; known: {NOISE_TYPES}")
        cfg = cls(**{n: None for n in NOISE_TYPES if n not in names})
        cfg.probability = dict.fromkeys(NOISE_TYPES, 1.0)
        return cfg

    def enabled(self) -> list[str]:
        return [
            f.name
            for f in fields(self)
            if f.name in NOISE_TYPES and getattr(self, f.name) is not None
        ]


def simulate(
    n: int, sr: int, config: DegradationConfig | None = None, seed: int | np.random.Generator = 0
) -> dict[str, np.ndarray]:
    """Render each enabled noise type: name -> (n,) float64, at its drawn relative level.

    ``sum(simulate(...).values())`` is the total noise. Deterministic for a given seed.
    """
    config = config or DegradationConfig()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = {}
    for name in config.enabled():
        sub = np.random.default_rng(rng.integers(2**63))
        if sub.random() > config.probability.get(name, 1.0):
            continue
        gain = 10 ** (_uniform(sub, config.level_db.get(name, (0.0, 0.0))) / 20)
        out[name] = getattr(config, name).render(n, sr, sub) * gain
    return out


def mix(
    clean: np.ndarray, noise: np.ndarray, snr_db: float, gain_db: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Paper-style mixture: both peak-normalised, noise scaled to ``snr_db`` (by power),
    then both scaled by ``gain_db``.

    Returns:
        ``(noisy, clean)``, float32, same length as ``clean``.
    """
    clean = np.asarray(clean, np.float64)
    noise = np.asarray(noise, np.float64)[: clean.size]
    clean = clean / (np.max(np.abs(clean)) + 1e-12)
    noise = noise / (np.max(np.abs(noise)) + 1e-12)
    p_clean, p_noise = np.var(clean), np.var(noise)
    scale = np.sqrt(p_clean / (10 ** (snr_db / 10) * p_noise)) if p_noise > 0 else 0.0
    g = 10 ** (gain_db / 20)
    noisy = (clean + scale * noise) * g
    return noisy.astype(np.float32), (clean * g).astype(np.float32)
