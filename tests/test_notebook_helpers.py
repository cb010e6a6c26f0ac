"""Notebook helpers work outside Colab (the fallbacks) and do what they say."""

from __future__ import annotations

import numpy as np

from histdenoise import notebook


def test_not_in_colab_here():
    assert notebook.in_colab() is False
    assert notebook.upload("x") == []
    assert "CPU" in notebook.gpu_status() or "GPU" in notebook.gpu_status()


def player_audio(html: str):
    """The audio a player embeds: (decoded samples, sample rate, encoded bytes)."""
    import base64
    import io
    import re

    import soundfile as sf

    m = re.search(r"src='data:(audio/\w+);base64,([^']+)'", html)
    data = base64.b64decode(m.group(2))
    decoded, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return decoded, sr, data


def test_play_keeps_true_level_and_labels():
    quiet = 0.01 * np.sin(np.linspace(0, 100, 4410))
    decoded, sr, _ = player_audio(notebook.play(quiet, 44100)._repr_html_())
    assert sr == 44100 and 0.008 < np.max(np.abs(decoded)) < 0.012  # not normalised
    html = notebook.play(np.stack([quiet, quiet], 1), 44100, label="before")._repr_html_()
    assert "<b>before</b>" in html and "<audio" in html and "first" not in html


def test_players_stay_light_for_any_length():
    """Five minutes of loud stereo noise: one player embeds at most a minute, a few
    hundred kB to 2 MB, and says what it holds; a 96 kHz file plays too."""
    rng = np.random.default_rng(0)
    long = 0.5 * rng.standard_normal((5 * 60 * 44100, 2)).astype(np.float32)
    html = notebook.play(long, 44100, "input", max_seconds=1e9)._repr_html_()
    decoded, sr, data = player_audio(html)
    assert len(data) <= notebook.PLAYER_MAX_BYTES and len(html) < 2.8e6
    assert abs(len(decoded) / sr - 60) < 0.2 and decoded.shape[1] == 2
    assert "(first 1:00.0 of 5:00.0)" in html
    assert notebook.preview_seconds(1e9) == notebook.MAX_PREVIEW_SECONDS == 60
    assert notebook.preview_seconds(None) == 60 and notebook.preview_seconds(-3) == 60
    assert notebook.preview_seconds(4) == 4
    hi = notebook.play(long[: 96000 * 2, 0], 96000, "96 kHz", max_seconds=2)._repr_html_()
    decoded, sr, _ = player_audio(hi)
    assert sr == 44100 and abs(len(decoded) / sr - 2.0) < 0.1


def test_download_links_embed_only_small_files(tmp_path):
    small, big = tmp_path / "small.flac", tmp_path / "big.flac"
    small.write_bytes(b"x" * 1000)
    big.write_bytes(b"x" * (notebook.EMBED_MAX_BYTES + 1))
    assert "base64," in notebook._download_link(small)
    link = notebook._download_link(big)
    assert "base64" not in link and "Saved to" in link and "2.0 MB" in link


def test_app_never_falls_back_to_the_example(tmp_path):
    app = notebook.DenoiseApp("bundled", out_dir=tmp_path / "out", upload_dir=tmp_path / "up",
                              seconds=1e6)
    assert app.seconds == notebook.MAX_PREVIEW_SECONDS
    assert app.denoise() == [] and "Nothing to denoise" in app.status.value
    assert not (tmp_path / "out").exists()


def test_uploads_of_ipywidgets_7_are_saved(tmp_path):
    value = {"take 1.wav": {"metadata": {"name": "take 1.wav"}, "content": b"RIFF7"}}
    saved = notebook.save_uploads(value, tmp_path / "up")
    assert saved == [tmp_path / "up" / "take 1.wav"] and saved[0].read_bytes() == b"RIFF7"


def test_missing_fluidsynth_is_one_line_outside_colab(monkeypatch, capsys):
    from histdenoise.training import render

    monkeypatch.setattr(render, "SOUNDFONTS", ())  # a machine without a GM soundfont
    assert notebook.ensure_fluidsynth() is False
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "apt-get install fluidsynth fluid-soundfont-gm" in out


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


def test_app_loads_and_warms_up_the_model_once(sentinel, tmp_path):
    import soundfile as sf

    src = tmp_path / "take 1.wav"
    t = np.arange(22050) / 44100
    sf.write(src, 0.2 * np.sin(2 * np.pi * 330 * t), 44100)
    app = notebook.DenoiseApp(str(sentinel), out_dir=tmp_path / "out",
                              upload_dir=tmp_path / "up")
    assert [r.input.name for r in app.denoise([src])] == ["take 1.wav"]
    assert app.status.value == f"Done: 1 file(s) in {tmp_path / 'out'}/."
    first = app.denoiser()
    assert first.backend == "tensorflow" and app.denoiser() is first  # loaded once
    app.denoise([src])
    assert app.denoiser() is first
