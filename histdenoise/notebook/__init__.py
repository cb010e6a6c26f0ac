"""Notebook and Colab helpers (`widgets`: players, uploads, downloads, result views),
the small denoising app (`app`) and figures (`plotting`).

``from histdenoise import notebook`` gives them all, as when this was one module.
ipywidgets, IPython and matplotlib are imported inside the functions that need them.

Notebook layer: must not import TensorFlow or Keras at module level.
"""

from __future__ import annotations

from histdenoise.notebook.app import DenoiseApp, ask_for_recordings, denoise_files
from histdenoise.notebook.widgets import (
    EMBED_MAX_BYTES,
    MAX_PREVIEW_SECONDS,
    PLAYER_MAX_BYTES,
    PREVIEW_SECONDS,
    _download_link,
    download,
    encode_preview,
    ensure_fluidsynth,
    example_recording,
    gpu_status,
    in_colab,
    play,
    preview_seconds,
    progress_bar,
    read_excerpt,
    result_view,
    save_uploads,
    show_figure,
    show_result,
    upload,
    upload_widget,
    zip_results,
)

__all__ = [
    "EMBED_MAX_BYTES",
    "MAX_PREVIEW_SECONDS",
    "PLAYER_MAX_BYTES",
    "PREVIEW_SECONDS",
    "DenoiseApp",
    "_download_link",
    "ask_for_recordings",
    "denoise_files",
    "download",
    "encode_preview",
    "ensure_fluidsynth",
    "example_recording",
    "gpu_status",
    "in_colab",
    "play",
    "preview_seconds",
    "progress_bar",
    "read_excerpt",
    "result_view",
    "save_uploads",
    "show_figure",
    "show_result",
    "upload",
    "upload_widget",
    "zip_results",
]
