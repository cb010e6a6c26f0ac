"""Thumps: low-frequency bumps that come back once per turn of the disc (a crack, a warp);
detection and streaming removal by a per-turn template (numpy only).

Core layer: imports numpy and nothing of TensorFlow, Keras, JAX or torch.

A thump repeats with the disc's revolution (0.77 s at 78 rpm), music does not. The median
over turns of the low band, each turn aligned to the others within a few milliseconds,
keeps the thump and loses the music; where that template is short (a bump, not a
continuous sound) and explains much of the low band, it is subtracted once per turn with
the turn's own alignment and gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histdenoise.audio import mono_start
from histdenoise.dehum import DETECT_SECONDS

DETHUMP_MODES = ("auto", "off")
RPM_RANGE = (70.0, 86.0)
"""Turn rates looked for: 78 rpm and transfers up to 10 % off speed."""
JITTER_SECONDS = 0.004
"""How far a thump may move from one turn to the next, seconds."""
LOWPASS_HZ = (120.0, 200.0)
"""The template's band: full below the first, none above the second (cosine between)."""


@dataclass(frozen=True)
class ThumpConfig:
    """Thresholds of `detect_thumps`.

    Attributes:
        min_explained: share of the low band's energy the aligned template must explain.
        max_duty: largest share of a turn the template may occupy (a bump, not a sound).
        min_turns: fewest whole turns to look at.
    """

    min_explained: float = 0.45
    max_duty: float = 0.45
    min_turns: int = 5


@dataclass(frozen=True)
class ThumpEstimate:
    """A thump found in a recording.

    Attributes:
        period: samples per turn.
        offset: sample index where a turn starts (the template is centred in the turn).
        template: (period,) the thump over one turn, zero away from it.
        sample_rate: Hz of ``period`` and ``template``.
        explained: share of the low band's energy the template explains.
    """

    period: int
    offset: int
    template: np.ndarray
    sample_rate: int
    explained: float

    def at_rate(self, sample_rate: int) -> ThumpEstimate:
        """The same thump at another sample rate (template resampled with soxr)."""
        if sample_rate == self.sample_rate:
            return self
        import soxr

        ratio = sample_rate / self.sample_rate
        period = round(self.period * ratio)
        template = soxr.resample(self.template, self.sample_rate, sample_rate, "HQ")
        template = np.pad(template, (0, max(0, period - len(template))))[:period]
        offset = round(self.offset * ratio) % period
        return ThumpEstimate(period, offset, template, sample_rate, self.explained)

    def to_dict(self) -> dict:
        active = np.flatnonzero(self.template)
        return {
            "rpm": round(60.0 * self.sample_rate / self.period, 3),
            "first_at_s": round((self.offset + int(active[0])) % self.period
                                / self.sample_rate, 4),
            "length_ms": round(1000 * (active[-1] - active[0] + 1) / self.sample_rate, 1),
            "explained": round(self.explained, 3),
        }


def _fast(n: int) -> int:
    """A power of two >= n (numpy's FFT is slow at lengths with large prime factors)."""
    return 1 << int(np.ceil(np.log2(max(n, 2))))


def _lowpass(x: np.ndarray, sample_rate: int) -> np.ndarray:
    size = _fast(len(x) + int(0.1 * sample_rate))  # zero padding: no wrap-around
    f = np.fft.rfftfreq(size, 1.0 / sample_rate)
    lo, hi = LOWPASS_HZ
    gain = 0.5 - 0.5 * np.cos(np.pi * np.clip((hi - f) / (hi - lo), 0.0, 1.0))
    return np.fft.irfft(np.fft.rfft(x, size) * gain, size)[: len(x)]


def _period(xl: np.ndarray, sample_rate: int) -> int | None:
    """Lag (samples) of the largest normalised autocorrelation of the low band within
    `RPM_RANGE`."""
    n = len(xl)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    ac = np.fft.irfft(np.abs(np.fft.rfft(xl, size)) ** 2, size)[:n]
    lo, hi = int(60 / RPM_RANGE[1] * sample_rate), int(60 / RPM_RANGE[0] * sample_rate)
    if hi >= n or ac[0] <= 0:
        return None
    lags = np.arange(lo, hi)
    return int(lags[np.argmax(ac[lo:hi] / (n - lags))])


def _best_shifts(segs: np.ndarray, template: np.ndarray, reach: int) -> np.ndarray:
    """For each row of ``segs`` (turns, period), the circular shift d in [-reach, reach]
    maximising <roll(template, d), row>."""
    p = len(template)
    size = _fast(2 * p)
    # circular correlation from a linear one of the row with the template repeated
    spec = np.fft.rfft(segs, size, axis=1)
    tt = np.conj(np.fft.rfft(np.concatenate([template, template]), size))
    c = np.fft.irfft(spec * tt, size, axis=1)  # c[k] = sum_i row[i] * tt2[i - k]
    # lag k in [-(p - 1), 0] sits at size + k; rolls d and d - p are the same shift
    lags = np.r_[0 : reach + 1, -reach:0]
    index = np.where(lags > 0, size - p + lags, size + lags) % size
    best = np.argmax(c[:, index], axis=1)
    return lags[best]


