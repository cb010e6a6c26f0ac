"""Look inside a two-stage U-Net: its input spectrogram, both stage outputs, attention masks.

For teaching (notebook 3) and debugging; the denoiser itself never needs this.

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histdenoise.stft import StftConfig, from_channels, istft, stft, to_channels


@dataclass
class StageOutputs:
    """One pass of the network over a mono excerpt.

    Attributes:
        spectrogram: network input, frames x bins x 2 (real, imaginary).
        stage1: first-stage estimate, frames x bins x 2.
        stage2: final estimate, frames x bins x 2.
        mask: supervised-attention mask between the stages, frames x bins x channels[0],
            values in 0..1.
        stft: the STFT settings used.
    """

    spectrogram: np.ndarray
    stage1: np.ndarray
    stage2: np.ndarray
    mask: np.ndarray
    stft: StftConfig

    def waveform(self, which: str) -> np.ndarray:
        """``"input"``, ``"stage1"`` or ``"stage2"`` back in the time domain: (samples,)."""
        spec = {"input": self.spectrogram, "stage1": self.stage1, "stage2": self.stage2}[which]
        return istft(from_channels(spec), self.stft)


def run_stages(model, audio: np.ndarray, stft_cfg: StftConfig | None = None) -> StageOutputs:
    """Run ``model`` (anything `histdenoise.load_network` takes) on mono ``audio``
    (samples,) at the model's sample rate, returning every intermediate output.

    The whole excerpt goes through the network in one piece (no chunking), so keep it
    to some seconds.
    """
    from histdenoise.model.loading import load_model
    from histdenoise.model.network import build_network

    model, card = load_model(model)
    cfg = stft_cfg or (card.stft if card.stft else StftConfig())
    probe = build_network(card.config, with_attention=True)
    probe.set_weights(model.get_weights())
    x = np.asarray(audio, np.float32)
    if x.ndim != 1:
        raise ValueError(f"run_stages takes mono audio (samples,), got shape {x.shape}")
    spec = to_channels(stft(x, cfg))
    stage2, stage1, mask = (np.asarray(o)[0] for o in probe(spec[None], training=False))
    return StageOutputs(spec, stage1, stage2, mask, cfg)
