"""`histdenoise denoise`: every flag, batches, failures and resuming, run for real."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from histdenoise.cli import main


def write(path, seconds=0.5, sr=44100, channels=1, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = np.stack([0.3 * np.sin(2 * np.pi * 330 * (c + 1) * t) for c in range(channels)], 1)
    sf.write(
        path, x + 0.01 * np.random.default_rng(0).standard_normal(x.shape), sr, subtype=subtype
    )
    return path


def outputs(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_files_and_outdir(sentinel, tmp_path, capsys):
    a = write(tmp_path / "in" / "side A.wav")
    b = write(tmp_path / "in" / "Ölmühle B.flac", channels=2)
    out = tmp_path / "out dir"
    assert (
        main(["denoise", str(a), str(b), "-o", str(out), "--model", str(sentinel), "--quiet"]) == 0
    )
    assert outputs(out) == [
        "side A_denoised.wav",
        "side A_report.json",
        "side A_residual.wav",
        "Ölmühle B_denoised.flac",
        "Ölmühle B_report.json",
        "Ölmühle B_residual.flac",
    ]
    assert "2 denoised, 0 skipped, 0 failed" in capsys.readouterr().err
    assert sf.info(str(out / "Ölmühle B_denoised.flac")).channels == 2


def test_tensorflow_start_is_announced_and_traced_before_the_bars(sentinel, tmp_path, capsys):
    """TensorFlow takes seconds to start: the command says so at once, traces the network
    on a warm-up chunk, then says how long it took, before any progress bar."""
    src = write(tmp_path / "a.wav")
    assert main(["denoise", str(src), "--model", str(sentinel), "--backend", "tensorflow"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[0] == f"histdenoise: loading {sentinel} with TensorFlow..."
    assert re.fullmatch(r"histdenoise: \S+ ready on TensorFlow in \d+\.\d s", lines[1]), lines
    assert lines[-1] == "1 denoised, 0 skipped, 0 failed"


def test_folder_recursive_keeps_structure_and_ignores_own_outputs(sentinel, tmp_path):
    root = tmp_path / "shelf"
    write(root / "a.wav")
    write(root / "box 1" / "b.wav")
    (root / "notes.txt").write_text("not audio")
    assert main(["denoise", str(root), "--model", str(sentinel), "--quiet"]) == 0
    assert (root / "a_denoised.wav").exists() and not (root / "box 1" / "b_denoised.wav").exists()
    out = tmp_path / "out"
    assert (
        main(
            [
                "denoise",
                str(root),
                "--recursive",
                "-o",
                str(out),
                "--model",
                str(sentinel),
                "--quiet",
            ]
        )
        == 0
    )
    assert outputs(out) == [
        "a_denoised.wav",
        "a_report.json",
        "a_residual.wav",
        "box 1/b_denoised.wav",
        "box 1/b_report.json",
        "box 1/b_residual.wav",
    ]


def test_one_failure_does_not_stop_the_batch(sentinel, tmp_path, capsys):
    good = write(tmp_path / "good.wav")
    bad = tmp_path / "bad.wav"
    bad.write_text("garbage")
    code = main(
        [
            "denoise",
            str(bad),
            str(good),
            str(tmp_path / "missing.wav"),
            "--model",
            str(sentinel),
            "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"histdenoise: error: {bad}: not a readable audio file" in err
    assert f"histdenoise: error: {tmp_path / 'missing.wav'}: no such file or folder" in err
    assert "1 denoised, 0 skipped, 2 failed" in err
    assert (tmp_path / "good_denoised.wav").exists()
    assert not (tmp_path / "bad_denoised.wav").exists()


def test_empty_folder_is_an_error(sentinel, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["denoise", str(tmp_path / "empty"), "--model", str(sentinel)]) == 1
    assert "no audio files in this folder" in capsys.readouterr().err


def test_skip_existing_and_overwrite(sentinel, tmp_path, capsys):
    a = write(tmp_path / "a.wav")
    b = write(tmp_path / "b.wav")
    args = ["denoise", str(a), str(b), "--model", str(sentinel), "--quiet"]
    assert main(args[:2] + args[3:]) == 0  # only a
    stamp = (tmp_path / "a_report.json").stat().st_mtime_ns
    assert main(args) == 1  # a's outputs exist
    assert "a_denoised.wav: already exists" in capsys.readouterr().err
    assert (tmp_path / "b_denoised.wav").exists()
    (tmp_path / "b_denoised.wav").unlink()
    assert main([*args, "--skip-existing"]) == 0
    assert "1 denoised, 1 skipped, 0 failed" in capsys.readouterr().err
    assert (tmp_path / "a_report.json").stat().st_mtime_ns == stamp
    assert main([*args, "--overwrite"]) == 0
    assert (tmp_path / "a_report.json").stat().st_mtime_ns != stamp
    with pytest.raises(SystemExit):
        main([*args, "--overwrite", "--skip-existing"])


def test_settings_flags_reach_the_report(sentinel, tmp_path):
    a = write(tmp_path / "a.wav", channels=2, sr=48000)
    assert (
        main(
            [
                "denoise",
                str(a),
                "--model",
                str(sentinel),
                "--quiet",
                "--mono",
                "--strength",
                "0.25",
                "--batch-size",
                "3",
                "--chunk-frames",
                "192",
                "--format",
                "flac",
                "--subtype",
                "pcm_24",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "a_report.json").read_text())
    assert report["settings"]["strength"] == 0.25 and report["settings"]["mono"] is True
    assert report["settings"]["batch_size"] == 3
    assert report["settings"]["chunk"]["frames"] == 192
    info = sf.info(str(tmp_path / "a_denoised.flac"))
    assert (info.format, info.subtype, info.channels, info.samplerate) == (
        "FLAC",
        "PCM_24",
        1,
        48000,
    )


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--strength", "1.5"),
        ("--strength", "x"),
        ("--batch-size", "0"),
        ("--chunk-frames", "100"),
        ("--chunk-frames", "64"),
        ("--dehum", "55"),
        ("--dethump", "yes"),
    ],
)
def test_invalid_values_are_refused(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["denoise", str(tmp_path), flag, value])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


def test_bad_format_is_one_line(sentinel, tmp_path, capsys):
    a = write(tmp_path / "a.wav")
    assert main(["denoise", str(a), "--model", str(sentinel), "--format", "XYZ"]) == 1
    assert "unknown output format 'XYZ'" in capsys.readouterr().err
    assert main(["denoise", str(a), "--model", str(sentinel), "--subtype", "VORBIS"]) == 1
    assert "format WAV cannot hold subtype VORBIS" in capsys.readouterr().err


def test_progress_bars_count_seconds(sentinel, tmp_path):
    a = write(tmp_path / "a.wav", seconds=1.0)
    out = subprocess.run(
        [sys.executable, "-m", "histdenoise", "denoise", str(a), "--model", str(sentinel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "all files: 100%" in out.stderr and "1.0/1.0 s" in out.stderr


def test_backend_onnxruntime(sentinel_onnx, sentinel, tmp_path):
    a = write(tmp_path / "a.wav", channels=2, subtype="FLOAT")
    args = ["denoise", str(a), "--model", str(sentinel_onnx), "--quiet", "--backend"]
    assert main([*args, "onnxruntime", "-o", str(tmp_path / "ort")]) == 0
    report = json.loads((tmp_path / "ort" / "a_report.json").read_text())
    assert report["settings"]["backend"] == "onnxruntime" and report["model"]["name"] == "sentinel"
    tf_args = ["denoise", str(a), "--model", str(sentinel), "--quiet", "-o", str(tmp_path / "tf")]
    assert main([*tf_args, "--backend", "tensorflow"]) == 0
    assert json.loads((tmp_path / "tf" / "a_report.json").read_text())["settings"]["backend"] == (
        "tensorflow"
    )
    got = sf.read(tmp_path / "ort" / "a_denoised.wav")[0]
    expected = sf.read(tmp_path / "tf" / "a_denoised.wav")[0]
    assert np.max(np.abs(got - expected)) < 1e-4 * np.max(np.abs(expected))


def test_backend_onnxruntime_takes_an_onnx_export_or_the_bundled_model(sentinel, tmp_path, capsys):
    a = write(tmp_path / "a.wav")
    args = ["denoise", str(a), "--backend", "onnxruntime", "--quiet"]
    assert main([*args, "--model", str(sentinel)]) == 1
    err = capsys.readouterr().err
    assert f"histdenoise: error: {sentinel}: not an exported ONNX model" in err
    assert err.count("\n") == 1
    assert main([*args, "--model", "moliner2022"]) == 1  # registered, but no ONNX shipped
    assert "not a registry name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
    # No --model: the bundled model, which ships as ONNX too.
    assert main(args) == 0
    report = json.loads((tmp_path / "a_report.json").read_text())
    assert report["model"]["name"] == "bundled"
    assert report["settings"]["backend"] == "onnxruntime"
    with pytest.raises(SystemExit) as e:
        main([*args, "--backend", "torch"])
    assert e.value.code == 2


def test_precision_and_jit_flags(tmp_path):
    """XLA changes nothing measurable; bfloat16 (first stage only) keeps the issue's bar of
    40 dB SI-SDR against float32 on music."""
    from histdenoise.metrics import si_sdr_db
    from histdenoise.notebook import example_recording, read_excerpt

    x, sr = read_excerpt(example_recording(), 1.5)
    a = tmp_path / "a.wav"
    sf.write(a, x, sr, subtype="FLOAT")
    from histdenoise.denoiser import Denoiser, native_precision

    runs = {"fp32": [], "xla": ["--jit"], "bf16": ["--precision", "bfloat16"]}
    native = native_precision("bfloat16")
    out = {}
    for name, flags in runs.items():
        assert main(["denoise", str(a), "-o", str(tmp_path / name), "--quiet", *flags]) == 0
        report = json.loads((tmp_path / name / "a_report.json").read_text())
        ran = "bfloat16" if name == "bf16" and native else "float32"
        assert report["settings"]["precision"] == ran
        assert report["settings"]["precision_requested"] == (
            "bfloat16" if name == "bf16" else "float32"
        )
        assert report["settings"]["jit"] is (name == "xla")
        out[name] = sf.read(tmp_path / name / "a_denoised.wav")[0].ravel()
    assert si_sdr_db(out["xla"], out["fp32"]) > 80
    # the arithmetic itself, emulated where the CPU has no bfloat16
    bf16 = Denoiser(precision="bfloat16", emulate=True)
    assert bf16.precision == "bfloat16" and bf16.backend == "tensorflow"
    assert si_sdr_db(bf16.denoise(x, sr)[0].ravel(), out["fp32"]) > 40


def test_reduced_precision_needs_native_support():
    from histdenoise.denoiser import native_precision

    amx = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n"
    assert native_precision("bfloat16", amx) and native_precision("float32", "")
    assert native_precision("bfloat16", "flags : avx512_bf16 avx2")
    assert native_precision("float16", "flags : avx512_fp16")
    assert not native_precision("bfloat16", "flags : avx512f avx512_vnni") or _has_gpu()


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def test_precision_is_checked(sentinel_onnx, tmp_path, capsys):
    a = write(tmp_path / "a.wav")
    with pytest.raises(SystemExit) as e:
        main(["denoise", str(a), "--precision", "float64"])
    assert e.value.code == 2 and "--precision" in capsys.readouterr().err
    args = ["denoise", str(a), "--model", str(sentinel_onnx), "--backend", "onnxruntime"]
    assert main([*args, "--precision", "bfloat16", "--quiet"]) == 1
    assert "apply to the tensorflow backend" in capsys.readouterr().err
    assert main([*args, "--jit", "--quiet"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_files_in_flight_at_once_give_the_same_outputs(sentinel, tmp_path, capsys):
    """--jobs 2 (the default for several files) shares one model between two files in
    flight; outputs equal those of one file at a time, a bad file still fails alone."""
    files = [write(tmp_path / "in" / f"{i}.wav", seconds=0.3 + 0.2 * i) for i in range(4)]
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF not audio")
    base = ["denoise", str(tmp_path / "in"), "--model", str(sentinel), "--quiet"]
    assert main([*base, "-o", str(tmp_path / "one"), "--jobs", "1"]) == 1
    assert main([*base, "-o", str(tmp_path / "two")]) == 1
    err = capsys.readouterr().err
    assert err.count("4 denoised, 0 skipped, 1 failed") == 2 and err.count("broken.wav") >= 2
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
    assert len(outputs(tmp_path / "two")) == 3 * len(files)
    for f in files:
        for kind in ("denoised", "residual"):
            a, _ = sf.read(tmp_path / "one" / f"{f.stem}_{kind}.wav", dtype="int16")
            b, _ = sf.read(tmp_path / "two" / f"{f.stem}_{kind}.wav", dtype="int16")
            np.testing.assert_array_equal(a, b)
