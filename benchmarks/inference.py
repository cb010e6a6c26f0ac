"""Inference benchmark: real-time factor, achieved GFLOP/s and peak memory.

    python benchmarks/inference.py                       # paper + bundled configs
    python benchmarks/inference.py --configs bundled --rss-minutes 1,60

Prints one table row per config. Weights are random (the published ones need a download);
speed and memory do not depend on them. Peak RSS is measured in a fresh subprocess per
input length, denoising a WAV file of that length end to end (read, resample, denoise,
write), so that the streaming claim (memory does not grow with duration) is tested on the
real path. Figures vary with machine load: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


def candidate_configs() -> dict:
    from histdenoise.network import NetworkConfig

    configs = {"paper": NetworkConfig.paper()}
    bundled = REPO / "checkpoints" / "bundled" / "model.json"
    if bundled.is_file():
        from histdenoise.native import read_card

        configs["bundled"] = read_card(bundled).config
    else:  # the planned bundled size, until the trained model is shipped
        configs["bundled"] = NetworkConfig(
            channels=(8, 16, 24, 32, 48, 64, 96), depth=6, dense_layers=2
        )
    return configs


def make_model(config, folder: Path) -> Path:
    import keras

    from histdenoise.native import ModelCard, save_native
    from histdenoise.network import build_network

    keras.utils.set_random_seed(0)
    return save_native(
        build_network(config), folder, ModelCard(name="bench", config=config), overwrite=True
    )


def write_wav(path: Path, minutes: float, sr: int = 44100) -> Path:
    """A mono test recording (tone + hiss), written block by block."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    n = int(minutes * 60 * sr)
    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as f:
        for i in range(0, n, sr * 10):
            t = np.arange(i, min(n, i + sr * 10)) / sr
            f.write(0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(t.size))
    return path


def network_throughput(model_dir: Path, batch: int, repeats: int) -> tuple[float, float]:
    """Seconds per 448-frame chunk through the network, and achieved GFLOP/s."""
    from histdenoise.denoiser import Denoiser
    from histdenoise.network import count_flops

    d = Denoiser(model_dir, batch_size=batch)
    x = np.random.default_rng(0).standard_normal((batch, d.chunk.frames, 1025, 2))
    x = x.astype(np.float32)
    d._fn(x)  # trace
    t0 = time.perf_counter()
    for _ in range(repeats):
        d._fn(x)
    per_chunk = (time.perf_counter() - t0) / (repeats * batch)
    return per_chunk, count_flops(d.card.config, d.chunk.frames) / per_chunk / 1e9


def real_time_factor(model_dir: Path, seconds: float, batch: int) -> float:
    from histdenoise.denoiser import Denoiser

    d = Denoiser(model_dir, batch_size=batch)
    x = np.random.default_rng(1).standard_normal(int(seconds * 44100)).astype(np.float32) * 0.1
    d.denoise(x[:44100], 44100)  # warm up
    t0 = time.perf_counter()
    d.denoise(x, 44100)
    return (time.perf_counter() - t0) / seconds


def peak_rss_mb(model_dir: Path, wav: Path, batch: int) -> float:
    """Peak RSS (MB) of a fresh process denoising ``wav`` to a temporary folder."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--child", str(model_dir), str(wav), out, str(batch)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def child(model_dir: str, wav: str, out: str, batch: str) -> None:
    from histdenoise.denoiser import Denoiser

    Denoiser(model_dir, batch_size=int(batch)).denoise_file(wav, out)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mb": peak_kb / 1024}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="paper,bundled")
    p.add_argument("--seconds", type=float, default=30.0, help="audio for the RTF run")
    p.add_argument("--rss-minutes", default="1,10", help="input lengths for peak RSS")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    from histdenoise.network import count_flops, count_parameters

    configs = candidate_configs()
    minutes = [float(m) for m in args.rss_minutes.split(",") if m]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wavs = {m: write_wav(tmp / f"{m:g}min.wav", m) for m in minutes}
        for name in args.configs.split(","):
            config = configs[name]
            model_dir = make_model(config, tmp / name)
            per_chunk, gflops = network_throughput(model_dir, args.batch_size, args.repeats)
            rtf = real_time_factor(model_dir, args.seconds, args.batch_size)
            rss = {m: peak_rss_mb(model_dir, wavs[m], args.batch_size) for m in minutes}
            row = {
                "config": name,
                "params_M": count_parameters(config) / 1e6,
                "GFLOP_per_chunk": count_flops(config, 448) / 1e9,
                "s_per_chunk": per_chunk,
                "GFLOP_s": gflops,
                "RTF": rtf,
                **{f"peak_RSS_MB_{m:g}min": v for m, v in rss.items()},
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print(
            "| "
            + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values())
            + " |"
        )
    if len(minutes) > 1:
        lo, hi = min(minutes), max(minutes)
        for row in rows:
            ratio = row[f"peak_RSS_MB_{hi:g}min"] / row[f"peak_RSS_MB_{lo:g}min"]
            print(f"{row['config']}: peak RSS {hi:g} min / {lo:g} min = {ratio:.3f}")


if __name__ == "__main__":
    main()
