"""Thumps once per turn: detection, streaming removal, and their place in the denoiser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from histdenoise.cli import main
from histdenoise.dethump import ThumpEstimate, ThumpRemover, detect_thumps
from histdenoise.metrics import si_sdr_db
from tests.test_dehum import SR, at_snr, music


def thumps(n: int, rpm: float = 78.0, freq: float = 45.0, seed: int = 0, sr: int = SR):
    """A decaying ``freq`` oscillation (80 ms) every turn, moved up to 1.5 ms at random."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * sr)) / sr
    pulse = np.exp(-t / 0.08) * np.sin(2 * np.pi * freq * t)
    x = np.zeros(n)
    for start in np.arange(0.3 * sr, n, 60.0 / rpm * sr):
        s = int(start + rng.uniform(-1.5e-3, 1.5e-3) * sr)
        end = min(n, s + len(pulse))
        x[s:end] += pulse[: end - s] * rng.uniform(0.8, 1.0)
    return x


def remove(x: np.ndarray, found: ThumpEstimate, block: int) -> np.ndarray:
    r = ThumpRemover(found, x.shape[0])
    return np.concatenate([*(r(x[:, i : i + block]) for i in range(0, x.shape[1], block)),
                           r.flush()], axis=1)


@pytest.mark.parametrize("rpm", [78.0, 74.5])
def test_thumps_are_found_and_removed(rpm):
    clean = music(12.0, 7)
    noisy = at_snr(clean, thumps(len(clean), rpm), 3.0)
    found = detect_thumps(noisy, SR)
    assert found is not None
    assert abs(60 * SR / found.period - rpm) < 0.2
    info = found.to_dict()
    assert abs(info["first_at_s"] - 0.3) < 0.05 and 100 < info["length_ms"] < 400
    out = remove(noisy[None], found, 5000)[0]
    assert out.shape == noisy.shape
    gain = si_sdr_db(out, clean) - si_sdr_db(noisy, clean)
    assert gain > 8.0, gain


@pytest.mark.parametrize("seed", range(4))
def test_music_alone_has_no_thumps(seed):
    assert detect_thumps(music(20.0, 10 + seed), SR) is None


def test_off_silence_and_too_short():
    noisy = at_snr(music(12.0, 8), thumps(12 * SR), 6.0)
    assert detect_thumps(noisy, SR, "off") is None
    assert detect_thumps(noisy[: 3 * SR], SR) is None  # fewer than 5 turns
    assert detect_thumps(np.zeros(10 * SR), SR) is None
    with pytest.raises(ValueError, match="dethump must be one of"):
        detect_thumps(noisy, SR, "on")


@pytest.mark.parametrize("block", [513, 44100, 10**7])
def test_streaming_output_does_not_depend_on_block_size(block):
    x = np.stack([at_snr(music(10.0, 9), thumps(10 * SR, seed=c), 3.0) for c in range(2)])
    found = detect_thumps(x, SR)
    assert found is not None
    whole = remove(x, found, 10**8)
    assert whole.shape == x.shape
    assert np.max(np.abs(remove(x, found, block) - whole)) < 1e-6


def test_denoiser_takes_thumps_out_and_the_report_says_so(identity_model, sentinel, tmp_path):
    from histdenoise.denoiser import Denoiser
    from histdenoise.engine import ChunkConfig

    clean = music(10.0, 11).astype(np.float32)
    noisy = at_snr(clean, thumps(len(clean)), 3.0).astype(np.float32)
    d = Denoiser(identity_model, chunk=ChunkConfig(frames=192))
    den, _ = d.denoise(noisy, SR)
    assert si_sdr_db(den, clean) - si_sdr_db(noisy, clean) > 8.0
    den_off, _ = d.denoise(noisy, SR, dethump="off")
    assert np.max(np.abs(den_off - noisy)) < 1e-5

    sf.write(tmp_path / "t.flac", noisy, SR, subtype="PCM_24")
    args = ["denoise", str(tmp_path / "t.flac"), "--model", str(sentinel), "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "t_report.json").read_text())
    assert report["settings"]["dethump"] == "auto"
    assert abs(report["thumps"]["rpm"] - 78.0) < 0.2
    assert main([*args, "--overwrite", "--dethump", "off"]) == 0
    report = json.loads((tmp_path / "t_report.json").read_text())
    assert report["settings"]["dethump"] == "off" and report["thumps"] is None

