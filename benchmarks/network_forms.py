"""The paper network on TensorFlow: its graph as it is now against the forms it replaced.

    python benchmarks/network_forms.py                  # one 960-frame chunk, 6 rounds
    python benchmarks/network_forms.py --frames 448 --rounds 4

Two changes of 2026-11-28 made the paper network's forward pass cheaper on a CPU, with
the same arithmetic:

- mirror padding by concatenating reversed edge slices, where TensorFlow's ``MirrorPad``
  kernel (``ops.pad(mode="symmetric")``) took 2.4x as long for the same copy;
- dense blocks of 32 or more filters that concatenate their padded sources, so that
  oneDNN fuses every convolution with its bias and ELU, where the stacked-kernel form
  (kept for narrow blocks) added partial sums and ran bias and ELU as separate passes.

This script builds the paper network once (seeded random weights with non-zero biases:
zero biases would be folded away and hide the fusion), traces it as it is now, then with
the old padding and the stacked form everywhere (``before``), and times the two in turns
in one process, so both see the same machine load. The float32 matmul ceiling is measured
in the same process between every two timed calls (`benchmarks.machine.interleave`): on a
shared machine it moves by up to 2x within minutes. It prints the CPU, and per form the
median and best seconds per call, GFLOP/s, the median ceiling around its calls and the
median (and range) of the per-call shares of the ceiling; and the largest difference
between the two outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=960, help="frames per chunk (default 960)")
    p.add_argument("--rounds", type=int, default=6, help="timed calls of each form")
    args = p.parse_args()

    import keras
    import tensorflow as tf
    from keras import ops

    from benchmarks.machine import MatmulCeiling, cpu_name, interleave, summarise
    from histdenoise.model import network

    keras.utils.set_random_seed(0)
    config = network.NetworkConfig.paper()
    net = network.build_network(config)
    rng = np.random.default_rng(1)
    for v in net.weights:
        if v.path.endswith("bias"):
            v.assign(0.01 * rng.standard_normal(v.shape).astype("float32"))
    spec = [tf.TensorSpec([None, None, config.freq_bins, 2], tf.float32)]
    x = rng.standard_normal((1, args.frames, config.freq_bins, 2)).astype("float32")
    x = tf.constant(x)

    def traced():
        fn = tf.function(lambda s: net(s, training=False)[0], input_signature=spec)
        return fn, fn(x).numpy()

    now, y_now = traced()

    def mirror_pad(t, kernel_size: int):  # the padding before: MirrorPad in a cond
        before, after = network.pad_sizes(kernel_size)
        if before == 0 and after == 0:
            return t
        pads = [[0, 0], [before, after], [before, after], [0, 0]]
        return ops.cond(
            ops.shape(t)[1] > max(before, after),
            lambda: ops.pad(t, pads, mode="symmetric"),
            lambda: network._mirror_by_indices(t, before, after),
        )

    pad, wide = network.symmetric_pad, network.WIDE_FILTERS
    network.symmetric_pad, network.WIDE_FILTERS = mirror_pad, 10**9
    try:
        before, y_before = traced()
    finally:
        network.symmetric_pad, network.WIDE_FILTERS = pad, wide

    print(f"CPU: {cpu_name()}", flush=True)
    samples = interleave({"before": lambda: before(x).numpy(), "now": lambda: now(x).numpy()},
                         args.rounds, MatmulCeiling())
    diff = float(np.max(np.abs(y_now - y_before)) / np.max(np.abs(y_before)))
    print(f"largest output difference: {diff:.1e} of the largest output")
    gflop = network.count_flops(config, args.frames) / 1e9
    times = {}
    for name, got in samples.items():
        times[name] = [s for s, _ in got]
        print(json.dumps({"form": name, "frames": args.frames, **summarise(got, gflop)}))
    print(f"before / now: {np.median(times['before']) / np.median(times['now']):.2f}x")


if __name__ == "__main__":
    main()
