"""Notebook helpers: players, uploads, downloads, and a small denoising app.

They work in Colab (``google.colab`` is imported inside the functions that need it) and
in any Jupyter, and fall back gracefully when run headless (tests, nbclient).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def in_colab() -> bool:
    """True inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_status() -> str:
    """One line saying which accelerator TensorFlow sees, with a hint when there is none."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"GPU: {', '.join(g.name for g in gpus)}"
    hint = (" In Colab: Runtime > Change runtime type > GPU." if in_colab()
            else " The bundled model is fast enough on a CPU.")
    return "No GPU: running on the CPU." + hint


def play(audio: np.ndarray, samplerate: int, label: str | None = None):
    """An audio player for (samples,) or (samples, channels) audio, at its true level.

    Returns an IPython display object (an HTML block with the label when given).
    """
    from IPython.display import HTML, Audio

    x = np.asarray(audio, np.float32)
    data = x.T if x.ndim == 2 else x
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    player = Audio(data, rate=samplerate, normalize=peak > 1.0)
    if label is None:
        return player
    return HTML(f"<div><b>{label}</b><br>{player._repr_html_()}</div>")


def upload(folder: str | Path = "uploads") -> list[Path]:
    """Ask for files and save them into ``folder``; returns their paths.

    In Colab this is Colab's upload dialog; elsewhere use `upload_widget` (a notebook
    cannot block waiting for a widget), so this returns an empty list.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not in_colab():
        return []
    from google.colab import files

    saved = []
    for name, data in files.upload().items():
        path = folder / Path(name).name
        path.write_bytes(data)
        saved.append(path)
    return saved


def save_uploads(value, folder: str | Path = "uploads") -> list[Path]:
    """Write the files held by an ``ipywidgets.FileUpload`` value into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for item in value:
        name = item["name"] if isinstance(item, dict) else item.name
        content = item["content"] if isinstance(item, dict) else item.content
        path = folder / Path(name).name
        path.write_bytes(bytes(content))
        saved.append(path)
    return saved


def upload_widget(on_upload: Callable[[list[Path]], None], folder: str | Path = "uploads"):
    """An ``ipywidgets.FileUpload`` that saves what is chosen and calls ``on_upload``."""
    import ipywidgets as widgets

    chooser = widgets.FileUpload(accept="audio/*,.wav,.flac,.ogg,.mp3,.aiff", multiple=True,
                                 description="Upload")

    def changed(change):
        if change["new"]:
            on_upload(save_uploads(change["new"], folder))

    chooser.observe(changed, names="value")
    return chooser


def download(path: str | Path):
    """Offer a file for download: Colab's download, else a link in the notebook."""
    path = Path(path)
    if in_colab():
        from google.colab import files

        files.download(str(path))
        return None
    from IPython.display import FileLink

    return FileLink(str(path))


def progress_bar(description: str = "denoising"):
    """An ``ipywidgets`` progress bar and a `Denoiser` progress callback that moves it."""
    import ipywidgets as widgets

    bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description=description)

    def callback(done: float, total: float) -> None:
        bar.value = done / total if total else 1.0
        bar.description = f"{done:.0f}/{total:.0f} s"

    return bar, callback


def example_recording(clean: bool = False) -> Path:
    """The shipped example (a held-out quartet excerpt with simulated 78 rpm noise), or its
    clean original."""
    name = "k80_clean.flac" if clean else "k80_78rpm.flac"
    try:
        from importlib.resources import files

        path = Path(str(files("histdenoise.examples").joinpath(name)))
        if path.is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "examples" / name
