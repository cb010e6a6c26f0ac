"""Mains hum: detection and removal by a tracked sum of sinusoids (numpy only).

Core layer: imports numpy and nothing of TensorFlow, Keras, JAX or torch.

Hum is the one disturbance that a long analysis window separates from music far better
than a spectrogram network can: it sits at fixed frequencies (50 or 60 Hz and their
multiples, shifted a few per cent when a disc is played off speed) for the whole side,
while notes come and go. `detect_hum` looks for it in the median over time of short
power spectra (a note held for a few seconds does not survive the median; hum does) and
`HumRemover` subtracts, block by block, the sinusoids fitted at those frequencies, with
amplitude and phase re-estimated every second so that slow drift is followed. Music
further than about half a hertz from a hum harmonic is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histdenoise.audio import mono_start

DEHUM_MODES = ("auto", "off", "50", "60")
"""``auto``: look for 50- and 60-Hz hum and remove it where found; ``off``; ``50``/``60``:
look only near that mains frequency, with a lower bar for what counts as present."""

MAINS_HZ = (50.0, 60.0)
SPEED_RANGE = {"auto": 0.006, "50": 0.04, "60": 0.04}
"""How far (fraction) the hum fundamental may sit from the nominal mains frequency: mains
hum of the transfer chain is within a fraction of a per cent; a disc played off speed
shifts hum recorded into it by a few per cent, which is looked for only when the mains
frequency is given."""
MAX_HARMONIC_HZ = 1500.0
MAX_GAP = 3
"""Harmonics are collected upwards until this many in a row are missing."""
FRAME_SECONDS = 2.0
"""Length of the removal's analysis frames (Hann, half overlap): the band taken around
each harmonic is about 1 / FRAME_SECONDS Hz wide."""
PERCENTILE = 10.0
"""The spectrum `detect_hum` reads is this percentile over time of short power spectra:
hum is there all the time, a note (even a pedal held for half the piece) is not."""
DETECT_SECONDS = 120.0
"""Audio looked at by `detect_hum` (the start of the recording), seconds."""


@dataclass(frozen=True)
class HumEstimate:
    """Hum found in a recording.

    Attributes:
        f0_hz: fundamental, Hz.
        harmonics: multiples of ``f0_hz`` that stand out (1 = the fundamental).
        prominence_db: for each of ``harmonics``, its peak above the neighbouring
            spectrum (median over time), dB.
    """

    f0_hz: float
    harmonics: tuple[int, ...]
    prominence_db: tuple[float, ...]

    def to_dict(self) -> dict:
        return {
            "f0_hz": round(self.f0_hz, 3),
            "harmonics": list(self.harmonics),
            "prominence_db": [round(p, 1) for p in self.prominence_db],
        }


@dataclass(frozen=True)
class HumDetectConfig:
    """Thresholds of `detect_hum`.

    Attributes:
        present_db: a recording has hum when its fundamental or second harmonic (full-wave
            rectified hum is strongest at twice the mains frequency) stands this far above
            its neighbourhood (dB).
        harmonic_db: a harmonic is removed when it stands this far out (dB).
        forced_present_db: ``present_db`` when the mains frequency is given (``50``/``60``).
    """

    present_db: float = 15.0
    harmonic_db: float = 10.0
    forced_present_db: float = 6.0


class _Spectrum:
    """Median over time of power spectra of a mono signal, up to `MAX_HARMONIC_HZ` * 1.1."""

    def __init__(self, x: np.ndarray, sample_rate: int):
        seconds = float(np.clip(len(x) / sample_rate / 3, 1.0, 4.0))
        seg = min(len(x), int(seconds * sample_rate))
        hop = max(1, seg // 2)
        starts = range(0, len(x) - seg + 1, hop)
        window = np.hanning(seg)
        top = int(MAX_HARMONIC_HZ * 1.1 * seg / sample_rate) + 1
        power = np.stack(
            [np.abs(np.fft.rfft(window * x[s : s + seg]))[:top] ** 2 for s in starts]
        )
        self.median = np.percentile(power, PERCENTILE, axis=0) + 1e-30
        self.hz_per_bin = sample_rate / seg

    def _bins(self, lo_hz: float, hi_hz: float) -> slice:
        lo = max(0, int(np.ceil(lo_hz / self.hz_per_bin)))
        hi = min(len(self.median), int(np.floor(hi_hz / self.hz_per_bin)) + 1)
        return slice(lo, max(lo, hi))

    def _background(self, f_hz: float) -> float:
        """Median of the spectrum 1.5-10 Hz either side of ``f_hz`` (0 where none)."""
        guard = max(1.5, 2.5 * self.hz_per_bin)
        around = np.concatenate([
            self.median[self._bins(f_hz - guard - 8.5, f_hz - guard)],
            self.median[self._bins(f_hz + guard, f_hz + guard + 8.5)],
        ])
        return float(np.median(around)) if around.size else 0.0

    def level_db(self, f_hz: float) -> float:
        """The spectrum interpolated at ``f_hz`` above its neighbourhood, dB, within
        0..80 (a smooth score for the f0 search)."""
        background = self._background(f_hz)
        if background <= 0:
            return 0.0
        value = np.interp(f_hz / self.hz_per_bin, np.arange(len(self.median)), self.median)
        return float(np.clip(10 * np.log10(value / background), 0.0, 80.0))

    def prominence_db(self, f_hz: float) -> tuple[float, float]:
        """(peak within +-0.6 Hz of ``f_hz`` above the median of 1.5-10 Hz around, dB;
        the peak's frequency, Hz)."""
        near = self._bins(f_hz - max(0.6, self.hz_per_bin), f_hz + max(0.6, self.hz_per_bin))
        background = self._background(f_hz)
        if near.stop <= near.start or background <= 0:
            return 0.0, f_hz
        k = near.start + int(np.argmax(self.median[near]))
        peak_hz = k * self.hz_per_bin
        if 0 < k < len(self.median) - 1:  # parabolic interpolation of the log peak
            a, b, c = np.log(self.median[k - 1 : k + 2])
            denom = a - 2 * b + c
            if denom < 0:
                peak_hz += 0.5 * (a - c) / denom * self.hz_per_bin
        return float(10 * np.log10(self.median[k] / background)), peak_hz


def detect_hum(
    x: np.ndarray,
    sample_rate: int,
    mode: str = "auto",
    config: HumDetectConfig | None = None,
) -> HumEstimate | None:
    """Find mains hum in a recording.

    Args:
        x: (samples,) or (channels, samples) audio; channels are averaged; only the
            first `DETECT_SECONDS` are looked at.
        sample_rate: Hz.
        mode: one of `DEHUM_MODES`.
        config: thresholds.

    Returns:
        The hum's fundamental and the harmonics to remove, or None (no hum, ``mode`` is
        ``off``, or less than 3 s of audio: too little to tell hum from a held note).
    """
    if mode not in DEHUM_MODES:
        raise ValueError(f"dehum must be one of {DEHUM_MODES}, got {mode!r}")
    cfg = config or HumDetectConfig()
    x = mono_start(x, sample_rate, DETECT_SECONDS)
    if mode == "off" or len(x) < 3 * sample_rate or not np.any(x):
        return None
    spec = _Spectrum(x, sample_rate)
    families = MAINS_HZ if mode == "auto" else (float(mode),)
    best = (-np.inf, 0.0, 0.0, 0.0)
    span = SPEED_RANGE[mode]
    for base in families:
        lo, hi = base * (1 - span), base * (1 + span)
        for f0 in np.arange(lo, hi, 0.02):
            score = sum(spec.level_db(k * f0) for k in range(1, 5))
            if score > best[0]:
                best = (score, float(f0), lo, hi)
    _, f0, lo, hi = best
    # refine from the peaks of the prominent low harmonics
    peaks = [(k, *spec.prominence_db(k * f0)) for k in range(1, 5)]
    present = cfg.present_db if mode == "auto" else cfg.forced_present_db
    strong = [(k, p, hz) for k, p, hz in peaks if p >= present]
    if strong:
        weights = np.array([p for _, p, _ in strong])
        each = np.array([hz / k for k, _, hz in strong])
        f0 = float(np.sum(weights * each) / np.sum(weights))
        if np.ptp(each) > max(0.1, spec.hz_per_bin / 4) or not lo <= f0 <= hi:
            return None  # the peaks are not multiples of one mains frequency: notes
    if max(p for _, p, _ in peaks[:2]) < present:
        return None
    harmonics, prominence = [], []
    top = min(MAX_HARMONIC_HZ, 0.45 * sample_rate)
    for k in range(1, int(top // f0) + 1):
        if harmonics and k - harmonics[-1] > MAX_GAP:
            break  # a lone peak far above the last harmonic is more likely a note
        p = spec.prominence_db(k * f0)[0]
        if p >= cfg.harmonic_db:
            harmonics.append(k)
            prominence.append(p)
    if not harmonics:
        return None
    return HumEstimate(f0, tuple(harmonics), tuple(prominence))


class HumRemover:
    """Streaming subtraction of the hum's sinusoids.

    Each `FRAME_SECONDS` frame (Hann window, hop half a frame) gets a least-squares
    amplitude and phase per harmonic (a windowed projection: the harmonics are many
    frame-bandwidths apart); the fitted sinusoids are cross-faded with the same window,
    whose half-overlapped copies sum to one, and subtracted. The output lags the input by
    up to 1.5 frames inside the object; `flush` returns the rest, so the output has as
    many samples as the input, aligned with it.

    Args:
        hum: what to remove.
        sample_rate: Hz of the blocks.
        channels: channel count of the blocks.
    """

    def __init__(self, hum: HumEstimate, sample_rate: int, channels: int):
        self.hop = max(1, int(FRAME_SECONDS * sample_rate) // 2)
        n = 2 * self.hop
        self.window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
        self.omega = 2 * np.pi * np.array([k * hum.f0_hz for k in hum.harmonics]) / sample_rate
        self.basis = np.exp(1j * np.outer(np.arange(n), self.omega))  # (n, K)
        self.channels = channels
        self._buf = np.zeros((channels, self.hop))  # left padding: the first frame's half
        self._valid = np.zeros(self.hop, bool)
        self._origin = -self.hop  # absolute sample index of _buf[:, 0]
        self._hum = np.zeros((channels, n))  # windowed hum of the last frame
        self._coef = np.zeros((channels, len(self.omega)), complex)
        self.removed_energy = 0.0
        """Sum of squares of what was subtracted (all channels)."""

    def _fit(self, frame: np.ndarray, valid: np.ndarray, start: int) -> np.ndarray:
        """The windowed hum over one frame, (channels, n), the frame starting at absolute
        sample ``start``; a frame mostly outside the signal continues the last fit."""
        w = self.window * valid
        total = w.sum()
        at = np.exp(1j * self.omega * start)  # (K,) phase of each harmonic at ``start``
        if total >= 0.5 * self.window.sum():
            self._coef = 2 * ((frame * w) @ np.conj(self.basis)) / total * np.conj(at)
        return np.real((self._coef * at) @ self.basis.T) * self.window

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Feed (channels, samples); returns the dehummed samples now final, float32."""
        block = np.asarray(block, dtype=np.float64)
        self._buf = np.concatenate([self._buf, block], axis=1)
        self._valid = np.concatenate([self._valid, np.ones(block.shape[1], bool)])
        return self._drain(final=False)

    def flush(self) -> np.ndarray:
        """The remaining samples, float32."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> np.ndarray:
        n, hop = 2 * self.hop, self.hop
        out = []
        while self._buf.shape[1] >= n or (final and np.any(self._valid)):
            frame, valid = self._buf[:, :n], self._valid[:n]
            if frame.shape[1] < n:
                pad = n - frame.shape[1]
                frame, valid = np.pad(frame, ((0, 0), (0, pad))), np.pad(valid, (0, pad))
            hum = self._fit(frame, valid, self._origin)
            # the frame's first half completes the previous frame's second half
            head = min(hop, self._buf.shape[1])
            done = self._hum[:, hop : hop + head] + hum[:, :head]
            keep = self._valid[:head]
            self.removed_energy += float(np.sum(done[:, keep] ** 2))
            out.append(self._buf[:, :head][:, keep] - done[:, keep])
            self._hum = hum
            self._buf, self._valid = self._buf[:, head:], self._valid[head:]
            self._origin += head
        if not out:
            return np.zeros((self.channels, 0), np.float32)
        return np.concatenate(out, axis=1).astype(np.float32)
