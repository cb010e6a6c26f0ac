"""What the benchmarks say about the machine: the CPU's name, its load, its matmul ceiling.

Shared by every script in ``benchmarks/``, which import it as ``benchmarks.machine`` with
the repository root on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def cpu_name() -> str:
    """The CPU model, its logical core count and the flags that matter for precision."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} CPUs"
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown CPU")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines()
                  if ln.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{name}, {os.cpu_count()} CPUs, flags: {' '.join(wanted) or 'none of avx2/avx512'}"


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, or ``n/a``."""
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def matmul_gflops(n: int = 4096, repeats: int = 4) -> float:
    """GFLOP/s of an n^3 float32 matrix multiply in this process (TensorFlow, all cores),
    best of ``repeats`` calls after a warm-up."""
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=1)
    b = tf.random.normal((n, n), seed=2)
    mm = tf.function(tf.linalg.matmul)
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def matmul_ceiling() -> float:
    """`matmul_gflops` in a fresh process, so that the caller stays light."""
    root = str(Path(__file__).resolve().parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from benchmarks.machine import matmul_gflops\n"
        "print(matmul_gflops())\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])
