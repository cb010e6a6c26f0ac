"""Never lose a file: every case of issue 12, run through the real command on real files.

Output clashes, outputs that are inputs, file system failures (a file where a folder should
be, a read-only or full file system on a real tmpfs, over-long names), killed runs and
their temporaries, companded and lossy inputs, truncated files, FIFOs, unreadable files,
argument messages, TensorFlow's start-up logging and the report's paths. Cases that need
root (mounting a tmpfs, dropping the capability to read everything) are skipped with the
reason elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from histdenoise.cli import main

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def write(path, seconds=0.5, sr=44100, channels=1, subtype="PCM_16", seed=0, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * seed) * (c + 1) * t) for c in
                  range(channels)], 1)
    sf.write(path, x + 0.01 * rng.standard_normal(x.shape), sr, subtype=subtype, format=fmt)
    return path


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def temporaries(folder: Path) -> list[str]:
    return [p for p in files(folder) if Path(p).name.startswith(".") or p.endswith(".part")]


@pytest.fixture
def run(sentinel_onnx, capsys):
    """``run(*args) -> (exit code, stderr)``: the command, in process, with the sentinel
    model on ONNX Runtime (no TensorFlow start-up)."""

    def _run(*args):
        code = main(
            ["denoise", *map(str, args), "--model", str(sentinel_onnx), "--backend",
             "onnxruntime", "--quiet"]
        )
        return code, capsys.readouterr().err

    return _run


@pytest.fixture
def mount(tmp_path):
    """``mount(size, readonly=False) -> folder``: a real tmpfs (root only)."""
    mounted = []

    def _mount(size: str, readonly: bool = False) -> Path:
        if not ROOT:
            pytest.skip("mounting a tmpfs needs root; run the tests as root to cover this")
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield _mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def as_restricted_user(args: list[str]) -> list[str]:
    """The command line run without the power to read or write everything: as root,
    through setpriv without the DAC capabilities (then permissions apply to root too)."""
    if not ROOT:
        return args
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps, *args]


def command(sentinel_onnx, *args) -> list[str]:
    return [sys.executable, "-m", "histdenoise", "denoise", *map(str, args), "--model",
            str(sentinel_onnx), "--backend", "onnxruntime", "--quiet"]


# --------------------------------------------------------------------------- clashes
def test_same_name_in_two_folders_refuses_the_run(run, tmp_path):
    a = write(tmp_path / "d1" / "song.wav", seed=1)
    b = write(tmp_path / "d2" / "song.wav", seed=2)
    out = tmp_path / "OUT"
    code, err = run(a, b, "-o", out, "--overwrite")
    assert code == 2
    clash = [x for x in err.splitlines() if x.startswith("histdenoise: error: output clash")]
    assert len(clash) == 1 and str(a) in clash[0] and str(b) in clash[0]
    assert "--recursive" in clash[0] and "-o OUTDIR" in clash[0]
    assert "nothing written" in err and not out.exists()
    # --skip-existing is no way round it
    assert run(a, b, "-o", out, "--skip-existing")[0] == 2 and not out.exists()
    # nor are two folders with --recursive
    assert run(tmp_path / "d1", tmp_path / "d2", "--recursive", "-o", out)[0] == 2
    assert not out.exists()
    # the way out the message gives
    code, err = run(tmp_path, "--recursive", "-o", out)
    assert code == 0, err
    assert files(out) == [f"{d}/song_{k}" for d in ("d1", "d2")
                          for k in ("denoised.wav", "report.json", "residual.wav")]
    da = sf.read(out / "d1" / "song_denoised.wav")[0]
    db = sf.read(out / "d2" / "song_denoised.wav")[0]
    assert not np.array_equal(da, db)


def test_same_stem_different_extension_refuses_then_keep_extension(run, tmp_path):
    folder = tmp_path / "box"
    write(folder / "a.wav", seed=1)
    write(folder / "a.flac", seed=2)
    code, err = run(folder)
    assert code == 2 and "a_report.json" in err and "--keep-extension" in err
    assert files(folder) == ["a.flac", "a.wav"]
    code, err = run(folder, "--keep-extension")
    assert code == 0, err
    assert files(folder) == ["a.flac", "a.flac_denoised.flac", "a.flac_report.json",
                             "a.flac_residual.flac", "a.wav", "a.wav_denoised.wav",
                             "a.wav_report.json", "a.wav_residual.wav"]
    report = json.loads((folder / "a.wav_report.json").read_text())
    assert report["input"] == "a.wav" and report["residual"] == "a.wav_residual.wav"


def test_output_that_is_an_input_is_never_written(run, tmp_path):
    a = write(tmp_path / "a.wav", seed=1)
    mine = write(tmp_path / "a_denoised.wav", seed=2)  # the user's own file
    before = mine.read_bytes()
    code, err = run(a, mine, "--overwrite")
    assert code == 2
    assert f"its output {mine} is the input {mine}" in err
    assert mine.read_bytes() == before
    # the same file reached through a linked folder: compared as files, not names
    link = tmp_path / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    assert run(a, link / "a_denoised.wav", "--overwrite")[0] == 2
    assert mine.read_bytes() == before
    # the way out
    code, err = run(a, mine, "-o", tmp_path / "out")
    assert code == 0, err and mine.read_bytes() == before


def test_notebook_loop_names_by_whole_name_on_a_clash(sentinel_onnx, tmp_path):
    from histdenoise.denoiser import Denoiser
    from histdenoise.notebook import denoise_files

    a = write(tmp_path / "in" / "a.wav", seed=1)
    b = write(tmp_path / "in" / "a.flac", seed=2)
    den = Denoiser(sentinel_onnx, backend="onnxruntime")
    results, problems = denoise_files(den, [a, b], tmp_path / "out", progress=lambda *a: None)
    assert problems == [] and len(results) == 2
    assert {r.report_path.name for r in results} == {"a.wav_report.json", "a.flac_report.json"}


# --------------------------------------------------------------------------- file system
def test_outdir_under_a_regular_file(run, tmp_path):
    a = write(tmp_path / "a.wav")
    b = write(tmp_path / "b.wav")
    (tmp_path / "plain").write_text("a file")
    code, err = run(a, b, "-o", tmp_path / "plain" / "out")
    assert code == 1
    lines = [x for x in err.splitlines() if x.startswith("histdenoise: error:")]
    assert len(lines) == 2 and all("a part of the path is a file, not a folder" in x
                                   for x in lines)
    assert "0 denoised, 0 skipped, 2 failed" in err and "Traceback" not in err


def test_read_only_output_folder(run, tmp_path, mount):
    a = write(tmp_path / "a.wav")
    b = write(tmp_path / "b.wav")
    ro = mount("1m", readonly=True)
    code, err = run(a, b, "-o", ro)
    assert code == 1 and err.count("read-only file system") == 2, err
    assert "0 denoised, 0 skipped, 2 failed" in err and "Traceback" not in err


def test_unwritable_output_folder(sentinel_onnx, tmp_path):
    a = write(tmp_path / "a.wav")
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    tmp_path.chmod(0o755)
    try:
        done = subprocess.run(as_restricted_user(command(sentinel_onnx, a, "-o", out)),
                              capture_output=True, text=True, timeout=300)
    finally:
        out.chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert f"{out}/a_denoised.wav: cannot write: permission denied" in done.stderr
    assert "0 denoised, 0 skipped, 1 failed" in done.stderr and files(out) == []


def test_full_disk_is_one_line_per_file_and_leaves_nothing(run, tmp_path, mount):
    small = mount("200k")
    inputs = [write(tmp_path / f"f{i}.wav", seconds=1.0, seed=i) for i in range(3)]
    code, err = run(*inputs, "-o", small)
    assert code == 1
    failed = [x for x in err.splitlines() if x.startswith("histdenoise: error:")]
    assert failed and all("disk full (no space left on device)" in x for x in failed), err
    assert f"{3 - len(failed)} denoised, 0 skipped, {len(failed)} failed" in err
    assert "Traceback" not in err
    assert temporaries(small) == []
    # what was written is complete: each output set whole or absent
    for i in range(3):
        have = [n for n in files(small) if n.startswith(f"f{i}_")]
        assert len(have) in (0, 3), have


def test_long_names(run, tmp_path):
    long_ok = write(tmp_path / ("n" * 236 + ".wav"))  # 240 bytes: outputs fit in 255
    too_long = write(tmp_path / ("m" * 246 + ".wav"))  # its outputs would not
    code, err = run(long_ok, too_long)
    assert code == 1
    assert f"{too_long}: output name too long for the file system" in err
    assert "1 denoised, 0 skipped, 1 failed" in err
    assert (tmp_path / ("n" * 236 + "_residual.wav")).is_file()
    assert temporaries(tmp_path) == []


def test_input_vanished_mid_batch(sentinel_onnx, tmp_path):
    first = write(tmp_path / "a long.wav", seconds=20.0)
    second = write(tmp_path / "b.wav")
    out = tmp_path / "out"
    # --jobs 1: with two files in flight (the default) the short one is done first
    proc = subprocess.Popen(command(sentinel_onnx, first, second, "-o", out, "--jobs", "1"),
                            stderr=subprocess.PIPE, text=True)
    assert _wait_for_temporary(out, proc), "no temporary file seen"
    second.unlink()  # while the first file is being denoised
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 1
    assert f"histdenoise: error: {second}: no such file" in err
    assert "1 denoised, 0 skipped, 1 failed" in err
    assert files(out) == ["a long_denoised.wav", "a long_report.json", "a long_residual.wav"]


# --------------------------------------------------------------------------- killed runs
def _wait_for_temporary(folder: Path, proc, timeout=120.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if folder.is_dir() and any(n.startswith(".hd-") for n in os.listdir(folder)):
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_no_temporaries_for_long(sentinel_onnx, tmp_path, sig):
    src = write(tmp_path / "long.wav", seconds=20.0, channels=2)
    out = tmp_path / "out"
    proc = subprocess.Popen(command(sentinel_onnx, src, "-o", out), stderr=subprocess.PIPE,
                            text=True)
    assert _wait_for_temporary(out, proc), "no temporary file seen"
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and "histdenoise: terminated" in err
        assert "0 denoised, 0 skipped, 0 failed (interrupted)" in err
        assert files(out) == []
    else:
        assert temporaries(out)  # nothing can clean up after SIGKILL...
    # ...but the next run does, and --skip-existing redoes the incomplete file
    done = subprocess.run(command(sentinel_onnx, src, "-o", out, "--skip-existing"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 denoised, 0 skipped" in done.stderr
    assert files(out) == ["long_denoised.wav", "long_report.json", "long_residual.wav"]


def test_skip_existing_redoes_outputs_with_stale_temporaries(run, tmp_path):
    from histdenoise.files import temp_path

    a = write(tmp_path / "a.wav")
    assert run(a)[0] == 0
    stale = temp_path(tmp_path / "a_denoised.wav", pid=2**22 + 12345)  # no such process
    stale.write_bytes(b"half a file")
    code, err = run(a, "--skip-existing")
    assert code == 0 and "1 denoised, 0 skipped" in err
    assert not stale.exists() and temporaries(tmp_path) == []
    code, err = run(a, "--skip-existing")
    assert "0 denoised, 1 skipped" in err


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("subtype", ["ULAW", "ALAW", "IMA_ADPCM"])
def test_companded_wav_through_the_command(run, tmp_path, subtype):
    src = write(tmp_path / "c.wav", subtype=subtype, channels=2)
    code, err = run(src)
    assert code == 0, err
    report = json.loads((tmp_path / "c_report.json").read_text())
    assert report["output_audio"]["format"] == "FLAC" and report["output_audio"]["inexact"] == 0
    x = sf.read(src, dtype="int16")[0].astype(np.int64)
    d = sf.read(tmp_path / "c_denoised.flac", dtype="int16")[0]
    r = sf.read(tmp_path / "c_residual.flac", dtype="int16")[0]
    assert np.array_equal(d + r, x)
    # asked to keep the codec: every changed sample counted, not 0
    code, _ = run(src, "-o", tmp_path / "kept", "--format", "WAV", "--subtype", subtype)
    kept = json.loads((tmp_path / "kept" / "c_report.json").read_text())["output_audio"]
    assert code == 0 and kept["inexact"] > 0.5 * x.size


@pytest.mark.parametrize(("ext", "fmt"), [(".wav", "WAV"), (".flac", "FLAC")])
def test_truncated_file_is_processed_and_reported(run, tmp_path, ext, fmt):
    src = write(tmp_path / f"cut{ext}", seconds=5.0, fmt=fmt)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    code, err = run(src)
    assert code == 0, err
    warn = [x for x in err.splitlines() if x.startswith("histdenoise: warning:")]
    assert len(warn) == 1 and "truncated" in warn[0] and "5.000 s" in warn[0]
    report = json.loads((tmp_path / "cut_report.json").read_text())
    cut = report["input_audio"]["truncated"]
    assert cut["declared_seconds"] == pytest.approx(5.0)
    assert 1.5 < cut["real_seconds"] < 3.0
    n = sf.info(str(tmp_path / f"cut_denoised{ext}")).frames
    assert n == round(cut["real_seconds"] * 44100)


# --------------------------------------------------------------------------- messages
def test_fifo_is_named_and_never_opened(run, tmp_path):
    fifo = tmp_path / "y.wav"
    os.mkfifo(fifo)
    code, err = run(fifo)
    assert code == 1 and f"{fifo}: is a FIFO (named pipe), not a regular file" in err
    code, err = run(tmp_path)  # found in a folder: said the same way
    assert code == 1 and "is a FIFO (named pipe)" in err


def test_unreadable_file_says_permission(sentinel_onnx, tmp_path):
    src = write(tmp_path / "secret.wav")
    src.chmod(0o000)
    tmp_path.chmod(0o755)
    done = subprocess.run(as_restricted_user(command(sentinel_onnx, src, "-o", tmp_path / "o")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert f"{src}: permission denied (you may not read this file)" in done.stderr


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--strength", "abc", "expected a number from 0 to 1, got 'abc'"),
        ("--strength", "2", "expected a number from 0 to 1, got 2"),
        ("--batch-size", "x", "expected a whole number of at least 1, got 'x'"),
        ("--chunk-frames", "big", "expected a multiple of 64 from 128 (STFT frames)"),
    ],
)
def test_argument_errors_read_as_the_options_meaning(flag, value, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["denoise", str(tmp_path), flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: {says}" in err
    assert "_unit_float" not in err and "_positive_int" not in err and "invalid" not in err


def test_tensorflow_prints_nothing_of_its_own_unless_asked(sentinel, tmp_path):
    src = write(tmp_path / "a.wav")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    args = [sys.executable, "-m", "histdenoise", "denoise", str(src), "--model", str(sentinel),
            "--quiet", "--overwrite"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0
    assert done.stderr.splitlines() == ["1 denoised, 0 skipped, 0 failed"], done.stderr
    # asked for: TensorFlow's own lines come through
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0 and "oneDNN" in done.stderr


def test_report_paths_are_relative_to_the_report(run, tmp_path, monkeypatch):
    src = write(tmp_path / "music" / "side A.wav")
    monkeypatch.chdir(tmp_path / "music")
    assert run("side A.wav", "-o", tmp_path / "out" / "deep")[0] == 0
    report_path = tmp_path / "out" / "deep" / "side A_report.json"
    report = json.loads(report_path.read_text())
    assert report["paths"] == "relative to the folder of this report"
    assert (report_path.parent / report["input"]).resolve() == src.resolve()
    assert report["denoised"] == "side A_denoised.wav"
    assert report["residual"] == "side A_residual.wav"
    text = report_path.read_text()
    assert "removed" not in text and "denoised_plus_residual_equals_input" in text


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["download", "x", "--retries", "many"], "--retries: expected a whole number from 0"),
        (["download", "x", "--timeout", "-1"], "--timeout: expected a number above 0, got -1"),
        (["train", "c.json", "--max-minutes", "soon"], "--max-minutes: expected a number above"),
        (["build-corpus", "o", "--seed", "s"], "--seed: expected a whole number, got 's'"),
    ],
)
def test_other_commands_argument_errors_read_as_meaning(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and "invalid" not in err
