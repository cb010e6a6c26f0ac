"""Speed as a user times it: wall time of the real `histdenoise denoise` command.

    python benchmarks/commands.py            # the headline table (long: about 2 h here)
    python benchmarks/commands.py --quick    # shorter inputs, for development
    nohup python benchmarks/commands.py > commands.log 2>&1 &   # the full run

Each figure is one fresh ``python -m histdenoise denoise FILE -o OUT --quiet`` process,
timed from start to exit: start-up, model loading, decoding, resampling, the network and
writing both outputs and the report included. Inputs, written first:

- a 1-second mono WAV (44.1 kHz, 16 bit): start-up dominates;
- a 3-minute side, stereo, 96 kHz, 24-bit FLAC (an archival transfer; 20 s with --quick);
- a 60-minute mono tape, 48 kHz, 24-bit WAV (2 minutes with --quick);
- a folder of 200 files of 10 s (20 with --quick), mono 44.1 kHz: files per minute.

Models: the shipped ``bundled`` model on both backends (``auto``, the default, runs ONNX
Runtime for it), and the paper config (random weights; speed does not depend on them) on
TensorFlow. The default command also runs the side with one chunk per call
(``--batch-size 1``, the default before ONNX Runtime ran chunks side by side) and without
the classical stages (``--dehum off --dethump off``: what looking for and removing hum
and thumps costs), and the folder one file at a time (``--jobs 1``). Per run: wall time,
its ratio to the audio's duration (real-time factor), CPU
busy (user + system time over wall time and cores: 100 % keeps every core busy) and the
peak resident memory of the process. The CPU's name and its float32 matrix-multiply
ceiling (TensorFlow, 4096^3) are measured in the same run, at the start, before every
command (column ``ceiling_before``, GFLOP/s) and at the end; figures on a shared machine
move with its load (the ceiling by up to 2x within minutes), so compare rows of one run
and look at the ceiling beside each. The
network's steady-state figures are benchmarks/inference.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.machine import cpu_name, matmul_ceiling  # noqa: E402

RUNS = [
    ("bundled", "auto"),
    ("bundled", "tensorflow"),
    ("paper", "tensorflow"),
]
"""(model, --backend) pairs; auto is the default command (ONNX Runtime for bundled)."""


def write_audio(path: Path, seconds: float, sr: int, channels: int, subtype: str) -> Path:
    """Music-like test audio (two tones, slow tremolo, hiss), written 10 s at a time."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    n = int(seconds * sr)
    with sf.SoundFile(str(path), "w", sr, channels, subtype=subtype) as f:
        for i in range(0, n, sr * 10):
            t = np.arange(i, min(n, i + sr * 10)) / sr
            tone = 0.2 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 523 * t)
            tone *= 1 + 0.3 * np.sin(2 * np.pi * 0.2 * t)
            x = tone[:, None] + 0.02 * rng.standard_normal((t.size, channels))
            f.write(x.astype(np.float32))
    return path


def make_inputs(folder: Path, quick: bool) -> dict[str, tuple[Path, float]]:
    """Input name -> (path, seconds of audio)."""
    side, tape, n_files = (20.0, 120.0, 20) if quick else (180.0, 3600.0, 200)

    def length(seconds: float) -> str:
        return f"{seconds:g}-s" if seconds < 60 else f"{seconds / 60:g}-min"

    inputs = {
        "1-s file": (write_audio(folder / "one.wav", 1.0, 44100, 1, "PCM_16"), 1.0),
        f"{length(side)} side, stereo 96 kHz 24-bit FLAC": (
            write_audio(folder / "side.flac", side, 96000, 2, "PCM_24"), side),
        f"{length(tape)} mono tape, 48 kHz 24-bit WAV": (
            write_audio(folder / "tape.wav", tape, 48000, 1, "PCM_24"), tape),
    }
    many = folder / "many"
    many.mkdir()
    one = write_audio(folder / "ten.wav", 10.0, 44100, 1, "PCM_16").read_bytes()
    for i in range(n_files):
        (many / f"{i:03d}.wav").write_bytes(one)
    inputs[f"folder of {n_files} files of 10 s"] = (many, 10.0 * n_files)
    return inputs


