"""Training throughput: where a step's time goes, and examples per CPU-hour end to end.

    python benchmarks/training_throughput.py                       # bundled recipe, data/corpus
    python benchmarks/training_throughput.py --steps 40 --corpus data/corpus --json out.json

Everything is measured in one run on this machine, so the ratios hold even when the
machine is shared (absolute figures do not). Three parts:

1. Data, per batch (``--batch`` examples of ``--frames`` STFT frames): reading the clean
   segments from disk each time (the earlier recipe) or from the decoded-audio cache,
   the recording-chain colouring, the noise simulator, mixing and the two STFTs.
2. The network, per batch: forward only, and a full optimiser step (forward, backward,
   Adam) under Keras's TensorFlow backend with and without XLA, and under JAX (each in a
   fresh process, as ``KERAS_BACKEND`` is read once).
3. End to end with `histdenoise.training.Trainer`: the earlier pipeline (data made in the
   training process, read from disk, TensorFlow without XLA) against the current one
   (decoded-audio cache, batches made ahead by a worker process) on each backend.
   Printed as examples per CPU-hour and as a ratio to the earlier pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def recipe(corpus: str, frames: int, batch: int, steps: int, run_dir: str, workers: int,
           cache: bool) -> dict:
    """The bundled model's training config (configs/bundled.json), shortened to ``steps``
    steps with a single validation at the end, fresh weights."""
    config = json.loads((REPO / "configs" / "bundled.json").read_text())
    config.update(run_dir=run_dir, steps=steps, validate_every=steps, validation_examples=1,
                  workers=workers, batch_size=batch, max_minutes=0, init_from=None)
    config["data"].update(corpus=[corpus], segment_frames=frames, cache_audio=cache)
    return config


def median_seconds(fn, repeat: int) -> float:
    import numpy as np

    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def data_part(args) -> list[dict]:
    """Seconds per batch of each stage of making training data (median of ``repeat``)."""
    import numpy as np

    from histdenoise.stft import stft, to_channels
    from histdenoise.training.data import DataConfig, ExampleSource

    rows = []
    for cache in (False, True):
        cfg = DataConfig.from_dict(recipe(args.corpus, args.frames, args.batch, 1, "", 0,
                                          cache)["data"])
        source = ExampleSource(cfg, "train", seed=0)
        steps = iter(range(10**6))

        def one_batch(s=source, it=steps):
            return s.batch(next(it), args.batch)

        rows.append({"part": "data", "what": "whole batch, " + ("cache" if cache else "disk"),
                     "seconds": median_seconds(one_batch, args.repeat)})
    source.rng = np.random.default_rng(1)
    n = args.batch
    stages = {
        "clean segments (cache)": lambda: [source.clean_segment() for _ in range(n)],
        "recording chain": lambda: [cfg.recording_chain.apply(clean, 44100, source.rng)
                                    for _ in range(n)],
        "noise simulator": lambda: [source.noise_segment() for _ in range(n)],
        "two STFTs": lambda: [to_channels(stft(clean, source.stft)) for _ in range(2 * n)],
    }
    clean, _ = source.clean_segment()
    for what, fn in stages.items():
        rows.append({"part": "data", "what": what, "seconds": median_seconds(fn, args.repeat)})
    return rows


MODEL_CHILD = r"""
import json, sys, time
import numpy as np
import keras
from histdenoise.model.network import NetworkConfig, build_network
frames, batch, repeat, jit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = json.load(open(sys.argv[5]))["network"]
model = build_network(NetworkConfig.from_dict(cfg))
model.compile(optimizer=keras.optimizers.Adam(1e-4),
              loss=["mean_absolute_error", "mean_absolute_error"], jit_compile=jit == "1")
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, frames, 1025, 2)).astype("float32")
def timed(fn):
    fn(); fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); out.append(time.perf_counter() - t0)
    return float(np.median(out))