def detect_thumps(
    x: np.ndarray, sample_rate: int, mode: str = "auto", config: ThumpConfig | None = None
) -> ThumpEstimate | None:
    """Find a thump that repeats every turn.

    Args:
        x: (samples,) or (channels, samples) audio; channels are averaged; only the
            first `DETECT_SECONDS` are looked at.
        sample_rate: Hz.
        mode: ``auto`` or ``off``.
        config: thresholds.

    Returns:
        The thump's period, position and template, or None.
    """
    if mode not in DETHUMP_MODES:
        raise ValueError(f"dethump must be one of {DETHUMP_MODES}, got {mode!r}")
    cfg = config or ThumpConfig()
    x = mono_start(x, sample_rate, DETECT_SECONDS)
    if mode == "off" or not np.any(x):
        return None
    xl = _lowpass(x, sample_rate)
    period = _period(xl, sample_rate)
    if period is None or len(x) // period < cfg.min_turns:
        return None
    turns = len(x) // period
    segs = xl[: turns * period].reshape(turns, period)
    template = np.median(segs, axis=0)
    reach = int(JITTER_SECONDS * sample_rate)
    shifts = np.zeros(turns, int)
    for _ in range(3):
        shifts = _best_shifts(segs, template, reach)
        template = np.median([np.roll(s, -d) for s, d in zip(segs, shifts, strict=True)], 0)
    # keep the part of the turn where the template has energy, widened by 20 ms
    smooth = max(1, int(0.01 * sample_rate))
    energy = np.convolve(template**2, np.ones(smooth) / smooth, "same")
    widen = int(0.02 * sample_rate)
    active = np.convolve(energy > 0.05 * energy.max(), np.ones(2 * widen + 1), "same") > 0
    if active.mean() > cfg.max_duty:
        return None
    # centre the thump in the turn, so that a turn's edges are quiet
    centre = int(np.argmax(energy))
    move = centre - period // 2
    template = np.roll(template * active, -move)
    aligned = [np.roll(s, -d - move) for s, d in zip(segs, shifts, strict=True)]
    norm = float(template @ template)
    if norm <= 0:
        return None
    dots = np.array([a @ template for a in aligned])
    gains = np.clip(dots / norm, 0.0, None)
    explained = float(np.sum(2 * gains * dots - gains**2 * norm) / np.sum(segs**2))
    if explained < cfg.min_explained:
        return None
    return ThumpEstimate(period, move % period, template, sample_rate, explained)


class ThumpRemover:
    """Streaming subtraction of a per-turn thump template.

    Each turn's thump is found within `JITTER_SECONDS` of where the last one was (so
    speed drift is followed), scaled by a least-squares gain per channel, and subtracted.
    The output lags the input by up to two turns inside the object; `flush` returns the
    rest, so the output has as many samples as the input, aligned with it.

    Args:
        thump: what to remove (at ``thump.sample_rate``, the rate of the blocks).
        channels: channel count of the blocks.
    """

    def __init__(self, thump: ThumpEstimate, channels: int):
        self.period = thump.period
        self.template = thump.template
        self.norm = float(thump.template @ thump.template)
        self.reach = int(JITTER_SECONDS * thump.sample_rate)
        self._fft_size = 1 << int(np.ceil(np.log2(self.period + 2 * self.reach)))
        self._template_fft = np.conj(np.fft.rfft(self.template, self._fft_size))
        self.channels = channels
        self._buf = np.zeros((channels, 0))
        self._base = 0  # absolute index of _buf[:, 0]
        self._emitted = 0  # samples returned so far
        first = thump.offset - thump.period
        self._next = first  # absolute start of the next turn to process
        self._drift = 0
        self._gains = np.ones(channels)
        self.turns = 0
        """Turns from which a thump was subtracted."""

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Feed (channels, samples); returns the samples now final, float32."""
        self._buf = np.concatenate([self._buf, np.asarray(block, np.float64)], axis=1)
        return self._drain(final=False)

    def flush(self) -> np.ndarray:
        """The remaining samples, float32."""
        return self._drain(final=True)

    def _window(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The buffered samples at absolute [start, start + length) (zeros outside) and
        which of them exist."""
        out = np.zeros((self.channels, length))
        valid = np.zeros(length, bool)
        lo, hi = max(start, self._base), min(start + length, self._base + self._buf.shape[1])
        if hi > lo:
            out[:, lo - start : hi - start] = self._buf[:, lo - self._base : hi - self._base]
            valid[lo - start : hi - start] = True
        return out, valid

    def _turn(self) -> None:
        """Find, scale and subtract the thump of the turn starting at ``_next``."""
        start = self._next + self._drift
        r = self.reach
        mono = self._window(start - r, self.period + 2 * r)[0].mean(axis=0)
        # <template, signal shifted by d> for every d in [-r, r], by one correlation
        spec = np.fft.rfft(mono, self._fft_size)
        scores = np.fft.irfft(spec * self._template_fft, self._fft_size)[: 2 * r + 1]
        best_d = int(np.argmax(scores)) - r
        at = start + best_d
        seg, have = self._window(at, self.period)
        t = self.template * have
        if t @ t >= 0.5 * self.norm:
            self._gains = np.clip(seg @ t / (t @ t), 0.0, 2.0)
            self._drift += best_d
        lo, hi = max(at, self._base), min(at + self.period, self._base + self._buf.shape[1])
        if hi > lo:
            piece = self.template[lo - at : hi - at]
            self._buf[:, lo - self._base : hi - self._base] -= self._gains[:, None] * piece
            self.turns += 1
        self._next += self.period

    def _drain(self, final: bool) -> np.ndarray:
        end = self._base + self._buf.shape[1]
        while self._next + self._drift + self.period + 2 * self.reach <= end or (
            final and self._next + self._drift - self.reach < end
        ):
            self._turn()
        # samples before the next turn's earliest reach are final
        ready = end if final else min(end, self._next + self._drift - 2 * self.reach)
        take = max(0, ready - self._base)
        out = self._buf[:, :take]
        self._buf = self._buf[:, take:]
        self._base += take
        return out.astype(np.float32)
