"""The degradation simulator, the paper's mixing and the noise-dataset loaders."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from histdenoise.training.degradations import (
    NOISE_TYPES,
    REVOLUTION_S,
    Clicks,
    DegradationConfig,
    Hiss,
    Hum,
    Rumble,
    Thumps,
    mix,
    simulate,
)
from histdenoise.training.noise_folders import extend_by_revolutions, load_noise_dataset

SR = 44100


def band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


@pytest.mark.parametrize("name", NOISE_TYPES)
def test_each_type_alone_is_seeded_and_finite(name):
    cfg = DegradationConfig.only(name)
    a = simulate(SR * 2, SR, cfg, seed=5)
    b = simulate(SR * 2, SR, cfg, seed=5)
    c = simulate(SR * 2, SR, cfg, seed=6)
    assert list(a) == [name]
    np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a[name], c[name])
    assert np.all(np.isfinite(a[name])) and np.std(a[name]) > 0


def test_hum_is_at_mains_frequency():
    x = Hum(mains_hz=(50.0,)).render(SR * 2, SR, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(x.size, 1 / SR)
    assert abs(f[np.argmax(spec)] - 50) < 0.5


def test_rumble_and_thumps_are_low_frequency():
    rng = np.random.default_rng(0)
    assert band_energy(Rumble().render(SR * 4, SR, rng), 0, 40) > 0.95
    assert band_energy(Thumps().render(SR * 4, SR, rng), 0, 200) > 0.9


def test_hiss_is_broadband_and_modulated_per_revolution():
    x = Hiss(modulation=(0.4, 0.4)).render(SR * 8, SR, np.random.default_rng(1))
    assert band_energy(x, 1000, 20000) > 0.1
    env = np.sqrt(np.convolve(x**2, np.ones(2205) / 2205, mode="same"))[::441]  # 100 Hz
    spec = np.abs(np.fft.rfft(env - env.mean()))
    f = np.fft.rfftfreq(env.size, 1 / 100)
    assert abs(f[np.argmax(spec[1:]) + 1] - 1 / REVOLUTION_S) < 0.2


def test_clicks_are_sparse_heavy_tailed_and_repeat_with_scratches():
    rng = np.random.default_rng(2)
    x = Clicks(rate_hz=(5, 5), scratches=(0, 0)).render(SR * 10, SR, rng)
    active = np.mean(np.abs(x) > 1e-9)
    assert 0 < active < 0.05  # impulsive: a few percent of samples at most
    kurtosis = np.mean(x**4) / np.mean(x**2) ** 2
    assert kurtosis > 50
    s = Clicks(rate_hz=(0, 0), scratches=(1, 1), burst_prob=0).render(SR * 4, SR, rng)
    onsets = np.nonzero((np.abs(s) > 0) & (np.abs(np.roll(s, 1)) == 0))[0]
    gaps = np.diff(onsets) / SR
    assert np.allclose(gaps[gaps > 0.1], REVOLUTION_S, atol=0.01)


def test_mix_hits_the_requested_snr_and_gain():
    rng = np.random.default_rng(3)
    clean = np.sin(np.linspace(0, 400, SR)) * 0.5
    noise = rng.standard_normal(SR)
    for snr in (2.0, 6.0, 12.0, 20.0):
        noisy, ref = mix(clean, noise, snr, gain_db=-6.0)
        assert np.max(np.abs(ref)) == pytest.approx(10 ** (-6 / 20), rel=1e-5)
        measured = 10 * np.log10(np.var(ref) / np.var(noisy - ref))
        assert measured == pytest.approx(snr, abs=0.01)


def test_extend_by_revolutions_keeps_level_and_periodicity():
    rng = np.random.default_rng(4)
    period = int(REVOLUTION_S * SR)
    short = rng.standard_normal(int(2.5 * period))
    long = extend_by_revolutions(short, 10 * period, SR)
    assert long.size == 10 * period
    rms = [np.std(long[i : i + period // 2]) for i in range(0, long.size - period, period // 2)]
    assert max(rms) / min(rms) < 1.3  # equal-power joins: no dips or bumps
    np.testing.assert_array_equal(extend_by_revolutions(short, 100, SR), short[:100])


def test_noise_dataset_layout_and_plain_folders(tmp_path):
    root = tmp_path / "grnd"
    for rec in ("rec1", "rec2"):
        (root / rec).mkdir(parents=True)
        for seg in ("a.wav", "b.wav"):
            sf.write(root / rec / seg, np.zeros(100), SR)
    (root / "info.csv").write_text(
        "recording,segments,largest_segment,split\n"
        "rec1,\"['a.wav', 'b.wav']\",a.wav,train\n"
        "rec2,\"['a.wav']\",a.wav,test\n"
    )
    items = load_noise_dataset(root)
    assert [(i.path.name, i.split) for i in items] == [
        ("a.wav", "train"),
        ("b.wav", "train"),
        ("a.wav", "test"),
    ]
    (root / "info.csv").unlink()
    plain = load_noise_dataset(root)
    assert len(plain) == 4 and {i.split for i in plain} <= {"train", "validation", "test"}
    # the corpus's rule, one rule for every folder split by hash
    from histdenoise.training.corpus import split_of

    assert all(i.split == split_of(i.path.relative_to(root).as_posix()) for i in plain)
    names = [f"noise{k:03d}.wav" for k in range(300)]
    shares = {s: sum(split_of(n) == s for n in names) / 300 for s in ("test", "validation")}
    assert 0.05 < shares["test"] < 0.15 and 0.05 < shares["validation"] < 0.15


@pytest.mark.parametrize("n", [1, 100, 5000, 86528])
def test_every_type_renders_any_length(n):
    for seed in range(40):
        parts = simulate(n, SR, DegradationConfig(), seed=seed)
        assert all(p.shape == (n,) and np.all(np.isfinite(p)) for p in parts.values())