fwd = timed(lambda: model.predict_on_batch(x))
step = timed(lambda: model.train_on_batch(x, (x, x)))
print(json.dumps({"forward": fwd, "step": step}))
"""


def model_part(args) -> list[dict]:
    """Seconds per batch of the network on each backend (fresh processes)."""
    variants = [("tensorflow", "0"), ("tensorflow", "1"), ("jax", "1")]
    rows = []
    for backend, jit in variants:
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO))
        name = backend + (" + XLA" if jit == "1" and backend == "tensorflow" else "")
        out = subprocess.run(
            [sys.executable, "-c", MODEL_CHILD, str(args.frames), str(args.batch),
             str(args.repeat), jit, str(REPO / "configs" / "bundled.json")],
            env=env, capture_output=True, text=True)
        if out.returncode:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            print(f"  {name}: failed ({last[:120]})")
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"part": "model", "what": f"{name}: forward", "seconds": res["forward"]})
        rows.append({"part": "model", "what": f"{name}: optimiser step", "seconds": res["step"]})
    return rows


TRAIN_CHILD = r"""
import json, sys, time
from histdenoise.training import TrainConfig, Trainer
config = TrainConfig.from_dict(json.load(open(sys.argv[1])))
trainer = Trainer(config, progress=False)
warm = int(sys.argv[2])
config.steps = warm
trainer.run()                       # tracing, compilation, caches, workers started
config.steps = warm + int(sys.argv[3])
t0 = time.perf_counter()
trainer.run()
seconds = time.perf_counter() - t0
trainer.close()
print(json.dumps({"seconds": seconds}))
"""


def end_to_end_part(args, tmp: Path) -> list[dict]:
    """Examples per CPU-hour of whole training runs (validation and checkpoint included)."""
    variants = [
        ("earlier: in-process data from disk, TensorFlow", "tensorflow", 0, False),
        ("now: cache + 1 worker, TensorFlow", "tensorflow", 1, True),
        ("now: cache + 1 worker, JAX", "jax", 1, True),
    ]
    rows = []
    for i, (what, backend, workers, cache) in enumerate(variants):
        config = recipe(args.corpus, args.frames, args.batch, args.steps, str(tmp / f"run{i}"),
                        workers, cache)
        path = tmp / f"config{i}.json"
        path.write_text(json.dumps(config))
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, "-c", TRAIN_CHILD, str(path), "3",
                              str(args.steps)], env=env, capture_output=True, text=True)
        if out.returncode:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            print(f"  {what}: failed ({last[:120]})")
            continue
        seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        rows.append({"part": "end to end", "what": what, "seconds": seconds / args.steps,
                     "examples_per_hour": 3600 * args.steps * args.batch / seconds})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(REPO / "data" / "corpus"),
                   help="a corpus folder (histdenoise build-corpus)")
    p.add_argument("--frames", type=int, default=192, help="STFT frames per example")
    p.add_argument("--batch", type=int, default=4, help="examples per step")
    p.add_argument("--steps", type=int, default=30, help="timed steps per end-to-end run")
    p.add_argument("--repeat", type=int, default=7, help="repeats of each part-timing")
    p.add_argument("--skip", nargs="*", default=[], choices=["data", "model", "end"],
                   help="parts to leave out")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; batch {args.batch} x {args.frames} "
          f"frames; medians of {args.repeat}")
    rows: list[dict] = []
    if "data" not in args.skip:
        rows += data_part(args)
    if "model" not in args.skip:
        rows += model_part(args)
    if "end" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            rows += end_to_end_part(args, Path(tmp))
    base = next((r["examples_per_hour"] for r in rows if "examples_per_hour" in r), None)
    print(f"{'part':<11} {'what':<50} {'s/batch':>8} {'examples/CPU-h':>15} {'ratio':>6}")
    for r in rows:
        per_hour = r.get("examples_per_hour")
        ratio = f"{per_hour / base:6.2f}" if per_hour and base else ""
        per_hour = f"{per_hour:15,.0f}" if per_hour else ""
        print(f"{r['part']:<11} {r['what']:<50} {r['seconds']:8.3f} {per_hour:>15} {ratio:>6}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
