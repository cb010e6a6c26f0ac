"""Inference benchmark: backends and precisions side by side, in one run.

    python benchmarks/inference.py                          # bundled + paper, all variants
    python benchmarks/inference.py --configs bundled --variants tf-fp32,ort-fp32
    python benchmarks/inference.py --configs bundled --variants tf-fp32 --rss-minutes 1,60

One table row per (config, variant): seconds per 448-frame chunk through the network,
achieved GFLOP/s and its share of the float32 matrix-multiply ceiling (the median of the
per-call shares, the ceiling measured in this process around every timed call, since on a
shared machine it moves by up to 2x within minutes: `benchmarks.machine.interleave`),
end-to-end real-time factor (`Denoiser.denoise` on ``--seconds`` of audio),
peak RSS of a fresh process denoising a WAV file end to end, and accuracy: SI-SDR (dB)
of the variant's denoised output against the float32 TensorFlow output.

Weights: the shipped bundled model for ``bundled`` (real weights, so the accuracy figure
is meaningful); seeded random weights for ``paper`` (the published ones need a download;
speed does not depend on weights, accuracy of reduced precision may). Figures vary with
machine load: compare ratios within one run.

Variants: ``tf-fp32`` (TensorFlow, float32, the default), ``tf-fp32-xla`` (jit_compile),
``tf-bf16`` (Keras mixed bfloat16 in the first stage, float32 in the second), ``tf-fp16``
(the same with float16), ``ort-fp32`` (ONNX
Runtime on the ONNX export; no TensorFlow in the denoising process), ``tf-fp32-448``
(448-frame chunks, the training length and the default until 2026-11: 384 of every 448
frames kept instead of 896 of 960, half the memory). All others use the defaults, 960-frame
chunks and ``--batch-size`` (1).
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
sys.path.insert(0, str(REPO))

from benchmarks.machine import (  # noqa: E402
    MatmulCeiling,
    cpu_name,
    interleave,
    summarise,
)

VARIANTS = {
    "tf-fp32": {"backend": "tensorflow", "precision": "float32", "jit": False},
    "tf-fp32-xla": {"backend": "tensorflow", "precision": "float32", "jit": True},
    "tf-bf16": {"backend": "tensorflow", "precision": "bfloat16", "jit": False},
    "tf-fp16": {"backend": "tensorflow", "precision": "float16", "jit": False},
    "ort-fp32": {"backend": "onnxruntime", "precision": "float32", "jit": False},
    "tf-fp32-448": {"backend": "tensorflow", "precision": "float32", "jit": False, "frames": 448},
}


def make_denoiser(model, variant: str, batch: int):
    """A `Denoiser` set up as ``variant`` says (``frames``: chunk length in frames)."""
    from histdenoise.denoiser import Denoiser
    from histdenoise.engine import ChunkConfig

    settings = dict(VARIANTS[variant])
    chunk = ChunkConfig(frames=settings.pop("frames", ChunkConfig().frames))
    if settings["precision"] != "float32":
        settings["emulate"] = True  # measure it even where the command would run float32
    return Denoiser(model, batch_size=batch, chunk=chunk, **settings)


def make_models(name: str, folder: Path, need_onnx: bool) -> dict[str, Path]:
    """The native model (and its ONNX export when needed) for a config name."""
    import keras

    from histdenoise.card import ModelCard
    from histdenoise.model.native import save_native
    from histdenoise.model.network import NetworkConfig, build_network

    if name == "bundled":
        native = REPO / "checkpoints" / "bundled"
    elif name == "paper":
        keras.utils.set_random_seed(0)
        config = NetworkConfig.paper()
        native = save_native(
            build_network(config), folder / name, ModelCard(name="bench", config=config),
            overwrite=True,
        )
    else:
        raise SystemExit(f"unknown config {name!r}: bundled or paper")
    models = {"native": native}
    if need_onnx:
        from histdenoise.model.export import export_model

        models["onnx"] = export_model(native, folder / f"{name}-onnx", "onnx", overwrite=True)
    return models


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


def denoiser(models: dict[str, Path], variant: str, batch: int):
    model = models["onnx"] if VARIANTS[variant]["backend"] == "onnxruntime" else models["native"]
    return make_denoiser(model, variant, batch)


def network_throughput(d, config, repeats: int, ceiling: MatmulCeiling) -> dict:
    """Seconds per 448-frame-equivalent chunk through the network (median time per chunk
    scaled to 448 frames), achieved GFLOP/s, and its share of the matmul ceiling measured
    around each of ``repeats`` calls of one batch (the median of the per-call shares)."""
    from histdenoise.model.network import count_flops

    x = np.random.default_rng(0).standard_normal((d.batch_size, d.chunk.frames, 1025, 2))
    x = x.astype(np.float32)
    d._fn(x)  # trace / warm up
    gflop = count_flops(config, d.chunk.frames) * d.batch_size / 1e9
    got = summarise(interleave({"net": lambda: d._fn(x)}, repeats, ceiling)["net"], gflop)
    per_chunk = got["median_s"] / d.batch_size
    return {"s_per_chunk": per_chunk * 448 / d.chunk.frames, "GFLOP_s": got["GFLOP_s"],
            "ceiling_GFLOP_s": got["ceiling_GFLOP_s"], "of_matmul": got["of_matmul"]}


def real_time_factor(d, audio: np.ndarray) -> tuple[float, np.ndarray]:
    # Warm up on the same audio, so that the timed run pays no one-off graph or kernel
    # set-up for any of its chunk shapes (full chunks and the shortened last one).
    d.denoise(audio, 44100)
    t0 = time.perf_counter()
    denoised, _ = d.denoise(audio, 44100)
    return (time.perf_counter() - t0) / (audio.size / 44100), denoised


def peak_rss_mb(model: Path, variant: str, wav: Path, batch: int) -> float:
    """Peak RSS (MB) of a fresh process denoising ``wav`` to a temporary folder."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--child", str(model), variant, str(wav), out,
               str(batch)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def child(model: str, variant: str, wav: str, out: str, batch: str) -> None:
    make_denoiser(model, variant, int(batch)).denoise_file(wav, out)
    print(json.dumps({"peak_rss_mb": own_peak_rss_kb() / 1024}))


