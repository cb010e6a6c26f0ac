"""Steady-state network speed: ONNX Runtime against TensorFlow, interleaved in one run.

    python benchmarks/backends.py                                   # bundled and paper
    python benchmarks/backends.py --configs bundled --frames 960 --repeats 9
    python benchmarks/backends.py --onnx old=/path/to/model.onnx    # another graph beside

One forward pass of ``--batch`` chunks (``--frames`` frames each; batch 1 is a mono file,
2 the two channels of a stereo one) through the network, after a warm-up call:
TensorFlow as `histdenoise.denoiser.Denoiser` runs it (float32), and ONNX Runtime on the
graph of `histdenoise.onnx_graph` three ways: as the command runs it
(`histdenoise.onnx_backend.OnnxNetwork`: a batch split over single-thread sessions run at
once), one session with its default intra-op threads, and one session with one thread.
The calls take turns (TF, ORT, ORT one session, ORT 1 thread, TF, ...) ``--repeats``
times, so that the load of a shared machine falls on all of them alike; each row is the
median wall time and the median CPU time (user + system of this process) per call, and
its ratio to TensorFlow's. Weights: the shipped bundled model; seeded random weights for
the paper config (speed does not depend on them). The outputs are checked against
TensorFlow's (largest difference over the largest magnitude).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.machine import cpu_name, load_average  # noqa: E402


def native_model(name: str, folder: Path) -> Path:
    """The native model folder for a config name (paper: seeded random weights)."""
    if name == "bundled":
        return REPO / "checkpoints" / "bundled"
    import keras

    from histdenoise.card import ModelCard, NetworkConfig
    from histdenoise.model.native import save_native
    from histdenoise.model.network import build_network

    keras.utils.set_random_seed(0)
    config = NetworkConfig.paper()
    return save_native(
        build_network(config), folder / name, ModelCard(name="bench", config=config),
        overwrite=True,
    )


def onnx_file(name: str, native: Path, folder: Path) -> Path:
    """The ONNX graph of the model: the shipped one for bundled, else written now."""
    if name == "bundled":
        return native / "model.onnx"
    import onnx

    from histdenoise.model.loading import load_model
    from histdenoise.model.onnx_graph import build_onnx

    path = native / "model.onnx"  # beside the native card, which OnnxNetwork reads
    loaded = load_model(native)
    onnx.save(build_onnx(loaded.network, loaded.card.config), str(path))
    return path


def ort_runner(path: Path, threads: int | None = None, parallel: int | None = None):
    from histdenoise.onnx_backend import OnnxNetwork

    return OnnxNetwork(path, providers=["CPUExecutionProvider"], threads=threads,
                       parallel=parallel)


def measure(runners: dict, x: np.ndarray, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per call of each runner, the calls interleaved."""
    wall = {k: [] for k in runners}
    cpu = {k: [] for k in runners}
    for _ in range(repeats):
        for k, run in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run(x)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in runners}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="bundled,paper")
    parser.add_argument("--frames", type=int, default=960, help="frames per chunk")
    parser.add_argument("--batch", type=int, default=2,
                        help="chunks per call (2: a stereo file's channels)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--onnx", action="append", default=[], metavar="LABEL=PATH",
                        help="another ONNX graph of the (first) config to time beside")
    args = parser.parse_args()

    from histdenoise.denoiser import Denoiser

    print(f"CPU: {cpu_name()}; load average at start {load_average()}")
    print(f"{args.frames} frames per chunk, {args.batch} chunks per call; medians of "
          f"{args.repeats} interleaved calls; ratio = time / TensorFlow's")
    x = np.random.default_rng(0).standard_normal((args.batch, args.frames, 1025, 2))
    x = x.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            native = native_model(name, Path(tmp))
            graph = onnx_file(name, native, Path(tmp))
            runners = {
                "tensorflow": Denoiser(native, backend="tensorflow")._fn,
                "onnxruntime (as the command runs it)": ort_runner(graph),
                "onnxruntime, one session": ort_runner(graph, parallel=1),
                "onnxruntime, one session, 1 thread": ort_runner(graph, 1, parallel=1),
            }
            for spec in args.onnx:
                label, _, path = spec.partition("=")
                runners[f"onnxruntime, {label}"] = ort_runner(Path(path))
            expected = np.asarray(runners["tensorflow"](x))  # also the warm-up
            scale = float(np.max(np.abs(expected)))
            errors = {k: float(np.max(np.abs(np.asarray(run(x)) - expected))) / scale
                      for k, run in runners.items()}
            times = measure(runners, x, args.repeats)
            tf_wall, tf_cpu = times["tensorflow"]
            print(f"\n{name}")
            print(f"| backend | wall s | ratio | CPU s | ratio | max diff |\n|{'---|' * 6}")
            for k, (w, c) in times.items():
                print(f"| {k} | {w:.3f} | {w / tf_wall:.2f} | {c:.3f} | {c / tf_cpu:.2f} "
                      f"| {errors[k]:.1e} |")
    print(f"\nload average at end {load_average()}")


if __name__ == "__main__":
    main()
