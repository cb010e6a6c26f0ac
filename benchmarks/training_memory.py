"""Peak memory of one training step, with and without activation recomputation.

    python benchmarks/training_memory.py                 # paper config, batch 1, 431 frames
    python benchmarks/training_memory.py --frames 256 --batch 2 --config bundled

Runs each variant in a fresh process on the CPU and prints the peak resident memory of
the first two steps above the memory after building the model: activations, gradients
and Adam's state (two moments per weight, created by the first step, after the
baseline), plus the traced step function. On a GPU the activation part is what must
fit in device memory; float16 mixed precision roughly halves it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def child(config_name: str, frames: int, batch: int, remat: bool) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    from histdenoise.model.network import NetworkConfig, build_network
    from histdenoise.training import spectrogram_loss

    config = NetworkConfig.paper() if config_name == "paper" else NetworkConfig(
        channels=(4, 8, 16, 24, 32, 48, 64), depth=6, dense_layers=2)
    model = build_network(config, remat=remat)
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, frames, 1025, 2)),
                    tf.float32)
    # The baseline is taken with the model built and nothing else: Adam's two moment
    # slots (2 x the weights) are created by the first step, after it, so that the
    # figure includes them as the docstring says.
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    opt = keras.optimizers.Adam(1e-4)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            s2, s1 = model(x, training=True)
            loss = tf.reduce_mean(spectrogram_loss(x, s2, s1))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    t0 = time.perf_counter()
    step(x)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    step(x)
    second = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"config": config_name, "frames": frames, "batch": batch, "remat": remat,
                      "step_peak_MB": (peak - base) / 1024, "step_s": round(second, 2),
                      "first_step_s": round(first, 2)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="paper", choices=("paper", "bundled"))
    p.add_argument("--frames", type=int, default=431)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--remat", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.config, args.frames, args.batch, args.remat)
        return
    for remat in (False, True):
        cmd = [sys.executable, __file__, "--child", "--config", args.config,
               "--frames", str(args.frames), "--batch", str(args.batch)]
        out = subprocess.run(cmd + (["--remat"] if remat else []), capture_output=True,
                             text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
