"""Training: MAE on real/imag spectrograms over both stages, resumable, distributed.

``histdenoise train CONFIG.json`` runs `train` with a `TrainConfig` read from JSON. A run
folder holds ``ckpt/`` (model, optimiser, step: resumed automatically), ``logs/``
(TensorBoard), ``history.csv`` (loss and validation per interval) and, at the end,
``model/`` (the native checkpoint with its model card).

Scaling, all on TensorFlow's own engine:

- ``strategy``: ``"default"`` (one device), ``"mirrored"`` (all local GPUs,
  ``tf.distribute.MirroredStrategy``), ``"multiworker"`` (hosts listed in ``TF_CONFIG``,
  ``tf.distribute.MultiWorkerMirroredStrategy``) or ``"auto"`` (mirrored when there is
  more than one GPU, multiworker when ``TF_CONFIG`` is set). The batch size is global.
- ``mixed_precision``: float16 compute with float32 weights and a loss-scaling optimiser
  (GPUs); ``"bfloat16"`` for CPUs with AVX512-BF16 and TPUs.
- ``remat``: recompute activations in the backward pass (``keras.remat`` around every
  I-block); trades about a third more compute for much less activation memory.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from histdenoise.data import (
    DataConfig,
    ExampleSource,
    fixed_examples,
    make_dataset,
    split_pieces,
)
from histdenoise.errors import HistdenoiseError
from histdenoise.network import NetworkConfig, build_network


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
        init_from: start from this model's weights (registry name or path; fine-tuning,
            or continuing a run whose checkpoint folder is gone) instead of random ones.
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
    init_from: str = ""
    description: str = ""
    licence: str = "MIT"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["network"] = self.network.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise HistdenoiseError(f"unknown training settings: {', '.join(sorted(unknown))}")
        if "network" in d:
            d["network"] = NetworkConfig.from_dict(d["network"])
        if "data" in d:
            data = dict(d["data"])
            for key in ("snr_db", "gain_db"):
                if key in data:
                    data[key] = tuple(data[key])
            d["data"] = DataConfig(**data)
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
    """The ``tf.distribute`` strategy called ``name`` (see module docs)."""
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


def spectrogram_loss(clean, stage2, stage1):
    """Mean absolute error on real/imag parts, summed over both stages (per example)."""
    import tensorflow as tf

    clean = tf.cast(clean, tf.float32)
    e2 = tf.reduce_mean(tf.abs(tf.cast(stage2, tf.float32) - clean), axis=[1, 2, 3])
    e1 = tf.reduce_mean(tf.abs(tf.cast(stage1, tf.float32) - clean), axis=[1, 2, 3])
    return e2 + e1


class Trainer:
    """Runs a `TrainConfig`; `run` may be called again after an interruption."""

    def __init__(self, config: TrainConfig, progress: bool = True):
        import keras
        import tensorflow as tf

        self.config = config
        self.progress = progress
        self.run_dir = Path(config.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        if config.mixed_precision:
            policy = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
            if config.mixed_precision not in policy:
                raise HistdenoiseError(
                    f"mixed_precision must be float16 or bfloat16, got {config.mixed_precision!r}"
                )
            keras.mixed_precision.set_global_policy(policy[config.mixed_precision])
        self.strategy = make_strategy(config.strategy)
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.model = build_network(config.network, remat=config.remat)
            opt = keras.optimizers.Adam(
                config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2
            )
            if config.mixed_precision == "float16":
                opt = keras.optimizers.LossScaleOptimizer(opt)
            self.optimizer = opt
            self.optimizer.build(self.model.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)
        self.manager = tf.train.CheckpointManager(self.ckpt, self.run_dir / "ckpt", max_to_keep=2)
        if self.manager.latest_checkpoint:
            self.ckpt.restore(self.manager.latest_checkpoint).expect_partial()
        elif config.init_from:
            from histdenoise.loading import load_network

            source = load_network(config.init_from)
            if source.histdenoise_card.config != config.network:
                raise HistdenoiseError(f"{config.init_from}: network config differs from the "
                                       "training config's")
            self.model.set_weights(source.get_weights())
        self.train_source = ExampleSource(
            config.data, "train", seed=config.seed + 1000 * int(self.step.numpy())
        )
        self.validation = fixed_examples(
            config.data, "validation", config.validation_examples, seed=config.seed + 12345
        )
        self.writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        self._train_step = self._make_train_step()

    def _make_train_step(self):
        import tensorflow as tf

        model, opt, strategy = self.model, self.optimizer, self.strategy
        global_batch = self.config.batch_size

        def replica_step(noisy, clean):
            with tf.GradientTape() as tape:
                stage2, stage1 = model(noisy, training=True)
                per_example = spectrogram_loss(clean, stage2, stage1)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                scaled = opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        @tf.function
        def step(noisy, clean):
            losses = strategy.run(replica_step, args=(noisy, clean))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

        return step

    def validate(self) -> dict[str, float]:
        """Validation loss and SI-SDR improvement (dB) on the fixed validation pairs."""
        import tensorflow as tf

        from histdenoise.metrics import si_sdr_db
        from histdenoise.stft import from_channels, istft, stft, to_channels

        cfg = self.train_source.stft
        losses, gains = [], []
        for noisy, clean, _ in self.validation:
            x = to_channels(stft(noisy, cfg))[None]
            y = to_channels(stft(clean, cfg))[None]
            s2, s1 = self.model(x, training=False)
            losses.append(float(spectrogram_loss(tf.constant(y), s2, s1)[0]))
            est = istft(from_channels(np.asarray(s2, np.float32)[0]), cfg)
            ref = istft(from_channels(y[0]), cfg)
            nin = istft(from_channels(x[0]), cfg)
            inner = slice(cfg.n_fft, len(ref) - cfg.n_fft)
            gains.append(si_sdr_db(est[inner], ref[inner]) - si_sdr_db(nin[inner], ref[inner]))
        return {
            "val_loss": float(np.mean(losses)),
            "val_si_sdr_improvement_db": float(np.mean(gains)),
        }

    def run(self) -> dict:
        """Train until ``steps`` or ``max_minutes``; returns the last validation figures
        (``step`` always; those of the last recorded validation when this run trained
        nothing, as when a finished run is run again)."""
        from tqdm.auto import tqdm

        cfg = self.config
        ds = self.strategy.experimental_distribute_dataset(
            make_dataset(self.train_source, cfg.batch_size)
        )
        start_time = time.monotonic()
        start_step = int(self.step.numpy())
        history = self.run_dir / "history.csv"
        last = {}
        window = []
        it = iter(ds)
        with (
            tqdm(
                total=cfg.steps,
                initial=start_step,
                unit="step",
                desc="train",
                disable=not self.progress,
            ) as bar,
            self.writer.as_default(),
        ):
            while int(self.step.numpy()) < cfg.steps:
                noisy, clean = next(it)
                self.optimizer.learning_rate.assign(learning_rate_at(cfg, int(self.step.numpy())))
                loss = float(self._train_step(noisy, clean))
                self.step.assign_add(1)
                step = int(self.step.numpy())
                window.append(loss)
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(window[-50:]):.4f}")
                import tensorflow as tf

                tf.summary.scalar("loss", loss, step=step)
                out_of_time = cfg.max_minutes and (
                    time.monotonic() - start_time > 60 * cfg.max_minutes
                )
                if step % cfg.validate_every == 0 or step == cfg.steps or out_of_time:
                    last = {
                        "step": step,
                        "train_loss": float(np.mean(window)),
                        **self.validate(),
                        "minutes": round((time.monotonic() - start_time) / 60, 2),
                    }
                    window = []
                    for k, v in last.items():
                        if k != "step":
                            tf.summary.scalar(k, v, step=step)
                    self.manager.save(checkpoint_number=step)
                    _append_row(history, last)
                    bar.write(json.dumps(last))
                if out_of_time:
                    break
        done = int(self.step.numpy()) >= cfg.steps
        if not last:  # nothing validated this run (e.g. a finished run run again)
            recorded = read_history(self.run_dir)
            last = dict(recorded[-1]) if recorded else {}
            last["step"] = int(self.step.numpy())
        last["finished"] = done
        last["steps_this_run"] = int(self.step.numpy()) - start_step
        return last

    def export(self, folder: str | Path | None = None, metrics: dict | None = None) -> Path:
        """Write the trained network as a native checkpoint with a full model card."""
        import keras

        from histdenoise.native import ModelCard, save_native

        folder = Path(folder) if folder else self.run_dir / "model"
        model = self.model
        if self.config.mixed_precision:  # export float32 weights
            keras.mixed_precision.set_global_policy("float32")
            model = build_network(self.config.network)
            model.set_weights(self.model.get_weights())
        card = ModelCard(
            name=self.config.name,
            config=self.config.network,
            description=self.config.description,
            licence=self.config.licence,
            source=f"trained by histdenoise (run {self.run_dir.name})",
            training={
                **self.config.to_dict(),
                "steps_done": int(self.step.numpy()),
                "train_pieces": len(self.train_source.pieces),
            },
            training_pieces=split_pieces(self.config.data.corpus, "train"),
            metrics=metrics or {},
        )
        return save_native(model, folder, card, overwrite=True)


def _append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


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
    result = trainer.run()
    path = (
        trainer.export(metrics={k: v for k, v in result.items() if k.startswith("val_")})
        if result.get("finished")
        else None
    )
    return result, path
