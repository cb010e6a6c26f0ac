"""Every flag of the `histdenoise` commands implemented so far, run for real."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from histdenoise.cli import build_parser, main
from tests.conftest import SMALL_CKPT

X = np.random.default_rng(2).standard_normal((1, 5, 1025, 2)).astype("float32")


@pytest.fixture
def registry(tmp_path, server, small_zip_bytes):
    server.files["/rel/checkpoint.zip"] = small_zip_bytes
    path = tmp_path / "registry.json"
    path.write_text(
        json.dumps(
            {
                "format_version": 1,
                "models": {
                    "small": {
                        "description": "small reference test model",
                        "licence": "MIT",
                        "filename": "checkpoint.zip",
                        "urls": [{"url": server.url("/rel/checkpoint.zip")}],
                        "files": ["checkpoint.index", "checkpoint.data-00000-of-00001"],
                    }
                },
            }
        )
    )
    return path


def test_every_subcommand_flag_is_documented_in_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        help_text = p.format_help()
        for action in p._actions:
            for flag in action.option_strings:
                assert flag in help_text, f"{name} {flag}"


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("histdenoise 0.")


def test_models_lists_registry(registry, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bundled (default)\tshipped\tMIT")
    assert "\nmoliner2022\tnot downloaded\tMIT" in out
    assert main(["download", "bundled"]) == 0
    assert "shipped with histdenoise" in capsys.readouterr().out
    assert main(["models", "--registry", str(registry)]) == 0
    assert "small\tnot downloaded\tMIT\tsmall reference test model" in capsys.readouterr().out


def test_download_then_cached_then_force(registry, server, capsys, isolated_cache):
    args = [
        "download",
        "small",
        "--registry",
        str(registry),
        "--quiet",
        "--retries",
        "1",
        "--timeout",
        "5",
    ]
    assert main(args) == 0
    folder = capsys.readouterr().out.strip()
    assert folder == str(isolated_cache / "models" / "small")
    assert main(args) == 0 and len(server.requests) == 1
    assert main([*args, "--force"]) == 0 and len(server.requests) == 2
    assert main(["models", "--registry", str(registry)]) == 0
    assert "small\tcached" in capsys.readouterr().out


def test_download_file_installs_manual_archive(registry, server, tmp_path, small_zip_bytes):
    manual = tmp_path / "down loaded.zip"
    manual.write_bytes(small_zip_bytes)
    assert main(["download", "small", "--registry", str(registry), "--file", str(manual)]) == 0
    assert server.requests == []


def test_download_errors_are_one_line_with_exit_1(registry, server, capsys, tmp_path):
    server.files.clear()
    assert (
        main(["download", "small", "--registry", str(registry), "--quiet", "--retries", "0"]) == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("histdenoise: error: could not download")
    assert "HTTP 404" in err
    assert main(["download", "nosuch", "--registry", str(registry)]) == 1
    assert "nosuch: no such model" in capsys.readouterr().err
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"nope")
    assert main(["download", "small", "--registry", str(registry), "--file", str(broken)]) == 1
    assert "broken.zip: verification failed" in capsys.readouterr().err


def test_convert_published_format_to_native(tmp_path, small_zip_bytes, small_model, capsys):
    archive = tmp_path / "checkpoint.zip"
    archive.write_bytes(small_zip_bytes)
    dst = tmp_path / "native model"
    assert (
        main(
            [
                "convert",
                str(archive),
                str(dst),
                "--name",
                "small-native",
                "--description",
                "converted for a test",
                "--licence",
                "MIT",
            ]
        )
        == 0
    )
    assert "1,464,900 parameters" in capsys.readouterr().out
    card = json.loads((dst / "model.json").read_text())
    assert card["name"] == "small-native" and card["licence"] == "MIT"
    assert card["description"] == "converted for a test"
    assert card["config"] == {
        "channels": [32, 64, 64],
        "depth": 2,
        "dense_layers": 2,
        "freq_encodings": 10,
        "freq_bins": 1025,
    }
    assert card["source"].startswith(f"converted from {archive}")
    from histdenoise import load_network

    np.testing.assert_array_equal(
        np.asarray(load_network(dst)(X)[0]), np.asarray(small_model(X)[0])
    )
    assert main(["convert", str(SMALL_CKPT), str(dst)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", str(SMALL_CKPT), str(dst), "--overwrite"]) == 0
    assert json.loads((dst / "model.json").read_text())["name"] == "native model"


def test_info_by_registry_name_downloads(registry, monkeypatch, capsys):
    monkeypatch.setenv("HISTDENOISE_REGISTRY", str(registry))
    assert main(["info", "small"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "small" and info["parameters"] == 1_464_900
    assert info["licence"] == "MIT"


def test_console_script_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "histdenoise", "info", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"histdenoise: error: {tmp_path / 'none'}: no such file or folder"
    )


def test_export_both_formats_overwrite_and_refusal(sentinel, tmp_path, capsys):
    onnx_dir = tmp_path / "sentinel onnx"
    assert main(["export", str(sentinel), "--format", "onnx", str(onnx_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{onnx_dir}: onnx export of {sentinel}, 2 files")
    assert "model.onnx\t" in out and "model.json\t" in out
    assert "checked against TensorFlow (batch 2, 4, 7 frames): max difference" in out
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["model.json", "model.onnx"]
    stamp = (onnx_dir / "model.onnx").stat().st_mtime_ns
    assert main(["export", str(sentinel), "--format", "onnx", str(onnx_dir)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"histdenoise: error: {onnx_dir}: already exists (use --overwrite to replace it)\n"
    )
    assert (onnx_dir / "model.onnx").stat().st_mtime_ns == stamp
    sm_dir = tmp_path / "sm"
    assert main(["export", str(sentinel), str(sm_dir), "--format", "savedmodel"]) == 0
    assert (sm_dir / "saved_model.pb").is_file() and (sm_dir / "model.json").is_file()
    assert (
        main(["export", str(sentinel), str(onnx_dir), "--format", "savedmodel", "--overwrite"]) == 0
    )
    assert (onnx_dir / "saved_model.pb").is_file() and not (onnx_dir / "model.onnx").exists()
    assert json.loads((onnx_dir / "model.json").read_text())["export"]["format"] == "savedmodel"


def test_export_default_format_is_onnx_and_bad_input_is_refused(sentinel, tmp_path, capsys):
    missing = tmp_path / "no model"
    assert main(["export", str(missing), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == f"histdenoise: error: {missing}: no such file or folder\n"
    assert main(["export", "nosuch", str(tmp_path / "out")]) == 1
    assert "nosuch: no such model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as e:
        main(["export", str(sentinel), str(tmp_path / "out"), "--format", "tflite"])
    assert e.value.code == 2 and "--format" in capsys.readouterr().err
    assert main(["export", str(sentinel), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.onnx").is_file()
