"""STFT conventions of the reference model (44.1 kHz, periodic Hamming 2048, hop 512).

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from histdenoise.errors import check_keys

SAMPLE_RATE = 44100
"""Hz: the rate the reference model works at (and the training corpus is rendered at)."""
N_FFT = 2048
"""Samples per STFT window and FFT: ``N_FFT // 2 + 1`` = 1025 bins."""
HOP = 512
"""Samples between STFT frames."""


@dataclass(frozen=True)
class StftConfig:
    """Short-time Fourier transform parameters.

    Attributes:
        sample_rate: Hz.
        n_fft: window and FFT length, samples; gives ``n_fft // 2 + 1`` bins.
        hop: frame advance, samples.
        window: window name; ``"hamming"`` is the periodic Hamming window.
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop: int = HOP
    window: str = "hamming"

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StftConfig:
        check_keys("STFT settings", d, cls.__dataclass_fields__)
        return cls(**d)


def analysis_window(cfg: StftConfig) -> np.ndarray:
    """The periodic window of length ``n_fft`` (float64)."""
    if cfg.window != "hamming":
        raise ValueError(f"unsupported window {cfg.window!r}")
    n = np.arange(cfg.n_fft)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * n / cfg.n_fft)


def synthesis_window(cfg: StftConfig) -> np.ndarray:
    """Window for overlap-add that inverts `stft` exactly where frames fully overlap.

    ``w / sum_k w(n + k * hop)**2``, the window `tf.signal.inverse_stft_window_fn` builds.
    """
    w = analysis_window(cfg)
    denom = np.zeros(cfg.n_fft)
    for shift in range(-cfg.n_fft + cfg.hop, cfg.n_fft, cfg.hop):
        lo, hi = max(0, shift), min(cfg.n_fft, cfg.n_fft + shift)
        denom[lo:hi] += w[lo - shift : hi - shift] ** 2
    return w / denom


def num_frames(samples: int, cfg: StftConfig, pad_end: bool = False) -> int:
    """Frames `stft` makes of ``samples`` samples (at least 0, or 1 with ``pad_end``)."""
    if pad_end:
        return -(-samples // cfg.hop) if samples > 0 else 0
    return max(0, 1 + (samples - cfg.n_fft) // cfg.hop)


def stft(x: np.ndarray, cfg: StftConfig, pad_end: bool = False) -> np.ndarray:
    """Frames from sample 0, no centring (the framing of ``tf.signal.stft``).

    Args:
        x: (..., samples) float.
        pad_end: zero-pad the end to ``ceil(samples / hop)`` frames, as the reference
            does at inference.

    Returns:
        (..., frames, bins) complex64.
    """
    x = np.asarray(x, dtype=np.float32)
    if pad_end:
        frames = num_frames(x.shape[-1], cfg, pad_end=True)
        need = (frames - 1) * cfg.hop + cfg.n_fft
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (need - x.shape[-1],), np.float32)], -1)
    view = np.lib.stride_tricks.sliding_window_view(x, cfg.n_fft, axis=-1)[..., :: cfg.hop, :]
    return np.fft.rfft(view * analysis_window(cfg).astype(np.float32), axis=-1).astype(np.complex64)


def istft_frames(spec: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """Windowed inverse FFT of each frame, ready for overlap-add.

    Args:
        spec: (..., frames, bins) complex.

    Returns:
        (..., frames, n_fft) float32.
    """
    frames = np.fft.irfft(spec, n=cfg.n_fft, axis=-1)
    return (frames * synthesis_window(cfg)).astype(np.float32)


def overlap_add(
    frames: np.ndarray, cfg: StftConfig, carry: np.ndarray | None = None
) -> np.ndarray:
    """Sum (..., frames, n_fft) frames at ``hop`` spacing: (..., (frames-1)*hop + n_fft).

    ``carry`` (..., at most ``(frames-1)*hop + n_fft`` samples) is added at the start
    first: the unfinished end of the previous call when a signal is summed in pieces.
    """
    n = frames.shape[-2]
    out = np.zeros(frames.shape[:-2] + ((n - 1) * cfg.hop + cfg.n_fft,), np.float32)
    if carry is not None:
        out[..., : carry.shape[-1]] += carry
    if n == 0:
        return out
    per_hop = cfg.n_fft // cfg.hop
    for k in range(per_hop):
        part = frames[..., k * cfg.hop : (k + 1) * cfg.hop]  # (..., frames, hop)
        flat = part.reshape(part.shape[:-2] + (n * cfg.hop,))
        out[..., k * cfg.hop : k * cfg.hop + n * cfg.hop] += flat
    return out


def istft(spec: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """Inverse of `stft`: (..., frames, bins) complex -> (..., samples) float32.

    Exact from sample ``n_fft - hop`` on; the first ``n_fft - hop`` samples have fewer
    overlapping frames (the reference's known defect; `histdenoise.engine` pads around it).
    """
    return overlap_add(istft_frames(spec, cfg), cfg)


def to_channels(spec: np.ndarray) -> np.ndarray:
    """Complex (..., frames, bins) -> real (..., frames, bins, 2): real and imaginary."""
    return np.stack([spec.real, spec.imag], axis=-1).astype(np.float32)


def from_channels(x: np.ndarray) -> np.ndarray:
    """Real (..., frames, bins, 2) -> complex64 (..., frames, bins)."""
    x = np.asarray(x, dtype=np.float32)
    return (x[..., 0] + 1j * x[..., 1]).astype(np.complex64)
