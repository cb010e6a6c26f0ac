"""Network throughput on whatever Keras backend and device this runs on (GPU users' figures).

For each config (the bundled shape and the paper's) and each precision (float32, and
bfloat16 in the first stage as `histdenoise.denoiser` runs it), times a compiled forward
pass over a batch of 960-frame chunks (the denoiser's default) with random weights, and
prints frames per second, seconds of audio per second, TFLOP/s and the fraction of a
bf16 / fp32 matrix-product ceiling measured in the same run on the same device.

Usage: KERAS_BACKEND=jax python benchmarks/network_throughput.py [--batch 4] [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def matmul_ceiling(dtype: str, n: int = 8192, repeat: int = 10) -> float:
    """TFLOP/s of an n x n x n matrix product in ``dtype`` through ``keras.ops``."""
    import keras
    from keras import ops

    rng = np.random.default_rng(0)
    a = ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    b = ops.convert_to_tensor(rng.standard_normal((n, n)).astype("float32"), dtype=dtype)
    ops.convert_to_numpy(ops.matmul(a, b)[0, 0])  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        c = ops.matmul(a, b)
    ops.convert_to_numpy(c[0, 0])
    del keras
    return 2 * n**3 * repeat / (time.perf_counter() - t) / 1e12


def time_network(config, stage1_dtype, batch: int, frames: int, repeat: int) -> float:
    """Seconds per forward pass over (batch, frames, 1025, 2)."""
    import keras
    from keras import ops

    from histdenoise.model.network import build_network

    model = build_network(config, stage1_dtype=stage1_dtype)
    x = np.random.default_rng(1).standard_normal((batch, frames, 1025, 2)).astype("float32")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        state = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        fn = jax.jit(lambda s, n, x: model.stateless_call(s, n, x)[0][0])
        run = lambda: fn(state, ntv, x)  # noqa: E731
    else:
        run = lambda: model(x, training=False)[0]  # noqa: E731
    ops.convert_to_numpy(run())  # compile / warm-up
    ops.convert_to_numpy(run())
    t = time.perf_counter()
    for _ in range(repeat):
        y = run()
    ops.convert_to_numpy(y)
    return (time.perf_counter() - t) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=960)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--matmul-size", type=int, default=8192, help="n of the n x n x n ceiling")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    import keras

    from histdenoise.model.network import NetworkConfig, count_flops
    from histdenoise.training import TrainConfig

    bundled = TrainConfig.from_json("configs/bundled.json").network
    ceilings = {d: matmul_ceiling(d, args.matmul_size) for d in ("float32", "bfloat16")}
    device = "cpu"
    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0].device_kind
    print(f"backend {keras.backend.backend()}, device {device}; matmul ceiling "
          f"float32 {ceilings['float32']:.1f}, bfloat16 {ceilings['bfloat16']:.1f} TFLOP/s")
    rows = []
    hop_s = 512 / 44100
    for name, config in (("bundled", bundled), ("paper", NetworkConfig.paper())):
        flop = count_flops(config, args.frames) * args.batch
        for precision, stage1 in (("float32", None), ("bfloat16", "mixed_bfloat16")):
            sec = time_network(config, stage1, args.batch, args.frames, args.repeat)
            tflops = flop / sec / 1e12
            frames_s = args.batch * args.frames / sec
            ceiling = ceilings["bfloat16" if stage1 else "float32"]
            rows.append({"config": name, "precision": precision, "s_per_call": sec,
                         "frames_per_s": frames_s, "audio_s_per_s": frames_s * hop_s,
                         "tflops": tflops, "of_ceiling": tflops / ceiling})
            print(f"| {name} | {precision} | {sec * 1000:.1f} ms | {frames_s:,.0f} frames/s | "
                  f"{frames_s * hop_s:,.0f} s audio/s | {tflops:.1f} TFLOP/s | "
                  f"{100 * tflops / ceiling:.0f} % of {ceiling:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "ceilings": ceilings, "rows": rows,
                       "batch": args.batch, "frames": args.frames}, f, indent=1)


if __name__ == "__main__":
    main()
