"""Notebook helpers: players, uploads, downloads, progress bars, result views.

They work in Colab (``google.colab`` is imported inside the functions that need it) and
in any Jupyter, and fall back gracefully when run headless (tests, nbclient).

Notebook layer: must not import TensorFlow or Keras at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
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


PREVIEW_SECONDS = 30.0
"""Players and spectrograms show this much of each recording (the files hold it all)."""
MAX_PREVIEW_SECONDS = 60.0
"""Longest preview a player or spectrogram shows, whatever is asked: pages stay light."""
PLAYER_MAX_BYTES = 2_000_000
"""Largest encoded audio one player embeds (the page holds it base64, a third more)."""
EMBED_MAX_BYTES = 2_000_000
"""Largest result file offered as an in-page download link; bigger ones are files only."""


def preview_seconds(seconds: float | None) -> float:
    """The preview length actually shown, seconds: ``seconds`` within
    (0, `MAX_PREVIEW_SECONDS`]; None means the maximum."""
    if seconds is None or not seconds > 0:
        return MAX_PREVIEW_SECONDS
    return float(min(seconds, MAX_PREVIEW_SECONDS))


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}" if seconds >= 60 else f"{seconds:.1f} s"


def encode_preview(
    audio: np.ndarray, samplerate: int, max_bytes: int = PLAYER_MAX_BYTES
) -> tuple[bytes, str, float]:
    """Audio for an in-page player: MP3 (about 140 kbit/s) of as much of ``audio`` as fits
    ``max_bytes`` (16-bit WAV where libsndfile cannot write MP3); clipped audio is scaled
    to full scale, anything quieter keeps its true level.

    Args:
        audio: (samples,) or (samples, channels) float, any sample rate (resampled to
            44.1 kHz for MP3 when MP3 does not support it).

    Returns:
        ``(data, mime type, seconds encoded)``.
    """
    import io

    import soundfile as sf

    x = np.asarray(audio, np.float32)
    x = x[: int(MAX_PREVIEW_SECONDS * samplerate)]
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        x = x / peak
    sample_rate = samplerate
    if "MP3" in sf.available_formats():
        if sample_rate not in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000):
            import soxr

            x, sample_rate = soxr.resample(x, sample_rate, 44100).astype(np.float32), 44100
        for _ in range(3):  # about 10 kB/s mono, 18 kB/s stereo; cut and redo if too big
            buf = io.BytesIO()
            sf.write(buf, x, sample_rate, format="MP3")
            data, mime = buf.getvalue(), "audio/mpeg"
            if len(data) <= max_bytes:
                break
            x = x[: int(len(x) * 0.9 * max_bytes / len(data))]
    else:
        x = x[: int((max_bytes - 44) / (2 * (1 if x.ndim == 1 else x.shape[1])))]
        buf = io.BytesIO()
        sf.write(buf, x, sample_rate, format="WAV", subtype="PCM_16")
        data, mime = buf.getvalue(), "audio/wav"
    return data, mime, len(x) / sample_rate


def play(audio: np.ndarray, samplerate: int, label: str | None = None,
         max_seconds: float | None = None, duration: float | None = None):
    """A light audio player for (samples,) or (samples, channels) audio, at its true level.

    At most ``max_seconds`` (bounded by `MAX_PREVIEW_SECONDS`) and `PLAYER_MAX_BYTES` are
    embedded, as MP3; when that is less than the recording (``duration`` seconds when
    ``audio`` is already an excerpt of it), the label says what is shown.
    Returns an IPython HTML object.
    """
    import base64

    from IPython.display import HTML

    x = np.asarray(audio, np.float32)
    total = max(duration or 0.0, len(x) / samplerate)
    x = x[: int(preview_seconds(max_seconds) * samplerate)]
    data, mime, shown = encode_preview(x, samplerate)
    note = ""
    if shown < total - 0.05:
        note = f" <small>(first {_clock(shown)} of {_clock(total)})</small>"
    title = f"<b>{escape(label)}</b>{note}<br>" if label is not None or note else ""
    src = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return HTML(f"<div>{title}<audio controls preload='metadata' src='{src}'></audio></div>")


def upload(folder: str | Path = "uploads") -> list[Path]:
    """Ask for files and save them into ``folder``; returns their paths.

    In Colab this is Colab's own upload dialog (no size limit; ``google.colab`` is
    imported here, only there), and a cancelled dialog says so; elsewhere use
    `upload_widget` (a notebook cannot block waiting for a widget), so this returns an
    empty list.
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
    if not saved:
        print("No file uploaded: run this cell again to choose recordings "
              "(or choose the example).")
    return saved


