"""Mains hum: detection, streaming removal, and its place in the denoiser and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from histdenoise.cli import main
from histdenoise.dehum import HumEstimate, HumRemover, detect_hum
from histdenoise.metrics import si_sdr_db

SR = 44100


def music(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Notes of random pitch (A1..A5), 0.3-0.6 s each, four decaying partials; peak 0.5."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * sr))
    start = 0
    while start < len(out):
        length = int(rng.uniform(0.3, 0.6) * sr)
        f = 55.0 * 2 ** (rng.integers(0, 48) / 12)
        t = np.arange(min(length, len(out) - start)) / sr
        note = sum(np.sin(2 * np.pi * k * f * t + rng.uniform(0, 6)) / k for k in range(1, 5))
        out[start : start + len(t)] = note * np.exp(-t / 0.4)
        start += length
    return 0.5 * out / np.max(np.abs(out))


def hum(n: int, f0: float, sr: int = SR, amps=(1.0, 0.4, 0.2)) -> np.ndarray:
    t = np.arange(n) / sr
    return sum(a * np.sin(2 * np.pi * (k + 1) * f0 * t + k) for k, a in enumerate(amps))


def at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    scale = np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + scale * noise


def remove(x: np.ndarray, estimate: HumEstimate, block: int, sr: int = SR) -> np.ndarray:
    """Run `HumRemover` over (channels, samples) in blocks of ``block`` samples."""
    r = HumRemover(estimate, sr, x.shape[0])
    parts = [r(x[:, i : i + block]) for i in range(0, x.shape[1], block)]
    return np.concatenate([*parts, r.flush()], axis=1)


def test_hum_is_found_and_removed_and_the_music_kept():
    clean = music(8.0)
    noisy = at_snr(clean, hum(len(clean), 50.13), 6.0)
    found = detect_hum(noisy, SR)
    assert found is not None
    assert abs(found.f0_hz - 50.13) < 0.05
    assert found.harmonics[:3] == (1, 2, 3)
    out = remove(noisy[None], found, 10_000)[0]
    assert out.shape == noisy.shape
    gain = si_sdr_db(out, clean) - si_sdr_db(noisy, clean)
    assert gain > 20.0, gain
    # what is subtracted is hum, not notes: it correlates with the hum, not the music
    removed = noisy - out
    assert si_sdr_db(removed, noisy - clean) > 15.0


def test_sixty_hertz_and_stereo():
    clean = np.stack([music(6.0, 1), music(6.0, 2)])
    h = hum(clean.shape[1], 59.9, amps=(0.2, 1.0, 0.3))  # full-wave: 120 Hz strongest
    noisy = np.stack([at_snr(c, h, 10.0) for c in clean])
    found = detect_hum(noisy, SR)
    assert found is not None and abs(found.f0_hz - 59.9) < 0.05
    out = remove(noisy, found, 4096)
    for c in range(2):
        assert si_sdr_db(out[c], clean[c]) - si_sdr_db(noisy[c], clean[c]) > 15.0


@pytest.mark.parametrize("seed", range(6))
def test_music_alone_is_not_hum(seed):
    assert detect_hum(music(20.0, seed), SR) is None


def test_short_silent_and_off():
    noisy = at_snr(music(8.0), hum(8 * SR, 50.0), 6.0)
    assert detect_hum(noisy[: 2 * SR], SR) is None  # under 3 s: too short to tell
    assert detect_hum(np.zeros(5 * SR), SR) is None
    assert detect_hum(noisy, SR, "off") is None
    with pytest.raises(ValueError, match="dehum must be one of"):
        detect_hum(noisy, SR, "55")


def test_off_speed_hum_needs_the_mains_frequency():
    """Hum 3 % off 50 Hz (a disc played off speed) is left by auto and found with 50."""
    clean = music(8.0, 3)
    noisy = at_snr(clean, hum(len(clean), 51.5), 6.0)
    assert detect_hum(noisy, SR) is None
    found = detect_hum(noisy, SR, "50")
    assert found is not None and abs(found.f0_hz - 51.5) < 0.05
    assert detect_hum(noisy, SR, "60") is None


@pytest.mark.parametrize("block", [1, 777, 44100, 10**6])
def test_streaming_output_does_not_depend_on_block_size(block):
    x = at_snr(music(5.0, 4), hum(5 * SR, 50.0), 0.0)[None]
    found = detect_hum(x, SR)
    whole = remove(x, found, 10**7)
    if block == 1:  # one-sample blocks are slow: check the start
        x = x[:, : SR // 2]
        whole = remove(x, found, 10**7)
    assert np.max(np.abs(remove(x, found, block) - whole)) < 1e-6
    assert whole.shape == x.shape


def test_denoiser_takes_hum_out_before_the_network(identity_model):
    from histdenoise.denoiser import Denoiser
    from histdenoise.engine import ChunkConfig

    clean = music(6.0, 5).astype(np.float32)
    noisy = at_snr(clean, hum(len(clean), 50.0), 6.0).astype(np.float32)
    d = Denoiser(identity_model, chunk=ChunkConfig(frames=192))
    den, res = d.denoise(noisy, SR)
    assert np.max(np.abs(den + res - noisy)) < 1e-6
    assert si_sdr_db(den, clean) - si_sdr_db(noisy, clean) > 20.0
    den_off, _ = d.denoise(noisy, SR, dehum="off")
    assert np.max(np.abs(den_off - noisy)) < 1e-5


def test_command_reports_the_hum_and_dehum_flag(sentinel, tmp_path):
    clean = music(6.0, 6)
    sf.write(tmp_path / "a.wav", at_snr(clean, hum(len(clean), 60.0), 6.0), SR, "PCM_24")
    assert main(["denoise", str(tmp_path / "a.wav"), "--model", str(sentinel), "--quiet"]) == 0
    report = json.loads((tmp_path / "a_report.json").read_text())
    assert report["settings"]["dehum"] == "auto"
    assert abs(report["hum"]["f0_hz"] - 60.0) < 0.05 and report["hum"]["harmonics"][0] == 1
    args = ["denoise", str(tmp_path / "a.wav"), "--model", str(sentinel), "--quiet"]
    assert main([*args, "--overwrite", "--dehum", "off"]) == 0
    report = json.loads((tmp_path / "a_report.json").read_text())
    assert report["settings"]["dehum"] == "off" and report["hum"] is None



def test_a_file_is_decoded_once_and_denoised_as_its_samples_are(identity_model, tmp_path,
                                                                 monkeypatch):
    import histdenoise.denoiser as dn
    from histdenoise.engine import ChunkConfig

    opened = []
    read_blocks = dn.read_blocks
    monkeypatch.setattr(dn, "read_blocks", lambda *a, **k: opened.append(1) or read_blocks(*a, **k))
    clean = music(7.0, 7)
    noisy = (0.5 * at_snr(clean, hum(len(clean), 50.0), 6.0)).astype(np.float32)
    sf.write(tmp_path / "a.wav", np.stack([noisy, 0.8 * noisy], axis=1), SR, "FLOAT")
    d = dn.Denoiser(identity_model, chunk=ChunkConfig(frames=192))
    result = d.denoise_file(tmp_path / "a.wav")
    assert len(opened) == 1  # the detection's blocks are the ones denoised
    assert result.report["hum"] is not None
    den_file = sf.read(result.denoised, dtype="float32")[0]
    den, _ = d.denoise(np.stack([noisy, 0.8 * noisy], axis=1), SR)
    assert den_file.shape == den.shape and np.max(np.abs(den_file - den)) < 1e-6
