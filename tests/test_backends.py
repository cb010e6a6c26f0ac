"""The network and training on Keras's other backends (JAX here; PyTorch where installed).

Each backend runs in a subprocess (``KERAS_BACKEND`` is read once per process) against
what this TensorFlow process computes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

FORWARD = """
import json, sys
import numpy as np
import keras
from histdenoise.model.network import NetworkConfig, build_network
config, weights, inputs, out = sys.argv[1:5]
model = build_network(NetworkConfig.from_dict(json.loads(config)))
model.load_weights(weights)
results = {}
for name, x in np.load(inputs).items():
    s2, s1 = model.predict_on_batch(x)
    results[name] = np.asarray(s2)
np.savez(out, backend=keras.backend.backend(), **results)
"""


def run_backend(backend: str, script: str, *args: str) -> None:
    pytest.importorskip({"jax": "jax", "torch": "torch"}[backend])
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], env=env,
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_same_weights_same_outputs_on_other_backends(backend, small_model, reference, tmp_path):
    """The reference checkpoint's outputs, and odd frame counts, within 1e-4 of the largest
    output value."""
    from histdenoise.model.network import NetworkConfig

    ref = np.load(reference / "forward_small.npz")
    rng = np.random.default_rng(0)
    inputs = {"reference": ref["x"].astype(np.float32),
              "f1": rng.standard_normal((1, 1, 1025, 2)).astype(np.float32),
              "f77": rng.standard_normal((2, 77, 1025, 2)).astype(np.float32)}
    np.savez(tmp_path / "x.npz", **inputs)
    small_model.save_weights(tmp_path / "w.weights.h5")
    config = json.dumps(NetworkConfig.small().to_dict())
    run_backend(backend, FORWARD, config, str(tmp_path / "w.weights.h5"),
                str(tmp_path / "x.npz"), str(tmp_path / "y.npz"))
    got = np.load(tmp_path / "y.npz")
    assert str(got["backend"]) == backend
    scale = np.abs(ref["stage2"]).max()
    assert np.abs(got["reference"] - ref["stage2"]).max() <= 1e-4 * scale
    for name in ("f1", "f77"):
        tf_out = np.asarray(small_model.predict_on_batch(inputs[name])[0])
        assert got[name].shape == inputs[name].shape
        assert np.abs(got[name] - tf_out).max() <= 1e-4 * np.abs(tf_out).max()


TRAIN = """
import json, sys
from histdenoise.training import TrainConfig, Trainer
config = TrainConfig.from_dict(json.loads(sys.argv[1]))
trainer = Trainer(config, progress=False)
result = trainer.run()
trainer.close()
print(json.dumps({"step": trainer.step, "loss": result["train_loss"]}))
"""


def test_train_on_jax_and_resume_on_tensorflow(tmp_path):
    """A run started under JAX continues under TensorFlow from the same checkpoint."""
    from histdenoise.training import TrainConfig, Trainer
    from histdenoise.training.data import DataConfig
    from tests.test_training import TINY, tiny_corpus

    corpus = tiny_corpus(tmp_path / "corpus")
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), name="tiny", network=TINY,
                      data=DataConfig(corpus=[str(corpus)], segment_frames=32), steps=2,
                      validate_every=2, validation_examples=1, batch_size=2, seed=3)
    run_backend("jax", TRAIN, json.dumps(cfg.to_dict()))
    state = json.loads((tmp_path / "run" / "ckpt" / "state.json").read_text())
    assert state["step"] == 2 and state["backend"] == "jax"
    cfg.steps = 3
    trainer = Trainer(cfg, progress=False)
    assert trainer.step == 2
    result = trainer.run()
    trainer.close()
    assert trainer.step == 3 and np.isfinite(result["train_loss"])
