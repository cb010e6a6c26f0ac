"""Training: MAE on real/imag spectrograms over both stages, resumable, on any Keras backend.

``histdenoise train CONFIG.json`` runs `train` with a `TrainConfig` read from JSON. A run
folder holds ``ckpt/`` (weights, optimiser state and step, written atomically; resumed
automatically, also under another Keras backend), ``logs/`` (TensorBoard, where
TensorFlow is installed), ``history.csv`` (loss and validation per interval), with
``keep_best`` ``best.weights.h5`` and ``best.json`` (the best validation's weights and
figures) and, at the end, ``model/`` (the native checkpoint with its model card).

The step is Keras's own ``fit`` on the backend that ``KERAS_BACKEND`` names (TensorFlow,
JAX or PyTorch); the network uses only ``keras.ops``, so the same weights give the same
outputs on each. Batches are made ahead by worker processes (``workers``), each from its
step's own seed (`histdenoise.training.data.ExampleSource.batch`), so a resumed run sees the
batches it would have seen.

Scaling:

- ``strategy``: ``"default"`` (one device); with TensorFlow ``"mirrored"`` (all local
  GPUs, ``tf.distribute.MirroredStrategy``), ``"multiworker"`` (hosts listed in
  ``TF_CONFIG``) or ``"auto"``; with JAX ``"mirrored"``/``"auto"`` is Keras's
  ``DataParallel`` over all local devices. The batch size is global.
- ``mixed_precision``: float16 compute with float32 weights and a loss-scaling optimiser
  (GPUs); ``"bfloat16"`` for CPUs with AVX512-BF16, TPUs and recent GPUs. The model
  alone gets the policy: Keras's global policy is never changed.
- ``remat``: recompute activations in the backward pass (``keras.remat`` around every
  I-block); trades about a third more compute for much less activation memory.

Training layer: must not import histdenoise.notebook at module level.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from histdenoise.errors import HistdenoiseError, check_keys
from histdenoise.files import temp_path
from histdenoise.model.network import NetworkConfig, build_network
from histdenoise.training.data import (
    BatchStream,
    DataConfig,
    ExampleSource,
    fixed_examples,
    split_pieces,
)


@dataclass
class TrainConfig:
    """One training run.

    Attributes:
        run_dir: output folder (created; an existing run is resumed).
        name: model name written into the final model card.
        network: network shape.
        data: data settings.
        batch_size: examples per step (global, across replicas).
        steps: total optimiser steps.
        max_minutes: stop (resumably) after this wall-clock time; 0 for no limit.
        learning_rate, beta_1, beta_2: Adam (paper: 1e-4, 0.5, 0.9).
        final_learning_rate: if above 0, the learning rate follows a cosine from
            ``learning_rate`` at step 0 to this at ``steps`` (a resumed run continues the
            curve where it stopped); 0 keeps it constant.
        validate_every: steps between validations and checkpoints.
        validation_examples: fixed validation pairs.
        strategy: ``auto``, ``default``, ``mirrored`` or ``multiworker``.
        mixed_precision: ``""``, ``"float16"`` or ``"bfloat16"``.
        remat: recompute activations in the backward pass.
        seed: seed of data and initial weights.
        workers: processes making training batches ahead (0: in the training process).
        init_from: start from this model's weights (registry name or path; fine-tuning,
            or continuing a run whose checkpoint folder is gone) instead of random ones.
        guard_categories: corpus categories held out of training (``data``'s
            ``exclude_categories``) whose ``train``-split pieces, which no run trains on
            and no test set holds, make a second fixed validation set of
            ``validation_examples`` noisy pairs. It shows a run starting to treat music it
            never saw as noise: history columns ``guard_si_sdr_improvement_db`` and
            ``guard_low_band_db`` (the output's level in 20-200 Hz against the clean
            music's, dB; below 0 when bass is removed).
        keep_best: ``""``, or the history column (``val_si_sdr_improvement_db`` or
            ``guard_si_sdr_improvement_db``) whose best validation's weights are kept in
            ``best.weights.h5`` (step and figures in ``best.json``) and exported instead
            of the last step's.
        description, licence: for the model card.
    """

    run_dir: str = "runs/default"
    name: str = "model"
    network: NetworkConfig = field(default_factory=NetworkConfig.paper)
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 4
    steps: int = 100_000
    max_minutes: float = 0.0
    learning_rate: float = 1e-4
    beta_1: float = 0.5
    beta_2: float = 0.9
    final_learning_rate: float = 0.0
    validate_every: int = 500
    validation_examples: int = 16
    strategy: str = "auto"
    mixed_precision: str = ""
    remat: bool = False
    seed: int = 0
    workers: int = 0
    init_from: str = ""
    guard_categories: list[str] = field(default_factory=list)
    keep_best: str = ""
    description: str = ""
    licence: str = "MIT"

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["network"] = self.network.to_dict()
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        check_keys("training settings", d, cls.__dataclass_fields__)
        if "network" in d:
            d["network"] = NetworkConfig.from_dict(d["network"])
        if "data" in d:
            d["data"] = DataConfig.from_dict(d["data"])
        return cls(**d)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise HistdenoiseError(f"{path}: no such training config") from None
        except (ValueError, TypeError) as exc:
            raise HistdenoiseError(f"{path}: invalid training config ({exc})") from None


def make_strategy(name: str):
    """The ``tf.distribute`` strategy called ``name`` (see module docs); TensorFlow only."""
    import tensorflow as tf

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise HistdenoiseError(f"unknown strategy {name!r} (auto, default, mirrored, multiworker)")


class _Scope:
    """Where the model and optimiser are made: a ``tf.distribute`` scope, Keras's
    ``DataParallel`` distribution (JAX), or nothing."""

    def __init__(self, name: str, backend: str):
        import contextlib

        self.tf_strategy = None
        self.context = contextlib.nullcontext()
        if name not in ("auto", "default", "mirrored", "multiworker"):
            raise HistdenoiseError(
                f"unknown strategy {name!r} (auto, default, mirrored, multiworker)")
        if backend == "tensorflow":
            self.tf_strategy = make_strategy(name)
            self.context = self.tf_strategy.scope()
        elif backend == "jax" and name in ("auto", "mirrored"):
            import jax
            import keras

            if len(jax.devices()) > 1:
                self.context = keras.distribution.DataParallel().scope()
        elif name in ("mirrored", "multiworker"):
            raise HistdenoiseError(f"strategy {name!r} needs the TensorFlow or JAX backend")


def learning_rate_at(config: TrainConfig, step: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based): constant, or the cosine decay.

    Set on the optimiser's own variable before every step, so checkpoints keep one layout
    whichever schedule a run uses (runs can switch schedule when resumed).
    """
    if config.final_learning_rate <= 0:
        return config.learning_rate
    progress = min(max(step, 0), config.steps) / max(config.steps, 1)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.final_learning_rate + (config.learning_rate - config.final_learning_rate) * cosine


def spectrogram_loss(clean: np.ndarray, stage2: np.ndarray, stage1: np.ndarray) -> np.ndarray:
    """Mean absolute error on real/imag parts, summed over both stages: (batch,) for
    (batch, frames, bins, 2) arrays. The training step computes the same with Keras's
    ``mean_absolute_error`` on each output."""
    clean = np.asarray(clean, np.float32)
    e2 = np.mean(np.abs(np.asarray(stage2, np.float32) - clean), axis=(1, 2, 3))
    e1 = np.mean(np.abs(np.asarray(stage1, np.float32) - clean), axis=(1, 2, 3))
    return e2 + e1


POLICIES = {"": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
BEST_WEIGHTS = "best.weights.h5"
"""The ``keep_best`` weights in a run folder."""
BEST_RECORD = "best.json"
"""The history row of the ``keep_best`` weights."""


class Trainer:
    """Runs a `TrainConfig`; `run` may be called again after an interruption.

    Attributes:
        step: optimiser steps done (the run's position).
        model, optimizer: the Keras objects being trained.
    """

    def __init__(self, config: TrainConfig, progress: bool = True):
        if config.mixed_precision not in POLICIES:
            raise HistdenoiseError(
                f"mixed_precision must be float16 or bfloat16, got {config.mixed_precision!r}"
            )
        best_columns = ("val_si_sdr_improvement_db", "guard_si_sdr_improvement_db")
        if config.keep_best and config.keep_best not in best_columns[: 1 + bool(
                config.guard_categories)]:
            raise HistdenoiseError(
                f"keep_best must be one of {', '.join(best_columns)} (the second needs "
                f"guard_categories), got {config.keep_best!r}")
        self.config = config
        self.progress = progress
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        # Data workers fork first, before any accelerator runtime has threads to lose.
        self.train_source = ExampleSource(config.data, "train", seed=config.seed + 1)
        self.stream = BatchStream(self.train_source, config.batch_size, config.workers)
        # Validation pairs always carry noise: a noise-free pair (``clean_fraction``) has
        # an unbounded input SI-SDR, and its "improvement" would swamp the mean.
        self.validation = fixed_examples(
            replace(config.data, clean_fraction=0.0), "validation", config.validation_examples,
            seed=config.seed + 12345,
        )
        self.guard = []
        if config.guard_categories:
            guard = replace(config.data, clean_fraction=0.0, exclude_categories=[],
                            categories=list(config.guard_categories))
            self.guard = fixed_examples(guard, "train", config.validation_examples,
                                        seed=config.seed + 23456)
        import keras

        self.backend = keras.backend.backend()
        keras.utils.set_random_seed(config.seed)
        self.scope = _Scope(config.strategy, self.backend)
        with self.scope.context:
            self.model = build_network(
                config.network, remat=config.remat, dtype=POLICIES[config.mixed_precision]
            )
            opt = keras.optimizers.Adam(
                config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2
            )
            if config.mixed_precision == "float16":
                opt = keras.optimizers.LossScaleOptimizer(opt)
            self.optimizer = opt
            self.model.compile(
                optimizer=opt,
                loss=["mean_absolute_error", "mean_absolute_error"],
                jit_compile=self.backend == "jax",
            )
            self.optimizer.build(self.model.trainable_variables)
        if not self._restore() and config.init_from:
            from histdenoise.model.loading import load_model

            source, card = load_model(config.init_from)
            if card.config != config.network:
                raise HistdenoiseError(f"{config.init_from}: network config differs from the "
                                       "training config's")
            self.model.set_weights(source.get_weights())

    def close(self) -> None:
        """Stop the batch workers (`run` may not be called afterwards)."""
        self.stream.close()

    @property
    def step(self) -> int:
        return int(np.asarray(self.optimizer.iterations))

    # ----------------------------------------------------------------- checkpoints
    def _state_dirs(self) -> tuple[Path, Path, Path]:
        ckpt = self.run_dir / "ckpt"
        return ckpt, ckpt.with_name("ckpt.new"), ckpt.with_name("ckpt.old")

    def save(self) -> Path:
        """Write weights, optimiser state and step to ``ckpt/`` (atomically: a killed
        save leaves the previous checkpoint)."""
        from keras import ops

        ckpt, new, old = self._state_dirs()
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        self.model.save_weights(new / "model.weights.h5")
        arrays = {f"v{i}": ops.convert_to_numpy(v) for i, v in enumerate(self.optimizer.variables)}
        np.savez(new / "optimizer.npz", **arrays)
        state = {"step": self.step, "backend": self.backend,
                 "optimizer_variables": [v.path for v in self.optimizer.variables]}
        (new / "state.json").write_text(json.dumps(state, indent=1))
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            ckpt.rename(old)
        new.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)
        return ckpt

    def _restore(self) -> bool:
        """Load the run's checkpoint if there is one; False when starting fresh."""
        ckpt, _, old = self._state_dirs()
        if not (ckpt / "state.json").is_file() and (old / "state.json").is_file():
            ckpt = old  # a save was killed between its two renames
        if not (ckpt / "state.json").is_file():
            if (ckpt / "checkpoint").is_file():
                raise HistdenoiseError(
                    f"{ckpt}: a TensorFlow checkpoint of histdenoise < 0.2; continue that run "
                    "with init_from (its model folder) and a new run_dir")
            return False
        self.model.load_weights(ckpt / "model.weights.h5")
        with np.load(ckpt / "optimizer.npz") as arrays:
            values = [arrays[f"v{i}"] for i in range(len(arrays.files))]
        if len(values) != len(self.optimizer.variables):
            raise HistdenoiseError(f"{ckpt}: optimiser state does not match this config")
        for var, value in zip(self.optimizer.variables, values, strict=True):
            var.assign(value)
        return True

    # ----------------------------------------------------------------- training
    def validate(self) -> dict[str, float]:
        """Validation loss and SI-SDR improvement (dB) on the fixed validation pairs; with
        ``guard_categories`` the guard set's SI-SDR improvement and 20-200 Hz level (dB)."""
        loss, gain, _ = self._score(self.validation)
        row = {"val_loss": loss, "val_si_sdr_improvement_db": gain}
        if self.guard:
            _, gain, low = self._score(self.guard)
            row |= {"guard_si_sdr_improvement_db": gain, "guard_low_band_db": low}
        return row

    def _score(self, examples: list) -> tuple[float, float, float]:
        """Mean loss, SI-SDR improvement (dB) and 20-200 Hz level of the output against
        the clean music's (dB, as `histdenoise evaluate` measures it) over (noisy, clean,
        category) waveform pairs."""
        from keras import ops

        from histdenoise.metrics import si_sdr_db
        from histdenoise.stft import from_channels, istft, stft, to_channels
        from histdenoise.training.evaluate import BANDS_HZ, band_levels_db

        low = BANDS_HZ.index((20, 200))
        cfg = self.train_source.stft
        losses, gains, levels = [], [], []
        for noisy, clean, _ in examples:
            x = to_channels(stft(noisy, cfg))[None]
            y = to_channels(stft(clean, cfg))[None]
            s2, s1 = (ops.convert_to_numpy(o) for o in self.model.predict_on_batch(x))
            losses.append(float(spectrogram_loss(y, s2, s1)[0]))
            est = istft(from_channels(s2.astype(np.float32)[0]), cfg)
            ref = istft(from_channels(y[0]), cfg)
            nin = istft(from_channels(x[0]), cfg)
            inner = slice(cfg.n_fft, len(ref) - cfg.n_fft)
            gains.append(si_sdr_db(est[inner], ref[inner]) - si_sdr_db(nin[inner], ref[inner]))
            ref_low = band_levels_db(ref[inner], cfg.sample_rate)[low]
            if ref_low > -100:  # skip excerpts with no bass to lose
                levels.append(band_levels_db(est[inner], cfg.sample_rate)[low] - ref_low)
        return (float(np.mean(losses)), float(np.mean(gains)),
                float(np.mean(levels)) if levels else float("nan"))

    def _keep_if_best(self, row: dict) -> None:
        """With ``keep_best``: keep this validation's weights if its figure is the best
        yet (``best.weights.h5`` and ``best.json``, each replaced atomically)."""
        column = self.config.keep_best
        if not column or not np.isfinite(row.get(column, np.nan)):
            return
        best = self.best()
        if best is not None and best[column] >= row[column]:
            return
        tmp = self.run_dir / "best.new.weights.h5"
        self.model.save_weights(tmp)
        os.replace(tmp, self.run_dir / BEST_WEIGHTS)
        record = self.run_dir / "best.new.json"
        record.write_text(json.dumps(row, indent=1))
        os.replace(record, self.run_dir / BEST_RECORD)

    def best(self) -> dict | None:
        """The history row of the kept best weights (``keep_best``), or None."""
        path = self.run_dir / BEST_RECORD
        if not (path.is_file() and (self.run_dir / BEST_WEIGHTS).is_file()):
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def _fit(self, first: int, count: int, bar, deadline: float) -> list[float]:
        """``count`` optimiser steps from step ``first`` with Keras's ``fit``; returns the
        loss of each step done (fewer when the deadline passes)."""
        import keras

        trainer, losses, total = self, [], [0.0]

        class Steps(keras.utils.PyDataset):
            def __len__(self):
                return count

            def __getitem__(self, i):
                noisy, clean = trainer.stream.get(first + i)
                return noisy, (clean, clean)

        class PerStep(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                trainer.optimizer.learning_rate.assign(
                    learning_rate_at(trainer.config, first + batch))

            def on_train_batch_end(self, batch, logs=None):
                mean = float((logs or {}).get("loss", np.nan))  # running mean of the epoch
                losses.append(mean * (batch + 1) - total[0])
                total[0] += losses[-1]
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
                if deadline and time.monotonic() > deadline:
                    self.model.stop_training = True

        self.model.fit(Steps(), epochs=1, verbose=0, callbacks=[PerStep()], shuffle=False)
        return losses

    def run(self) -> dict:
        """Train until ``steps`` or ``max_minutes``; returns the last validation figures
        (``step`` always; those of the last recorded validation when this run trained
        nothing, as when a finished run is run again)."""
        from tqdm.auto import tqdm

        cfg = self.config
        start_time = time.monotonic()
        deadline = start_time + 60 * cfg.max_minutes if cfg.max_minutes else 0.0
        start_step = self.step
        history = self.run_dir / "history.csv"
        last: dict = {}
        with tqdm(total=cfg.steps, initial=start_step, unit="step", desc="train",
                  disable=not self.progress) as bar:
            while self.step < cfg.steps:
                step = self.step
                count = min(cfg.validate_every - step % cfg.validate_every, cfg.steps - step)
                losses = self._fit(step, count, bar, deadline)
                out_of_time = bool(deadline) and time.monotonic() > deadline
                last = {
                    "step": self.step,
                    "train_loss": float(np.mean(losses)) if losses else float("nan"),
                    **self.validate(),
                    "minutes": round((time.monotonic() - start_time) / 60, 2),
                }
                self.save()
                self._keep_if_best(last)
                _append_row(history, last)
                _log_scalars(self.run_dir / "logs", last)
                bar.write(json.dumps(last))
                if out_of_time:
                    break
        if not last:  # nothing validated this run (e.g. a finished run run again)
            recorded = read_history(self.run_dir)
            last = dict(recorded[-1]) if recorded else {}
            last["step"] = self.step
        last["finished"] = self.step >= cfg.steps
        last["steps_this_run"] = self.step - start_step
        return last

    def export(self, folder: str | Path | None = None, metrics: dict | None = None) -> Path:
        """Write the trained network as a native checkpoint with a full model card."""

        from histdenoise.card import ModelCard
        from histdenoise.model.native import save_native

        folder = Path(folder) if folder else self.run_dir / "model"
        # A fresh float32 network: the trained one is compiled (its weights file would
        # carry the optimiser state, three times the size) and may be mixed precision.
        model = build_network(self.config.network, dtype="float32")
        best = self.best() if self.config.keep_best else None
        if best is not None:  # float32 weights whatever the run's precision policy
            model.load_weights(self.run_dir / BEST_WEIGHTS)
        else:
            model.set_weights(self.model.get_weights())
        card = ModelCard(
            name=self.config.name,
            config=self.config.network,
            description=self.config.description,
            licence=self.config.licence,
            source=f"trained by histdenoise (run {self.run_dir.name})",
            training={
                **self.config.to_dict(),
                "steps_done": self.step,
                **({"exported_step": int(best["step"])} if best is not None else {}),
                "backend": self.backend,
                "train_pieces": len(self.train_source.pieces),
            },
            training_pieces=split_pieces(self.config.data.corpus, "train"),
            metrics=metrics or {},
        )
        return save_native(model, folder, card, overwrite=True)


def _log_scalars(folder: Path, row: dict) -> None:
    """Write a history row to TensorBoard's event files, where TensorFlow and TensorBoard
    are installed (neither is needed to train)."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):
        return
    import tensorflow as tf

    with tf.summary.create_file_writer(str(folder)).as_default():
        for k, v in row.items():
            if k != "step":
                tf.summary.scalar(k, v, step=row["step"])


def _append_row(path: Path, row: dict) -> None:
    """Append ``row`` to the CSV file at ``path`` in its header's column order.

    A row with columns the header lacks (a run resumed with a newer version or config
    that records more, such as the guard set's) rewrites the file, atomically, with the
    union of the columns; the earlier rows are blank in the new ones (`read_history`
    skips blanks).
    """
    if not path.exists():
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, list(row))
            writer.writeheader()
            writer.writerow(row)
        return
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        added = [k for k in row if k not in fields]
        rows = list(reader) if added else []
    if not added:
        with open(path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fields, restval="").writerow(row)
        return
    tmp = temp_path(path)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fields + added, restval="")
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow(row)
    os.replace(tmp, path)


def read_history(run_dir: str | Path) -> list[dict]:
    """The rows of a run's ``history.csv`` (step, losses, validation SI-SDR improvement dB,
    minutes), numbers as floats; empty before the first validation."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)]


def train(config: TrainConfig, progress: bool = True) -> tuple[dict, Path | None]:
    """Train (resuming if the run folder has a checkpoint); export the model when done."""
    trainer = Trainer(config, progress=progress)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    path = None
    if result.get("finished"):
        best = trainer.best() if config.keep_best else None
        row = best if best is not None else result
        path = trainer.export(metrics={k: v for k, v in row.items()
                                       if k.startswith(("val_", "guard_"))})
    return result, path
