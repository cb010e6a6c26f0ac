"""What the chunk length costs: `Denoiser.denoise` with 960-frame chunks (the default)
against 448 (the training length), on the same audio, in turns.

    python benchmarks/chunk_length.py                       # bundled (both backends), paper
    python benchmarks/chunk_length.py --runs bundled:tensorflow --seconds 120 --rounds 5

Consecutive chunks overlap by 64 frames (16 discarded at each inner edge, a 32-frame
cross-fade), so a 960-frame chunk keeps 896 of its frames and a 448-frame one 384: on a
long file 448 computes (448 / 384) / (960 / 896) = 1.089 times the frames. Each call
denoises ``--seconds`` of one channel at 44.1 kHz (music-like tones and hiss) end to end
(resampling, STFT, network, overlap-add); the configurations take turns ``--rounds``
times after a warm-up call each, with the float32 matmul ceiling measured between calls
(`benchmarks.machine.interleave`), so that a shared machine's load falls on all alike.
Per run: median seconds per call and the ratio 448 / 960; peak memory is the network's
activations, which scale with the chunk (see benchmarks/inference.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.backends import native_model  # noqa: E402
from benchmarks.machine import MatmulCeiling, cpu_name, interleave  # noqa: E402

RUNS = "bundled:tensorflow,bundled:onnxruntime,paper:tensorflow"
FRAMES = (960, 448)


def music(seconds: float, sr: int = 44100) -> np.ndarray:
    """(samples,) float32: two tones with a slow tremolo, and hiss."""
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.2 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 523 * t)
    tone *= 1 + 0.3 * np.sin(2 * np.pi * 0.2 * t)
    noise = 0.02 * np.random.default_rng(0).standard_normal(t.size)
    return (tone + noise).astype(np.float32)


def frames_computed(seconds: float, frames: int) -> int:
    """Frames the network computes for ``seconds`` of audio in chunks of ``frames``."""
    from histdenoise.engine import ChunkConfig, total_frames
    from histdenoise.stft import StftConfig

    chunk = ChunkConfig(frames=frames)
    n = total_frames(int(seconds * StftConfig().sample_rate), StftConfig())
    chunks = chunk.num_chunks(n)
    last = n - (chunks - 1) * chunk.stride if chunks > 1 else n
    return (chunks - 1) * frames + chunk.last_chunk_frames(last)


def main() -> None:
    from histdenoise.denoiser import Denoiser
    from histdenoise.engine import ChunkConfig

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default=RUNS, help=f"MODEL:BACKEND pairs (default {RUNS})")
    p.add_argument("--seconds", type=float, default=60.0, help="audio per call (s)")
    p.add_argument("--rounds", type=int, default=3, help="timed calls of each chunk length")
    args = p.parse_args()
    print(f"CPU: {cpu_name()}", flush=True)
    ceiling = MatmulCeiling()
    audio = music(args.seconds)
    computed = {f: frames_computed(args.seconds, f) for f in FRAMES}
    print(f"{args.seconds:g} s of audio: the network computes {computed[960]} frames in "
          f"960-frame chunks, {computed[448]} in 448-frame ones "
          f"({computed[448] / computed[960]:.3f}x)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs.split(","):
            name, backend = run.split(":")
            model = None if name == "bundled" else str(native_model(name, Path(tmp)))
            denoisers = {f: Denoiser(model, backend=backend, chunk=ChunkConfig(frames=f))
                         for f in FRAMES}
            calls = {}
            for f, d in denoisers.items():
                d.denoise(audio, 44100)  # warm-up: tracing, first-shape set-up
                calls[f] = lambda d=d: d.denoise(audio, 44100)
            got = interleave(calls, args.rounds, ceiling)
            med = {f: statistics.median(s for s, _ in got[f]) for f in FRAMES}
            row = {
                "run": run,
                "s_960": round(med[960], 2),
                "s_448": round(med[448], 2),
                "ratio_448_960": round(med[448] / med[960], 3),
                "each_960": [round(s, 2) for s, _ in got[960]],
                "each_448": [round(s, 2) for s, _ in got[448]],
                "ceiling_GFLOP_s": round(statistics.median(c for f in FRAMES
                                                           for _, c in got[f])),
            }
            rows.append(row)
            print(row, flush=True)
            del denoisers, calls
    print("\n| model:backend | 960 frames (s) | 448 frames (s) | 448 / 960 | ceiling |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['s_960']} | {r['s_448']} | {r['ratio_448_960']} | "
              f"{r['ceiling_GFLOP_s']} GFLOP/s |")


if __name__ == "__main__":
    main()