def save_uploads(value, folder: str | Path = "uploads") -> list[Path]:
    """Write the files held by an ``ipywidgets.FileUpload`` value into ``folder``: a
    tuple of dicts (ipywidgets 8) or a dict of name -> {"content": ...} (ipywidgets 7,
    as Colab ships)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(value, dict):
        value = [{"name": name, "content": item["content"]} for name, item in value.items()]
    saved = []
    for item in value or ():
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
    from histdenoise.files import shipped_file

    return shipped_file("histdenoise.examples", "k80_clean.flac" if clean else "k80_78rpm.flac")


def read_excerpt(path: str | Path, seconds: float | None = PREVIEW_SECONDS):
    """The first ``seconds`` of an audio file (all of it for None): ((samples, channels)
    float32, sample rate Hz)."""
    import soundfile as sf

    info = sf.info(str(path))
    frames = -1 if seconds is None else int(seconds * info.samplerate)
    x, sample_rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    return x, sample_rate


def result_view(result, seconds: float | None = PREVIEW_SECONDS) -> tuple[bytes, str]:
    """A `FileResult` for display, each file read once (its first ``seconds``, at most
    `MAX_PREVIEW_SECONDS`): PNG spectrograms of input, denoised and residual (one colour
    scale, log frequency) and HTML with their three labelled players side by side, each
    saying how much of the recording it holds."""
    import soundfile as sf

    from histdenoise.notebook.plotting import specplot, to_png

    seconds = preview_seconds(seconds)
    duration = sf.info(str(result.input)).duration
    signals, sample_rate = {}, 44100
    for label, path in (("input", result.input), ("denoised", result.denoised),
                        ("residual", result.residual)):
        signals[label], sample_rate = read_excerpt(path, seconds)
    title = Path(result.input).name
    if duration > seconds:
        title += f" (first {_clock(seconds)} of {_clock(duration)})"
    png = to_png(specplot(signals, sample_rate, title=title))
    cells = "".join(
        f"<div style='margin-right:1em'>"
        f"{play(x, sample_rate, label, seconds, duration)._repr_html_()}</div>"
        for label, x in signals.items())
    return png, f"<div style='display:flex;flex-wrap:wrap'>{cells}</div>"


def show_result(result, seconds: float | None = PREVIEW_SECONDS) -> None:
    """Display a `FileResult` in the notebook: title, spectrograms, three players."""
    from IPython.display import HTML, Image, display

    report = result.report or {}
    took = report.get("processing_seconds")
    note = f" ({took:.1f} s)" if isinstance(took, (int, float)) else ""
    png, players = result_view(result, seconds)
    display(HTML(f"<h4>{Path(result.input).name} &rarr; {Path(result.denoised).name}{note}</h4>"))
    display(Image(data=png, format="png"))
    display(HTML(players))


def zip_results(results, path: str | Path) -> Path:
    """Pack the denoised, residual and report files of ``results`` into one zip (for a
    single download); written atomically."""
    import zipfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for r in results:
            for p in (r.denoised, r.residual, r.report_path):
                zf.write(p, Path(p).name)
    tmp.replace(path)
    return path


def ensure_fluidsynth() -> bool:
    """Whether the corpus builder can run (FluidSynth, a GM soundfont, music21). In Colab
    what is missing is installed (apt-get, pip); elsewhere one line says what to run."""
    import subprocess
    import sys

    from histdenoise.training.corpus import CorpusError
    from histdenoise.training.render import check_tools

    try:
        check_tools()
        return True
    except CorpusError as exc:
        problem = str(exc)
    if in_colab():
        print("Installing FluidSynth and a GM soundfont (apt-get, about a minute)...")
        apt = ["apt-get", "install", "-y", "-qq", "fluidsynth", "fluid-soundfont-gm"]
        if subprocess.run(apt, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            subprocess.run(apt, capture_output=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pyfluidsynth",
                        "music21"], capture_output=True)
        import importlib

        importlib.invalidate_caches()
        try:
            check_tools()
            return True
        except CorpusError as exc:
            problem = str(exc)
    print(f"{problem}. Run `sudo apt-get install fluidsynth fluid-soundfont-gm && "
          "pip install pyfluidsynth music21`, then this notebook again.")
    return False


def show_figure(fig) -> None:
    """Display a matplotlib Figure as a PNG image (no pyplot needed)."""
    from IPython.display import Image, display

    from histdenoise.notebook.plotting import to_png

    display(Image(data=to_png(fig), format="png"))


def _download_link(path: Path, limit_bytes: int = EMBED_MAX_BYTES) -> str:
    """An HTML link that downloads ``path`` from the page itself (works in Voilà and
    Colab alike) when it is at most ``limit_bytes``; bigger files are never embedded:
    the line says where the file is (Colab: the Files panel or the Download cell)."""
    import base64
    import mimetypes

    path = Path(path)
    size = path.stat().st_size
    if size > limit_bytes:
        where = ("Files panel, or run the Download cell" if in_colab()
                 else "the file browser, or run the Download cell")
        return (f"Saved to <code>{escape(str(path))}</code> ({size / 1e6:.1f} MB: "
                f"download it from {where})")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<a download='{escape(path.name)}' href='data:{mime};base64,{data}'>"
            f"Download {escape(path.name)}</a>")