def own_peak_rss_kb() -> float:
    """This process's peak resident set (kB): VmHWM, which starts afresh at exec.

    (``getrusage().ru_maxrss`` does not: on Linux a child keeps the high-water mark its
    parent had when it forked, so a large benchmark parent would mask the child's figure.)
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="bundled,paper")
    p.add_argument(
        "--variants", default="tf-fp32,tf-fp32-448,tf-fp32-xla,tf-bf16,ort-fp32"
    )
    p.add_argument("--seconds", type=float, default=30.0, help="audio for the RTF run")
    p.add_argument("--rss-minutes", default="1", help="input lengths for peak RSS")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    from histdenoise.metrics import si_sdr_db
    from histdenoise.model.native import read_card
    from histdenoise.model.network import count_flops, count_parameters

    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
    minutes = [float(m) for m in args.rss_minutes.split(",") if m]

    from histdenoise.denoiser import native_precision

    print(f"CPU: {cpu_name()}; native bfloat16: {native_precision('bfloat16')} (without it "
          "the command runs float32; the bf16 rows here emulate it)", flush=True)
    ceiling = MatmulCeiling()
    print(f"float32 matmul ceiling (4096^3, TensorFlow): {ceiling.measure(4):.0f} GFLOP/s "
          "at the start; each row's share is of the ceiling measured around its calls",
          flush=True)
    rng = np.random.default_rng(1)
    t = np.arange(int(args.seconds * 44100)) / 44100
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
             + 0.03 * rng.standard_normal(t.size)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wavs = {m: write_wav(tmp / f"{m:g}min.wav", m) for m in minutes}
        for name in args.configs.split(","):
            need_onnx = any(VARIANTS[v]["backend"] == "onnxruntime" for v in variants)
            models = make_models(name, tmp, need_onnx)
            config = read_card(models["native"]).config
            reference = None
            for variant in ["tf-fp32"] + [v for v in variants if v != "tf-fp32"]:
                d = denoiser(models, variant, args.batch_size)
                speed = network_throughput(d, config, args.repeats, ceiling)
                rtf, out = real_time_factor(d, audio)
                del d
                if variant == "tf-fp32":
                    reference = out
                    if "tf-fp32" not in variants:
                        continue
                model = models["onnx" if variant.startswith("ort") else "native"]
                rss = {m: peak_rss_mb(model, variant, wavs[m], args.batch_size)
                       for m in minutes}
                row = {
                    "config": name,
                    "variant": variant,
                    "params_M": count_parameters(config) / 1e6,
                    "GFLOP_per_chunk": count_flops(config, 448) / 1e9,
                    **speed,
                    "RTF": rtf,
                    "SI_SDR_vs_fp32_dB": float("inf") if variant == "tf-fp32"
                    else si_sdr_db(out, reference),
                    **{f"peak_RSS_MB_{m:g}min": v for m, v in rss.items()},
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"float32 matmul ceiling again at the end: {ceiling.measure(4):.0f} GFLOP/s")
    print_table(rows)
    if len(minutes) > 1:
        lo, hi = min(minutes), max(minutes)
        for row in rows:
            ratio = row[f"peak_RSS_MB_{hi:g}min"] / row[f"peak_RSS_MB_{lo:g}min"]
            print(f"{row['config']} {row['variant']}: peak RSS {hi:g} min / {lo:g} min = "
                  f"{ratio:.3f}")


if __name__ == "__main__":
    main()
