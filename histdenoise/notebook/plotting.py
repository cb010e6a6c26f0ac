"""Figures: spectrograms with a shared scale, evaluation bars, training curves.

Every function returns a matplotlib Figure and never calls ``plt.show``, so it works in
notebooks, scripts and tests alike (Agg backend when there is no display).

Notebook layer: must not import TensorFlow or Keras at module level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from histdenoise.stft import HOP, N_FFT, SAMPLE_RATE


def _figure(*args, **kwargs):
    """A Figure not tied to pyplot: no global state, saved with the Agg canvas."""
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def to_png(fig, dpi: int = 96) -> bytes:
    """The figure as PNG bytes (for widgets, reports and notebooks without pyplot)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def db_spectrogram(x: np.ndarray, sr: int, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Magnitude in dB (full scale sine = 0 dB) of a mono signal: (bins, frames)."""
    import librosa

    mag = np.abs(librosa.stft(np.asarray(x, np.float32), n_fft=n_fft, hop_length=hop))
    return librosa.amplitude_to_db(mag * 2 / np.sum(np.hanning(n_fft)), ref=1.0, top_db=None)


def specplot(
    signals: dict[str, np.ndarray], sr: int, *, floor_db: float = -100.0, title: str | None = None
):
    """Spectrograms side by side: log frequency, dB, one colour scale for all.

    Args:
        signals: label -> mono (samples,) or (samples, channels) signal (channels averaged).
        sr: sample rate, Hz.
        floor_db: bottom of the colour scale, dB re full scale.
    """
    import librosa.display

    specs = {}
    for label, x in signals.items():
        x = np.asarray(x, np.float32)
        specs[label] = db_spectrogram(x.mean(axis=1) if x.ndim == 2 else x, sr)
    top = max(float(np.max(s)) for s in specs.values())
    fig = _figure(figsize=(4.2 * len(specs), 3.6), layout="constrained")
    axes = fig.subplots(1, len(specs), sharey=True, squeeze=False)[0]
    image = None
    for ax, (label, spec) in zip(axes, specs.items(), strict=True):
        image = librosa.display.specshow(
            spec,
            sr=sr,
            hop_length=HOP,
            x_axis="time",
            y_axis="log",
            ax=ax,
            vmin=max(floor_db, top - 100),
            vmax=top,
            cmap="magma",
        )
        ax.set_title(label)
    fig.colorbar(image, ax=list(axes), format="%+.0f dB", shrink=0.9)
    if title:
        fig.suptitle(title)
    return fig


def plot_improvements(summary: Sequence[dict], metric: str = "si_sdr_improvement"):
    """Grouped bars of mean improvement (dB) per input SNR and method, all categories."""
    rows = [s for s in summary if s["category"] == "all"]
    snrs = sorted({r["snr_db"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    value = {(r["method"], r["snr_db"]): r[metric] for r in rows}
    fig = _figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        xs = np.arange(len(snrs)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(xs, [value.get((m, s), np.nan) for s in snrs], width, label=m)
    ax.set_xticks(np.arange(len(snrs)), [f"{s:g} dB" for s in snrs])
    ax.set_xlabel("input SNR")
    labels = {"si_sdr_improvement": "SI-SDR improvement (dB)",
              "snr_improvement": "SNR improvement (dB)"}
    ax.set_ylabel(labels.get(metric, metric))
    ax.axhline(0, color="black", lw=0.8)
    ax.legend()
    return fig


def plot_history(history: Sequence[dict]):
    """Training and validation loss, and validation SI-SDR improvement (dB), against step;
    with the guard set's SI-SDR improvement beside it where the history has it."""
    steps = [int(h["step"]) for h in history]
    fig = _figure(figsize=(9, 3.4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, [float(h["train_loss"]) for h in history], label="train")
    ax1.plot(steps, [float(h["val_loss"]) for h in history], label="validation")
    ax1.set_xlabel("step")
    ax1.set_ylabel("MAE, both stages")
    ax1.legend()
    ax2.plot(steps, [float(h["val_si_sdr_improvement_db"]) for h in history], color="C2",
             label="validation")
    guarded = [h for h in history if h.get("guard_si_sdr_improvement_db") not in (None, "")]
    if guarded:
        ax2.plot([int(h["step"]) for h in guarded],
                 [float(h["guard_si_sdr_improvement_db"]) for h in guarded],
                 color="C3", label="guard set (held out)")
        ax2.legend()
    ax2.set_xlabel("step")
    ax2.set_ylabel("SI-SDR improvement (dB)")
    return fig


def plot_frequency_encoding(encoding: np.ndarray, sr: int = SAMPLE_RATE):
    """The cosine frequency-position channels: (bins, n) against frequency, Hz."""
    n = encoding.shape[1]
    fig = _figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(
        encoding.T,
        aspect="auto",
        origin="lower",
        cmap="coolwarm",
        vmin=-1,
        vmax=1,
        extent=(0, sr / 2, -0.5, n - 0.5),
        interpolation="nearest",
    )
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("channel k: cos(2^k pi f / (sr/2))")
    fig.colorbar(image, ax=ax)
    return fig


def plot_masks(mask: np.ndarray, sr: int = SAMPLE_RATE, hop: int = HOP, count: int = 4):
    """The first ``count`` channels of an attention mask (frames, bins, channels), 0..1."""
    frames, _, channels = mask.shape
    count = min(count, channels)
    fig = _figure(figsize=(3.4 * count, 3.2), layout="constrained")
    axes = fig.subplots(1, count, sharey=True, squeeze=False)[0]
    image = None
    for c, ax in enumerate(axes):
        image = ax.imshow(
            mask[:, :, c].T,
            aspect="auto",
            origin="lower",
            cmap="viridis",
            vmin=0,
            vmax=1,
            extent=(0, frames * hop / sr, 0, sr / 2),
            interpolation="nearest",
        )
        ax.set_yscale("symlog", linthresh=200)
        ax.set_title(f"mask channel {c}")
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("frequency (Hz)")
    fig.colorbar(image, ax=list(axes), shrink=0.9)
    return fig
