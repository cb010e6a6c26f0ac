"""Data pipeline, training (resume, strategies, remat, mixed precision) and evaluation."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from histdenoise.model.network import NetworkConfig
from histdenoise.training import TrainConfig, Trainer, learning_rate_at, train
from histdenoise.training.data import BatchStream, DataConfig, ExampleSource, segment_samples
from histdenoise.training.degradations import DegradationConfig, RecordingChain

TINY = NetworkConfig(channels=(4, 8, 8), depth=2, dense_layers=1)


def tiny_corpus(root):
    """A four-piece corpus in ``root``: two training pieces, one validation, one test."""
    rows = []
    t = np.arange(44100 * 4) / 44100
    for i, split in enumerate(["train", "train", "validation", "test"]):
        x = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) * (0.6 + 0.4 * np.sin(t))
        path = root / split / "piano" / f"p{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x, 44100)
        rows.append(
            {
                "file": path.relative_to(root).as_posix(),
                "piece": f"p{i}",
                "category": "piano",
                "split": split,
            }
        )
    with open(root / "corpus.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("corpus"))


def test_examples_follow_the_split_and_the_mixing(corpus):
    src = ExampleSource(DataConfig(corpus=[str(corpus)], segment_frames=32), "train", seed=1)
    assert {p.stem for p, _ in src.pieces} == {"p0", "p1"}
    noisy, clean, category = src.example(snr_db=6.0)
    assert noisy.shape == clean.shape == (segment_samples(32),) and category == "piano"
    assert 10 * np.log10(np.var(clean) / np.var(noisy - clean)) == pytest.approx(6.0, abs=0.01)
    x, y = src.spectrogram_pair()
    assert x.shape == y.shape == (32, 1025, 2)
    again = ExampleSource(DataConfig(corpus=[str(corpus)], segment_frames=32), "train", seed=1)
    np.testing.assert_array_equal(again.example(snr_db=6.0)[0], noisy)


def test_examples_use_the_data_configs_degradations(corpus):
    from histdenoise.training.degradations import NOISE_TYPES, Hum

    silent = DegradationConfig.from_dict({"probability": dict.fromkeys(NOISE_TYPES, 0.0)})
    data = DataConfig(corpus=[str(corpus)], segment_frames=256, degradations=silent)
    assert not np.any(ExampleSource(data, "train", seed=1).noise_segment())
    hum = DegradationConfig.only("hum")
    hum.hum = Hum(mains_hz=(60.0,), harmonics=(2, 2))
    data = DataConfig(corpus=[str(corpus)], segment_frames=256, degradations=hum)
    noise = ExampleSource(data, "train", seed=1).noise_segment()
    spectrum = np.abs(np.fft.rfft(noise))
    peak_hz = np.argmax(spectrum) * 44100 / noise.size
    assert peak_hz == pytest.approx(60.0, abs=0.7)  # 60 Hz only, as configured


def test_batches_are_the_same_from_worker_processes(corpus):
    data = DataConfig(corpus=[str(corpus)], segment_frames=16, cache_audio=True,
                      single_noise_fraction=0.5, clean_fraction=0.3,
                      recording_chain=RecordingChain(acoustic=0.5, electrical=0.5))
    src = ExampleSource(data, "train", seed=0)
    with BatchStream(src, 3, workers=2) as stream:
        noisy, clean = stream.get(5)
        later = stream.get(7)
    assert noisy.shape == clean.shape == (3, 16, 1025, 2)
    np.testing.assert_array_equal(noisy, src.batch(5, 3)[0])
    np.testing.assert_array_equal(later[1], src.batch(7, 3)[1])
    assert not np.array_equal(noisy, src.batch(6, 3)[0])


def test_data_config_json_round_trip_and_unknown_keys():
    from histdenoise.errors import HistdenoiseError

    data = DataConfig(corpus=["x"], recording_chain=RecordingChain(acoustic=0.4),
                      degradations=DegradationConfig.from_dict(
                          {"hum": {"mains_hz": [60.0]}, "probability": {"hum": 0.9}}))
    back = DataConfig.from_dict(json.loads(json.dumps(data.to_dict())))
    assert back == data and back.degradations.hum.mains_hz == (60.0,)
    assert back.degradations.probability["hum"] == 0.9
    with pytest.raises(HistdenoiseError, match="unknown data settings: nope"):
        DataConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match=r"unknown Hum settings: f0 \(known: mains_hz, harmonics"):
        DegradationConfig.from_dict({"hum": {"f0": 50}})


def config(corpus, run_dir, **kw):
    settings = {"steps": 4, "validate_every": 2, "validation_examples": 2, "batch_size": 2, **kw}
    return TrainConfig(
        run_dir=str(run_dir),
        name="tiny",
        network=TINY,
        data=DataConfig(corpus=[str(corpus)], segment_frames=32),
        **settings,
    )


def test_train_resume_and_export(corpus, tmp_path):
    cfg = config(corpus, tmp_path / "run", strategy="default")
    result, model = train(cfg, progress=False)
    assert result["finished"] and result["step"] == 4
    history = list(csv.DictReader((tmp_path / "run" / "history.csv").read_text().splitlines()))
    assert [int(h["step"]) for h in history] == [2, 4]
    assert list((tmp_path / "run" / "logs").iterdir())
    cfg.steps = 6
    result, model = train(cfg, progress=False)
    assert result["steps_this_run"] == 2 and result["step"] == 6
    card = json.loads((model / "model.json").read_text())
    assert card["name"] == "tiny" and card["training"]["steps_done"] == 6
    assert card["training_pieces"] == ["p0", "p1"]  # the corpus's train split
    again, _ = train(cfg, progress=False)  # a finished run run again (notebooks are re-run)
    assert again["steps_this_run"] == 0 and again["step"] == 6 and again["finished"]
    assert again["val_si_sdr_improvement_db"] == result["val_si_sdr_improvement_db"]
    assert "val_si_sdr_improvement_db" in card["metrics"]
    from histdenoise import load_network

    assert load_network(model).count_params() == card_params(TINY)


def card_params(config):
    from histdenoise.model.network import count_parameters

    return count_parameters(config)


def test_history_gains_columns_when_a_resumed_run_records_more(tmp_path):
    # A run started without the guard set and resumed with it: the history keeps one
    # header, the union of the columns, and the earlier rows are blank in the new ones.
    from histdenoise.training.trainer import _append_row, read_history

    path = tmp_path / "history.csv"
    _append_row(path, {"step": 2, "train_loss": 0.5, "val_si_sdr_improvement_db": 1.25})
    _append_row(path, {"step": 4, "train_loss": 0.4, "val_si_sdr_improvement_db": 1.5,
                       "guard_si_sdr_improvement_db": 0.75})
    _append_row(path, {"val_si_sdr_improvement_db": 2.0, "step": 6, "train_loss": 0.3})
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["step", "train_loss", "val_si_sdr_improvement_db",
                                     "guard_si_sdr_improvement_db"]
        assert [r["guard_si_sdr_improvement_db"] for r in reader] == ["", "0.75", ""]
    history = read_history(tmp_path)
    assert [r["step"] for r in history] == [2.0, 4.0, 6.0]
    assert [r["val_si_sdr_improvement_db"] for r in history] == [1.25, 1.5, 2.0]
    assert "guard_si_sdr_improvement_db" not in history[0]
    assert history[1]["guard_si_sdr_improvement_db"] == 0.75
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary left


def test_guard_set_and_keep_best(tmp_path):
    from histdenoise.training.trainer import read_history

    root = tiny_corpus(tmp_path / "corpus")
    rows = (root / "corpus.csv").read_text().splitlines()
    t = np.arange(44100 * 4) / 44100
    for i in range(2):  # a held-out category: bass notes in the train split
        path = root / "train" / "organ" / f"o{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.3 * np.sin(2 * np.pi * (55 + 30 * i) * t), 44100)
        rows.append(f"{path.relative_to(root).as_posix()},o{i},organ,train")
    (root / "corpus.csv").write_text("\n".join(rows) + "\n")
    cfg = config(root, tmp_path / "run", steps=6, validate_every=2, validation_examples=2,
                 guard_categories=["organ"], keep_best="guard_si_sdr_improvement_db")
    cfg.data.exclude_categories = ["organ"]
    trainer = Trainer(cfg, progress=False)
    try:
        assert {c for _, _, c in trainer.guard} == {"organ"}
        assert {c for _, c in trainer.train_source.pieces} == {"piano"}
        result = trainer.run()
        history = read_history(cfg.run_dir)
        assert result["finished"] and len(history) == 3
        for row in history:
            assert np.isfinite(row["guard_si_sdr_improvement_db"])
            assert -60 < row["guard_low_band_db"] < 20
        best = max(history, key=lambda r: r["guard_si_sdr_improvement_db"])
        assert trainer.best()["step"] == best["step"]
        model = trainer.export()
    finally:
        trainer.close()
    card = json.loads((model / "model.json").read_text())
    assert card["training"]["exported_step"] == best["step"]
    from histdenoise.model.loading import load_model

    exported = load_model(model).network.get_weights()
    kept = Trainer(cfg, progress=False)  # resumes the last step's weights
    kept.close()
    kept.model.load_weights(tmp_path / "run" / "best.weights.h5")
    for a, b in zip(exported, kept.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    from histdenoise.errors import HistdenoiseError

    with pytest.raises(HistdenoiseError, match="keep_best must be one of"):
        Trainer(config(root, tmp_path / "x", keep_best="guard_si_sdr_improvement_db"))


def test_resume_restores_weights_and_optimizer(corpus, tmp_path):
    import numpy as np

    cfg = config(corpus, tmp_path / "run", steps=2)
    first = Trainer(cfg, progress=False)
    first.run()
    again = Trainer(cfg, progress=False)
    assert again.step == 2
    for a, b in zip(first.model.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first.optimizer.variables, again.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_cosine_learning_rate_and_switching_schedule_on_resume(corpus, tmp_path):
    cfg = config(corpus, tmp_path / "run", steps=2)
    Trainer(cfg, progress=False).run()  # constant rate
    decayed = config(corpus, tmp_path / "run", steps=4, learning_rate=1e-3,
                     final_learning_rate=1e-5)
    assert learning_rate_at(decayed, 0) == pytest.approx(1e-3)
    assert learning_rate_at(decayed, 2) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert learning_rate_at(decayed, 4) == learning_rate_at(decayed, 9) == pytest.approx(1e-5)
    assert learning_rate_at(cfg, 1) == cfg.learning_rate
    again = Trainer(decayed, progress=False)  # same checkpoint layout, new schedule
    again.run()
    assert again.step == 4
    assert float(np.asarray(again.optimizer.learning_rate)) == pytest.approx(
        learning_rate_at(decayed, 3), rel=1e-6
    )


def test_time_budget_stops_resumably(corpus, tmp_path):
    cfg = config(corpus, tmp_path / "run", max_minutes=1e-4, steps=100)
    result, model = train(cfg, progress=False)
    assert not result["finished"] and model is None
    assert (tmp_path / "run" / "ckpt" / "state.json").is_file()
    assert not (tmp_path / "run" / "ckpt.new").exists()


@pytest.mark.parametrize(
    "kw", [{"strategy": "mirrored", "remat": True}, {"mixed_precision": "bfloat16"}]
)
def test_strategy_remat_and_mixed_precision_paths(corpus, tmp_path, kw):
    import keras

    trainer = Trainer(config(corpus, tmp_path / "run", steps=2, **kw), progress=False)
    result = trainer.run()
    assert np.isfinite(result["train_loss"])
    out = trainer.export(tmp_path / "model")
    assert json.loads((out / "model.json").read_text())["config"]["depth"] == 2
    assert keras.mixed_precision.dtype_policy().name == "float32"  # global policy untouched


def test_training_config_json_round_trip(tmp_path):
    cfg = TrainConfig(network=TINY, data=DataConfig(corpus=["x"], snr_db=(3.0, 9.0)))
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg.to_dict()))
    back = TrainConfig.from_json(path)
    assert back.network == TINY and back.data.snr_db == (3.0, 9.0)
    path.write_text(json.dumps({"nonsense": 1}))
    from histdenoise.errors import HistdenoiseError

    with pytest.raises(HistdenoiseError, match="unknown training settings: nonsense"):
        TrainConfig.from_json(path)


def test_build_testset_and_evaluate(corpus, sentinel, tmp_path):
    from histdenoise.training.evaluate import (
        evaluate,
        save_results,
        summarise,
    )
    from histdenoise.training.testsets import TestsetConfig, build_testset

    table = build_testset(
        [str(corpus)], tmp_path / "ts", TestsetConfig(excerpts_per_piece=1, seconds=1.0)
    )
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert [float(r["snr_db"]) for r in rows] == [2.0, 6.0, 12.0]
    results, info = evaluate(sentinel, tmp_path / "ts", progress=False)
    assert {r["method"] for r in results} == {"input", "model", "noisereduce"}
    for r in results:
        if r["method"] == "input":
            assert r["si_sdr_improvement"] == 0.0
    assert info["noisereduce_settings"]["prop_decrease"] in (0.5, 0.75, 1.0)
    summary = summarise(results)
    assert {(s["method"], s["category"]) for s in summary} >= {("model", "piano"), ("model", "all")}
    paths = save_results(results, info, tmp_path / "out")
    assert paths["plot"].stat().st_size > 10_000
    assert "| noisereduce |" in paths["table"].read_text()


def test_evaluate_warns_when_the_test_set_holds_training_pieces(corpus, sentinel, tmp_path):
    import shutil

    from histdenoise.training.evaluate import evaluate
    from histdenoise.training.testsets import TestsetConfig, build_testset

    build_testset([str(corpus)], tmp_path / "ts", TestsetConfig(excerpts_per_piece=1,
                                                                 seconds=1.0, snrs=(6.0,)))
    _, info = evaluate(sentinel, tmp_path / "ts", baselines=False, progress=False)
    assert info["training_overlap"] == []  # the sentinel's card lists no training pieces
    model = tmp_path / "trained-on-p3"
    shutil.copytree(sentinel, model)
    card = json.loads((model / "model.json").read_text())
    card["training_pieces"] = ["p0", "p1", "p3"]  # p3 is the corpus's test piece
    (model / "model.json").write_text(json.dumps(card))
    with pytest.warns(UserWarning, match=r"trained on 1 of this test set's 1 pieces \(p3\)"):
        _, info = evaluate(str(model), tmp_path / "ts", baselines=False, progress=False)
    assert info["training_overlap"] == ["p3"]


def test_init_from_a_model(corpus, sentinel, tmp_path):
    import numpy as np

    from histdenoise import load_network
    from histdenoise.errors import HistdenoiseError

    trainer = Trainer(config(corpus, tmp_path / "run", init_from=str(sentinel)), progress=False)
    source = load_network(sentinel)
    for a, b in zip(trainer.model.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    wrong = config(corpus, tmp_path / "run2", init_from=str(sentinel))
    wrong.network = NetworkConfig(channels=(4, 8, 8, 8), depth=3, dense_layers=1)
    with pytest.raises(HistdenoiseError, match="network config differs"):
        Trainer(wrong, progress=False)


def test_validation_pairs_always_carry_noise(corpus, tmp_path):
    """Even when every training example is noise-free, validation measures denoising (a
    clean pair once made the mean SI-SDR improvement -16 dB)."""
    import numpy as np

    cfg = config(corpus, tmp_path / "run")
    cfg.data.clean_fraction = 1.0
    cfg.validation_examples = 3
    trainer = Trainer(cfg, progress=False)
    trainer.close()
    for noisy, clean, _ in trainer.validation:
        assert np.sum((noisy - clean) ** 2) > 1e-3 * np.sum(clean**2)
    assert np.isfinite(trainer.validate()["val_si_sdr_improvement_db"])


def test_testset_conditions_levels_and_card_update(corpus, sentinel, tmp_path):
    """Clean, single-disturbance and acoustic-era examples; per-band levels; card metrics."""
    import shutil

    from histdenoise.training.evaluate import (
        evaluate,
        summarise,
        update_card,
    )
    from histdenoise.training.testsets import CLEAN_SNR, TestsetConfig, build_testset

    ts = TestsetConfig(snrs=(6.0,), excerpts_per_piece=1, seconds=1.0,
                       conditions=("clean", "hum", "acoustic", "clean-acoustic"))
    table = build_testset([str(corpus)], tmp_path / "ts", ts)
    rows = list(csv.DictReader(table.read_text().splitlines()))
    assert [(r["condition"], float(r["snr_db"])) for r in rows] == [
        ("clean", CLEAN_SNR), ("hum", 6.0), ("acoustic", 6.0), ("clean-acoustic", CLEAN_SNR)]
    clean = sf.read(tmp_path / "ts" / rows[0]["clean"])[0]
    np.testing.assert_array_equal(sf.read(tmp_path / "ts" / rows[0]["noisy"])[0], clean)
    hum = sf.read(tmp_path / "ts" / rows[1]["noisy"])[0] - sf.read(
        tmp_path / "ts" / rows[1]["clean"])[0]
    spectrum = np.abs(np.fft.rfft(hum))
    assert np.argmax(spectrum) / 1.0 in (50.0, 60.0, 100.0, 120.0)  # 1-s excerpt: 1 Hz bins
    results, _ = evaluate(sentinel, tmp_path / "ts", baselines=False, progress=False)
    inputs = {r["condition"]: r for r in results if r["method"] == "input"}
    assert inputs["clean"]["si_sdr_out"] == 100.0 and inputs["clean"]["level_db"] == 0.0
    assert inputs["hum"]["snr_out"] == pytest.approx(6.0, abs=1.0)  # mixed by variance
    assert abs(inputs["hum"]["band_20_200_db"]) > 1.0  # the hum sits below 200 Hz
    summary = summarise(results)
    folder = tmp_path / "model"
    shutil.copytree(sentinel, folder)
    update_card(folder, summary, "harm")
    metrics = json.loads((folder / "model.json").read_text())["metrics"]
    assert "harm_clean_clean_all_median_si_sdr" in metrics
    assert "harm_acoustic_6dB_all_band_200_400" in metrics
    assert "harm_hum_6dB_all" in metrics


def test_recording_chain_band_limits_the_music():
    from histdenoise.training.degradations import RecordingChain
    from histdenoise.training.evaluate import band_levels_db

    x = np.random.default_rng(0).standard_normal(44100)
    chain = RecordingChain(acoustic=1.0, electrical=0.0)
    y = chain.apply(x, 44100, np.random.default_rng(1))
    change = band_levels_db(y) - band_levels_db(x)  # bands: <200, 200-400, ..., 8k-20k Hz
    assert change[0] < -8 and change[-1] < -30  # below 200 Hz and above 8 kHz: gone
    assert -6 < change[3] < 12  # 800-1600 Hz: kept (resonances may lift it)
    assert np.array_equal(RecordingChain(acoustic=0.0, electrical=0.0).apply(
        x, 44100, np.random.default_rng(1)), x.astype(np.float32))


def test_plot_history_joins_stages(tmp_path):
    """tools/plot_history.py: a later stage's steps continue the earlier one's; a repeated
    step of a resumed run is dropped; the PNG is written."""
    import subprocess
    import sys

    from tests.conftest import REPO

    head = "step,train_loss,val_loss,val_si_sdr_improvement_db,minutes\n"
    (tmp_path / "a.csv").write_text(head + "100,0.5,0.6,1.0,1\n200,0.4,0.5,1.5,2\n")
    (tmp_path / "b.csv").write_text(head + "50,0.4,0.5,2.0,1\n50,0.4,0.5,2.0,1\n"
                                    "100,0.3,0.4,2.5,2\n")
    out = tmp_path / "curve.png"
    done = subprocess.run([sys.executable, str(REPO / "tools" / "plot_history.py"), str(out),
                           str(tmp_path / "a.csv"), str(tmp_path / "b.csv")],
                          capture_output=True, text=True, check=True)
    assert "4 points, stages start at [0, 200]" in done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_history_draws_the_guard_set_where_recorded():
    from histdenoise.notebook.plotting import plot_history

    rows = [{"step": 100, "train_loss": 0.5, "val_loss": 0.6, "val_si_sdr_improvement_db": 1.0},
            {"step": 200, "train_loss": 0.4, "val_loss": 0.5, "val_si_sdr_improvement_db": 1.5,
             "guard_si_sdr_improvement_db": 2.5}]
    right = plot_history(rows).axes[1]
    assert [line.get_label() for line in right.get_lines()] == ["validation",
                                                               "guard set (held out)"]
    assert list(right.get_lines()[1].get_xdata()) == [200]
    assert len(plot_history(rows[:1]).axes[1].get_lines()) == 1