def paper_model(folder: Path) -> Path:
    """The paper config with seeded random weights, saved as a native model folder."""
    code = (
        "import sys, keras\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from histdenoise.card import ModelCard\n"
        "from histdenoise.model.native import save_native\n"
        "from histdenoise.model.network import NetworkConfig, build_network\n"
        "keras.utils.set_random_seed(0)\n"
        "c = NetworkConfig.paper()\n"
        f"save_native(build_network(c), {str(folder / 'paper')!r}, "
        "ModelCard(name='paper-random', config=c), overwrite=True)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return folder / "paper"


def time_command(argv: list[str]) -> dict:
    """Run ``argv``; wall time (s), CPU time (s) and peak RSS (MB) of that process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO)  # ``python -m`` puts the cwd first on sys.path
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {err.strip().splitlines()[-1:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024}


def backend_that_ran(out: Path) -> str:
    report = next(out.rglob("*_report.json"), None)
    return json.loads(report.read_text())["settings"]["backend"] if report else "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter inputs (development)")
    p.add_argument("--runs", default=",".join(f"{m}:{b}" for m, b in RUNS),
                   help="comma-separated MODEL:BACKEND pairs (default: all three)")
    p.add_argument("--skip", default="", help="comma-separated MODEL:BACKEND:INPUT-PREFIX "
                   "triples to leave out (e.g. paper:tensorflow:60-min)")
    args = p.parse_args()
    runs = [tuple(r.split(":")) for r in args.runs.split(",") if r]
    skip = [tuple(s.split(":", 2)) for s in args.skip.split(",") if s]
    cores = os.cpu_count() or 1
    print(f"CPU: {cpu_name()}", flush=True)
    ceiling = matmul_ceiling()
    print(f"float32 matmul ceiling (TensorFlow, 4096^3): {ceiling:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = make_inputs(tmp, args.quick)
        models = {"bundled": "bundled"}
        if any(m == "paper" for m, _ in runs):
            models["paper"] = str(paper_model(tmp))
        for name, (path, seconds) in inputs.items():
            variants = [(m, b, []) for m, b in runs]
            if path.is_dir():  # the default keeps 2 files in flight; one at a time too
                variants += [(m, b, ["--jobs", "1"]) for m, b in runs if b == "auto"]
            if "side" in name:
                variants += [(m, b, extra) for m, b in runs if b == "auto"
                             for extra in (["--batch-size", "1"],
                                           ["--dehum", "off", "--dethump", "off"])]
            for model, backend, extra in variants:
                if any(model == m and backend == b and name.startswith(s) for m, b, s in skip):
                    continue
                out = tmp / f"out-{model}-{backend}"
                argv = [sys.executable, "-m", "histdenoise", "denoise", str(path), "-o",
                        str(out), "--quiet", "--overwrite", "--backend", backend,
                        "--model", models[model], *extra]
                before = matmul_ceiling()
                r = time_command(argv)
                row = {
                    "input": name,
                    "model": model,
                    "backend": f"{backend} -> {backend_that_ran(out)}",
                    "wall_s": round(r["wall"], 2),
                    "real_time_factor": round(r["wall"] / seconds, 4),
                    "files_per_min": round(60 * len(list(path.glob("*.wav"))) / r["wall"], 1)
                    if path.is_dir() else "",
                    "cpu_busy": f"{100 * r['cpu'] / r['wall'] / cores:.0f} %",
                    "peak_rss_MB": round(r["rss_mb"]),
                    "ceiling_before": round(before),
                    "command": "histdenoise denoise INPUT -o OUT --quiet"
                    + ("" if backend == "auto" else f" --backend {backend}")
                    + ("" if model == "bundled" else " --model PAPER")
                    + "".join(f" {a}" for a in extra),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                subprocess.run(["rm", "-rf", str(out)], check=False)
    print(f"float32 matmul ceiling again at the end: {matmul_ceiling():.0f} GFLOP/s")
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
