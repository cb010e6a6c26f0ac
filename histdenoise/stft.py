"""STFT conventions of the reference model (44.1 kHz, periodic Hamming 2048, hop 512)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StftConfig:
    """Short-time Fourier transform parameters.

    Attributes:
        sample_rate: Hz.
        n_fft: window and FFT length, samples; gives ``n_fft // 2 + 1`` bins.
        hop: frame advance, samples.
        window: window name; ``"hamming"`` is the periodic Hamming window.
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    hop: int = 512
    window: str = "hamming"

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StftConfig:
        return cls(**d)
