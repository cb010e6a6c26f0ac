"""Flags of `build-corpus`, `train` and `evaluate`, run for real on tiny settings."""

from __future__ import annotations

import json

import pytest

from histdenoise.cli import main
from tests.test_training import TINY, corpus  # noqa: F401 - the corpus fixture


def test_train_flags(corpus, tmp_path, capsys):  # noqa: F811
    cfg = {"run_dir": str(tmp_path / "ignored"), "name": "tiny", "network": TINY.to_dict(),
           "data": {"corpus": [str(corpus)], "segment_frames": 32}, "batch_size": 2,
           "steps": 100, "validate_every": 2, "validation_examples": 1}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    run = tmp_path / "run"
    assert main(["train", str(path), "--run-dir", str(run), "--steps", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[0])["step"] == 2
    assert f"model: {run / 'model'}" in out
    assert not (tmp_path / "ignored").exists()
    assert main(["train", str(path), "--run-dir", str(run), "--steps", "50",
                 "--max-minutes", "0.0001", "--quiet"]) == 0
    assert "run again to resume" in capsys.readouterr().out
    path.write_text("{broken")
    assert main(["train", str(path)]) == 1
    assert "invalid training config" in capsys.readouterr().err


def test_evaluate_flags(corpus, sentinel, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "eval"
    assert main(["evaluate", str(sentinel), str(corpus), "-o", str(out), "--no-baselines",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| model |" in printed and "noisereduce" not in printed
    assert (out / "testset" / "testset.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert {s["method"] for s in summary["summary"]} == {"input", "model"}
    assert main(["evaluate", str(sentinel), str(tmp_path / "nothing"), "-o", str(out)]) == 1
    assert "no testset.csv" in capsys.readouterr().err


def test_evaluate_suite_and_update_card(corpus, sentinel, tmp_path, capsys):  # noqa: F811
    import shutil

    model = tmp_path / "model"
    shutil.copytree(sentinel, model)
    out = tmp_path / "eval"
    assert main(["evaluate", str(model), str(corpus), "-o", str(out), "--suite", "harm",
                 "--no-baselines", "--update-card", "--quiet", "--dehum", "off",
                 "--dethump", "auto"]) == 0
    printed = capsys.readouterr().out
    assert "acoustic:" in printed and "| clean-acoustic |" in printed
    assert "metrics written to" in printed
    rows = (out / "testset" / "testset.csv").read_text()
    assert "clean-acoustic" in rows and "hum" not in rows
    metrics = json.loads((model / "model.json").read_text())["metrics"]
    assert any(k.startswith("harm_clean_clean_") for k in metrics)
    evaluated = json.loads((model / "model.json").read_text())["evaluated_with"]
    assert evaluated == {"harm": {"dehum": "off", "dethump": "auto"}}
    # a built test set: --update-card needs its suite named, and files the metrics under it
    built = ["evaluate", str(model), str(out / "testset"), "-o", str(tmp_path / "again"),
             "--no-baselines", "--update-card", "--quiet", "--dehum", "off"]
    assert main(built) == 1
    err = capsys.readouterr().err
    assert str(out / "testset") in err and "--suite" in err and len(err.splitlines()) == 1
    assert main([*built, "--suite", "types"]) == 0
    metrics = json.loads((model / "model.json").read_text())["metrics"]
    assert any(k.startswith("types_clean_clean_") for k in metrics)
    assert any(k.startswith("harm_clean_clean_") for k in metrics)  # kept
    with pytest.raises(SystemExit):
        main(["evaluate", str(sentinel), str(corpus), "--suite", "nope"])
    assert "--suite" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--per-category", "--workers"])
def test_build_corpus_rejects_bad_counts(flag, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["build-corpus", str(tmp_path), flag, "0"])
    assert flag in capsys.readouterr().err


def test_build_corpus_flags(tmp_path, capsys):
    from histdenoise.training.corpus import read_corpus
    from histdenoise.training.render import available_soundfonts

    if not available_soundfonts():
        pytest.skip("no GM soundfont")
    assert main(["build-corpus", str(tmp_path / "c"), "--per-category", "1", "--no-orchestra",
                 "--seed", "3", "--workers", "1", "--max-seconds", "4", "--spread-splits",
                 "--quiet"]) == 0
    assert "4 pieces" in capsys.readouterr().out  # piano, strings, choir, ensemble
    rows = read_corpus(tmp_path / "c")
    assert sorted(r["split"] for r in rows) == ["test", "train", "train", "validation"]  # in turn
    assert all(0 < float(r["seconds"]) <= 4.0 for r in rows)


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_build_corpus_rejects_bad_max_seconds(value, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["build-corpus", str(tmp_path), "--max-seconds", value])
    assert "--max-seconds" in capsys.readouterr().err
