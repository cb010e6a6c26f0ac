"""Quality measures on waveforms (dB).

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import numpy as np


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """``10 log10(|ref|^2 / |ref - est|^2)``."""
    ref = np.asarray(reference, np.float64)
    err = ref - np.asarray(estimate, np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-20) + 1e-20))


def si_sdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR (Le Roux et al., 2019): SNR after optimal scaling of ``reference``."""
    ref = np.asarray(reference, np.float64)
    est = np.asarray(estimate, np.float64)
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-20)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10(max(np.sum(target**2), 1e-20) / max(np.sum(noise**2), 1e-20)))
