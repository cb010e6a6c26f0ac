"""`Denoiser` on arrays and files: exactness, formats, channels, rates and bad input."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile as sf

from histdenoise.audio import AudioError, OutputFormat, split_exact
from histdenoise.denoiser import DenoiseConfig, Denoiser
from histdenoise.engine import ChunkConfig

FAST = ChunkConfig(frames=64, margin=4, crossfade=8)


def tone(n, sr=44100, channels=1, seed=0, level=0.3, noise=0.01):
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    x = np.stack([level * np.sin(2 * np.pi * (220 * (c + 1)) * t) for c in range(channels)], 1)
    return (x + noise * rng.standard_normal(x.shape)).astype(np.float32)


def assert_sum(d, r, x, inexact=None):
    """d + r == x bit for bit in the arrays' precision, except where it cannot be.

    In floating point a pair (d, r) near the wanted values with d + r == x does not exist
    when |d| or |r| is well above |x| (their grids are coarser than x's); there the sum is
    off by at most one unit in the last place of the larger of |d|, |r|.
    """
    wrong = (d + r) != x
    if inexact is not None:
        assert int(np.count_nonzero(wrong)) == inexact
    big = np.maximum(np.abs(d), np.abs(r)).astype(np.float64)
    err = np.abs(d.astype(np.float64) + r - x)
    assert np.all(err[wrong] <= big[wrong] * 2.0**-23)
    assert np.all(big[wrong] > np.abs(x[wrong]))
    return int(np.count_nonzero(wrong))


@pytest.fixture(scope="module")
def ident(identity_model):
    return Denoiser(identity_model, chunk=FAST, batch_size=4)


@pytest.fixture(scope="module")
def den(sentinel):
    return Denoiser(sentinel, chunk=FAST, batch_size=4)


@pytest.mark.parametrize("n", [1, 2, 1535, 2047, 44100, 44100 * 2 + 333])
def test_identity_pipeline_returns_input(ident, n):
    x = (np.random.default_rng(n).standard_normal((n, 2)) * 0.3).astype(np.float32)
    y, r = ident.denoise(x, 44100)
    assert y.shape == r.shape == x.shape
    assert np.max(np.abs(y - x)) < 1e-5
    assert np.all(y + r == x)


def test_identity_through_resampling_is_transparent(ident):
    x = tone(48000 * 2, sr=48000, noise=0.0)  # nothing above 22.05 kHz to lose
    y, _ = ident.denoise(x, 48000)
    inner = slice(2400, -2400)
    err = y[inner] - x[inner]
    assert 10 * np.log10(np.sum(x[inner] ** 2) / np.sum(err**2)) > 60


def test_strength_scales_the_removed_part(den):
    x = tone(30000)
    _y1, r1 = den.denoise(x, 44100)
    _yh, rh = den.denoise(x, 44100, strength=0.5)
    y0, r0 = den.denoise(x, 44100, strength=0.0)
    np.testing.assert_array_equal(y0, x)
    assert np.all(r0 == 0)
    np.testing.assert_allclose(rh, 0.5 * r1, atol=1e-6)
    assert np.max(np.abs(r1)) > 1e-3  # the sentinel really changes the signal


def test_channels_batched_and_kept(den):
    x = tone(20000, channels=3)
    y, _r = den.denoise(x, 44100)
    assert y.shape == (20000, 3)
    single, _ = den.denoise(x[:, 1], 44100)
    np.testing.assert_allclose(y[:, 1], single, atol=1e-5)
    ym, rm = den.denoise(x, 44100, mono=True)
    assert ym.shape == (20000,)
    assert assert_sum(ym, rm, x.mean(axis=1, dtype=np.float32)) < 0.05 * ym.size


def test_progress_callback_counts_seconds(den):
    seen = []
    den.denoise(tone(44100 * 25), 44100, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (25.0, 25.0)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))


def test_warm_up_runs_the_network_once_and_changes_nothing(den, sentinel, sentinel_onnx):
    x = tone(30000)
    for model in (sentinel, sentinel_onnx):
        warm = Denoiser(model, chunk=FAST, batch_size=4)
        assert warm.warm_up() > 0.0
        y, r = warm.denoise(x, 44100)
        if model == sentinel:
            y0, r0 = den.denoise(x, 44100)
            np.testing.assert_array_equal(y, y0)
            np.testing.assert_array_equal(r, r0)
        assert np.all(y + r == x) or assert_sum(y, r, x) < 0.05 * x.size
    jitted = Denoiser(sentinel, chunk=FAST, jit=True)
    assert jitted.warm_up() == 0.0  # XLA would compile one more shape: nothing to warm


def test_float_split_is_bit_exact_on_realistic_audio():
    rng = np.random.default_rng(0)
    music = tone(200_000)[:, 0]
    noise = (0.02 * rng.standard_normal(music.size)).astype(np.float32)
    x = (music + noise)[None]
    target = music.astype(np.float64)[None] + 0.001 * rng.standard_normal(x.shape)
    for subtype, dt in (("FLOAT", np.float32), ("DOUBLE", np.float64)):
        d, r, bad = split_exact(x.astype(dt), target, OutputFormat("WAV", subtype, ".wav"))
        assert d.dtype == r.dtype == dt
        assert_sum(d, r, x.astype(dt), inexact=bad)
        assert bad < 0.01 * x.size, bad  # this synthetic case; music: README, Exactness
        assert np.max(np.abs(d - target)) < 1e-6


def test_integer_split_is_exact_and_counts_clipping():
    x = np.array([[32767, -32768, 0, 1000]], np.int32) << 16
    target = np.array([[-1.0, 0.99, 0.0, 1000 / 32768 + 0.3]])
    d, r, clipped = split_exact(x, target, OutputFormat("WAV", "PCM_16", ".wav"))
    assert d.dtype == np.int16
    ok = d.astype(int) + r == (x >> 16)
    assert clipped == 2 and ok.tolist() == [[False, False, True, True]]


@pytest.mark.parametrize(
    ("subtype", "dtype", "ext", "fmt"),
    [
        ("PCM_U8", "int16", ".wav", "WAV"),
        ("PCM_16", "int16", ".wav", "WAV"),
        ("PCM_24", "int32", ".wav", "WAV"),
        ("PCM_32", "int32", ".wav", "WAV"),
        ("FLOAT", "float32", ".wav", "WAV"),
        ("DOUBLE", "float64", ".wav", "WAV"),
        ("PCM_16", "int16", ".flac", "FLAC"),
        ("PCM_24", "int32", ".flac", "FLAC"),
    ],
)
def test_file_outputs_sum_exactly_to_input(den, tmp_path, subtype, dtype, ext, fmt):
    src = tmp_path / f"disc {subtype} ü{ext}"
    sf.write(src, tone(30_000, channels=2), 44100, subtype=subtype, format=fmt)
    before = src.read_bytes()
    res = den.denoise_file(src)
    assert src.read_bytes() == before  # the input is never touched
    d, sr = sf.read(res.denoised, dtype=dtype)
    r, _ = sf.read(res.residual, dtype=dtype)
    x, _ = sf.read(src, dtype=dtype)
    assert sr == 44100 and d.shape == x.shape == (30_000, 2)
    assert sf.info(str(res.denoised)).subtype == subtype
    report = json.loads(res.report_path.read_text())
    assert report["output_audio"]["residual_clipped"] == 0
    if dtype.startswith("int"):
        assert np.array_equal(d.astype(np.int64) + r, x)
        assert report["output_audio"]["inexact"] == 0
    else:
        assert_sum(d, r, x, inexact=report["output_audio"]["inexact"])
    assert report["model"]["name"] == "sentinel" and len(report["model"]["weights_sha256"]) == 64
    assert report["input_audio"]["seconds"] == pytest.approx(30_000 / 44100)
    assert report["real_time_factor"] > 0
    assert {p.name for p in tmp_path.iterdir()} == {
        src.name,
        f"{src.stem}_denoised{ext}",
        f"{src.stem}_residual{ext}",
        f"{src.stem}_report.json",
    }


@pytest.mark.parametrize("sr", [8000, 22050, 48000, 96000, 192000])
def test_sample_rates_are_kept(den, tmp_path, sr):
    src = tmp_path / "a.wav"
    sf.write(src, tone(sr // 2, sr=sr), sr, subtype="FLOAT")
    res = den.denoise_file(src)
    d, out_sr = sf.read(res.denoised)
    assert out_sr == sr and d.shape == (sr // 2,)


@pytest.mark.parametrize("channels", [1, 2, 6, 8])
def test_channel_counts_are_kept(den, tmp_path, channels):
    src = tmp_path / "multi.flac"
    sf.write(src, tone(9000, channels=channels), 44100, subtype="PCM_16")
    res = den.denoise_file(src)
    assert sf.info(str(res.denoised)).channels == channels
    mono = den.denoise_file(src, tmp_path / "mono", settings=DenoiseConfig(mono=True))
    assert sf.info(str(mono.denoised)).channels == 1


@pytest.mark.parametrize("kind", ["silence", "dc", "clipped", "one", "short"])
def test_awkward_signals_give_finite_results(den, tmp_path, kind):
    n = {"one": 1, "short": 2047}.get(kind, 20_000)
    x = {
        "silence": np.zeros(n),
        "dc": np.full(n, 0.4) + tone(n)[:, 0] * 0.1,
        "clipped": np.clip(tone(n)[:, 0] * 10, -1, 1),
    }.get(kind, tone(n)[:, 0])
    src = tmp_path / "x.wav"
    sf.write(src, x.astype(np.float32), 44100, subtype="FLOAT")
    res = den.denoise_file(src)
    d, _ = sf.read(res.denoised, dtype="float32")
    r, _ = sf.read(res.residual, dtype="float32")
    assert d.shape == (n,) and np.all(np.isfinite(d))
    assert_sum(
        d,
        r,
        x.astype(np.float32),
        inexact=json.loads(res.report_path.read_text())["output_audio"]["inexact"],
    )


@pytest.mark.parametrize(("fmt", "ext"), [("OGG", ".ogg"), ("MP3", ".mp3")])
def test_lossy_inputs_get_exact_float_outputs_and_forced_lossy_counts(den, tmp_path, fmt, ext):
    src = tmp_path / f"old record{ext}"
    sf.write(src, tone(44100, channels=2), 44100, format=fmt)
    res = den.denoise_file(src)
    assert res.denoised.name == "old record_denoised.wav"
    info = sf.info(str(res.denoised))
    assert (info.format, info.subtype, info.channels) == ("WAV", "FLOAT", 2)
    out = json.loads(res.report_path.read_text())["output_audio"]
    assert "lossy" in out["chosen_because"]
    x, _ = sf.read(src, dtype="float32")
    d, _ = sf.read(res.denoised, dtype="float32")
    r, _ = sf.read(res.residual, dtype="float32")
    assert_sum(d, r, x, inexact=out["inexact"])
    # asked for the lossy format: written so, and every changed sample is counted
    forced = den.denoise_file(src, tmp_path / "forced", settings=DenoiseConfig(format=fmt))
    assert forced.denoised.suffix == ext and sf.info(str(forced.denoised)).format == fmt
    out = json.loads(forced.report_path.read_text())["output_audio"]
    assert out["denoised_plus_residual_equals_input"].startswith("lossy")
    assert out["inexact"] > 0.5 * x.size, out["inexact"]


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM"])
def test_companded_inputs_get_exact_flac_and_honest_counters(den, tmp_path, subtype):
    src = tmp_path / "wire.wav"
    sf.write(src, tone(30_000, channels=2), 44100, subtype=subtype)
    res = den.denoise_file(src)
    assert res.denoised.name == "wire_denoised.flac"
    assert sf.info(str(res.denoised)).subtype == "PCM_16"
    out = json.loads(res.report_path.read_text())["output_audio"]
    assert out["inexact"] == 0 and out["residual_clipped"] == 0
    assert f"{subtype} input" in out["chosen_because"]
    x, _ = sf.read(src, dtype="int16")  # the decoded input
    d, _ = sf.read(res.denoised, dtype="int16")
    r, _ = sf.read(res.residual, dtype="int16")
    assert np.array_equal(d.astype(np.int64) + r, x)
    # the input's own subtype asked for: the codec changes what it is given; counted
    same = den.denoise_file(
        src, tmp_path / "same", settings=DenoiseConfig(format="WAV", subtype=subtype)
    )
    out = json.loads(same.report_path.read_text())["output_audio"]
    d, _ = sf.read(same.denoised, dtype="float64")
    r, _ = sf.read(same.residual, dtype="float64")
    xf, _ = sf.read(src, dtype="float64")
    n = min(len(d), len(xf))
    wrong = int(np.count_nonzero(d[:n] + r[:n] != xf[:n])) + (len(xf) - n) * 2
    assert out["inexact"] == wrong and wrong > 0.5 * xf.size


def test_pcm_output_counts_input_samples_off_its_grid(den, tmp_path):
    src = tmp_path / "deep.wav"
    sf.write(src, tone(20_000), 44100, subtype="PCM_24")
    res = den.denoise_file(src, tmp_path / "o", settings=DenoiseConfig(subtype="PCM_16"))
    x, _ = sf.read(src, dtype="int32")
    out = json.loads(res.report_path.read_text())["output_audio"]
    assert out["inexact"] == int(np.count_nonzero(x % 65536)) > 0.9 * x.size


def test_format_and_subtype_override(den, tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, tone(10_000), 44100, subtype="PCM_16")
    res = den.denoise_file(src, settings=DenoiseConfig(format="FLAC", subtype="PCM_24"))
    assert res.denoised.name == "in_denoised.flac"
    assert sf.info(str(res.denoised)).subtype == "PCM_24"
    d, _ = sf.read(res.denoised, dtype="int32")
    r, _ = sf.read(res.residual, dtype="int32")
    x, _ = sf.read(src, dtype="int32")
    assert np.array_equal(d.astype(np.int64) + r, x)


def _bad_file(tmp_path, kind):
    p = tmp_path / f"bad {kind}.wav"
    if kind == "text":
        p.write_text("this is not audio")
    elif kind == "header":
        sf.write(p, tone(1000), 44100)
        data = bytearray(p.read_bytes())
        data[:4] = b"JUNK"
        p.write_bytes(bytes(data))
    elif kind == "empty":
        sf.write(p, np.zeros((0, 1), np.float32), 44100)
    elif kind in ("nan", "inf"):
        x = tone(50_000)
        x[30_000] = np.nan if kind == "nan" else np.inf
        sf.write(p, x, 44100, subtype="FLOAT")
    return p


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "not a readable audio file"),
        ("header", "not a readable audio file"),
        ("empty", "contains no samples"),
        ("nan", "NaN or Inf sample at 0.680 s"),
        ("inf", "NaN or Inf sample at 0.680 s"),
    ],
)
def test_bad_input_gives_one_line_and_no_output(den, tmp_path, kind, message):
    src = _bad_file(tmp_path, kind)
    before = set(tmp_path.iterdir())
    with pytest.raises(AudioError) as err:
        den.denoise_file(src)
    assert str(err.value).startswith(str(src)) and message in str(err.value)
    assert "\n" not in str(err.value)
    assert set(tmp_path.iterdir()) == before  # no output, no temporary file


def test_existing_outputs_are_not_overwritten_unless_asked(den, tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, tone(5000), 44100)
    den.denoise_file(src)
    with pytest.raises(AudioError, match="already exists"):
        den.denoise_file(src)
    den.denoise_file(src, overwrite=True)


def test_invalid_strength_is_refused():
    with pytest.raises(ValueError, match="strength"):
        DenoiseConfig(strength=1.5)
