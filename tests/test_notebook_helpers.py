"""Notebook helpers work outside Colab (the fallbacks) and do what they say."""

from __future__ import annotations

import numpy as np

from histdenoise import notebook


def test_not_in_colab_here():
    assert notebook.in_colab() is False
    assert notebook.upload("x") == []
    assert "CPU" in notebook.gpu_status() or "GPU" in notebook.gpu_status()


def test_play_keeps_true_level_and_labels():
    quiet = 0.01 * np.sin(np.linspace(0, 100, 4410))
    player = notebook.play(quiet, 44100)
    import io

    import soundfile as sf

    decoded, sr = sf.read(io.BytesIO(player.data))
    assert sr == 44100 and np.max(np.abs(decoded)) < 0.011  # not normalised to full scale
    html = notebook.play(np.stack([quiet, quiet], 1), 44100, label="before")._repr_html_()
    assert "<b>before</b>" in html and "audio" in html


def test_uploads_are_saved_and_download_links(tmp_path):
    value = ({"name": "../side A.wav", "content": memoryview(b"RIFF....")},)
    saved = notebook.save_uploads(value, tmp_path / "up")
    assert saved == [tmp_path / "up" / "side A.wav"] and saved[0].read_bytes() == b"RIFF...."
    link = notebook.download(saved[0])
    assert "side A.wav" in link._repr_html_()


def test_progress_bar_follows_callback():
    bar, callback = notebook.progress_bar()
    callback(5.0, 20.0)
    assert bar.value == 0.25 and bar.description == "5/20 s"
    got = []
    widget = notebook.upload_widget(got.extend, folder="unused")
    assert widget.multiple is True


def test_example_recording_is_shipped():
    import soundfile as sf

    noisy, clean = notebook.example_recording(), notebook.example_recording(clean=True)
    assert sf.info(str(noisy)).duration == 15.0 and sf.info(str(clean)).duration == 15.0
