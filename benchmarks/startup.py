"""Start-up as a user times it, this checkout against an earlier revision, in turns.

    python benchmarks/startup.py --against 015cf11            # bundled and paper, TensorFlow
    python benchmarks/startup.py --against HEAD~3 --rounds 5 --models bundled

Each figure is one fresh ``python -m histdenoise denoise one.wav -o OUT --quiet
--backend tensorflow [--model PAPER]`` process on a 1-second mono WAV, timed from start
to exit: importing TensorFlow, loading the weights, tracing the network, its first call
(graph optimisation) and writing both outputs. The earlier revision runs from a
temporary ``git worktree`` of it (``PYTHONPATH`` chooses the tree); the two take turns,
``--rounds`` times after one untimed run of each (which byte-compiles a fresh tree), so
that the load of a shared machine falls on both alike. Printed:
every time, then per model the medians and their ratio. The paper config has seeded
random weights (start-up does not depend on them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.commands import paper_model, write_audio  # noqa: E402
from benchmarks.machine import cpu_name, load_average  # noqa: E402


def time_start(tree: Path, wav: Path, out: Path, model: str) -> float:
    """Wall seconds of one denoise command run from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [sys.executable, "-m", "histdenoise", "denoise", str(wav), "-o", str(out),
            "--quiet", "--overwrite", "--backend", "tensorflow", "--model", model]
    t0 = time.perf_counter()  # cwd: ``python -m`` puts it first on sys.path
    subprocess.run(argv, env=env, check=True, capture_output=True, cwd=tree)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", required=True, help="the earlier git revision")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models", default="bundled,paper")
    args = p.parse_args()
    print(f"CPU: {cpu_name()}; load average at start {load_average()}", flush=True)
    rev = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), rev], cwd=REPO,
                       check=True, capture_output=True)
        try:
            wav = write_audio(tmp / "one.wav", 1.0, 44100, 1, "PCM_16")
            models = {"bundled": "bundled"}
            if "paper" in args.models:
                models["paper"] = str(paper_model(tmp))
            trees = {rev: old, "this checkout": REPO}
            for tree in trees.values():  # untimed: byte-compiles the tree, warms file caches
                time_start(tree, wav, tmp / "out", "bundled")
            for name in args.models.split(","):
                times: dict[str, list[float]] = {k: [] for k in trees}
                for r in range(args.rounds):
                    order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                    for label in order:
                        seconds = time_start(trees[label], wav, tmp / "out", models[name])
                        times[label].append(seconds)
                        print(f"{name} {label}: {seconds:.2f} s", flush=True)
                med = {k: statistics.median(v) for k, v in times.items()}
                print(f"{name}: median {med[rev]:.2f} s at {rev}, {med['this checkout']:.2f} s "
                      f"now: {med[rev] / med['this checkout']:.2f}x faster", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO,
                           check=False, capture_output=True)
    print(f"load average at end {load_average()}")


if __name__ == "__main__":
    main()
