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
    best of ``repeats`` calls after a warm-up (`MatmulCeiling`)."""
    return MatmulCeiling(n).measure(repeats)


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


class MatmulCeiling:
    """The float32 matmul ceiling measured in this process, between timed calls.

    On a shared machine the ceiling moves by up to 2x within minutes (this project's
    2-core Xeon read 155-343 GFLOP/s), so a share of "the" ceiling measured once, at
    another moment, says more about the neighbours than about the network. `interleave`
    measures it right before and after every timed call instead.
    """

    def __init__(self, n: int = 4096):
        import tensorflow as tf

        self.n = n
        self._a = tf.random.normal((n, n), seed=1)
        self._b = tf.random.normal((n, n), seed=2)
        self._mm = tf.function(tf.linalg.matmul)
        self._mm(self._a, self._b).numpy()

    def measure(self, repeats: int = 2) -> float:
        """GFLOP/s, best of ``repeats`` n^3 products (about 0.5 s each at 270 GFLOP/s)."""
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            self._mm(self._a, self._b).numpy()
            best = min(best, time.perf_counter() - t0)
        return 2 * self.n**3 / best / 1e9


def interleave(calls: dict, rounds: int, ceiling: MatmulCeiling) -> dict[str, list[tuple]]:
    """Time each of ``calls`` (name -> no-argument callable) ``rounds`` times, in turns
    (the order reversed every other round), with the matmul ceiling measured between
    consecutive calls.

    Returns name -> [(seconds, ceiling GFLOP/s around that call), ...]; the ceiling around
    a call is the mean of the measurements just before and just after it.
    """
    out: dict[str, list[tuple]] = {name: [] for name in calls}
    names = list(calls)
    before = ceiling.measure()
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            calls[name]()
            seconds = time.perf_counter() - t0
            after = ceiling.measure()
            out[name].append((seconds, (before + after) / 2))
            before = after
    return out


def summarise(samples: list[tuple], gflop: float) -> dict:
    """Medians of `interleave`'s samples for one call of ``gflop`` GFLOP: seconds, GFLOP/s,
    the ceiling around the calls, and the median of the per-call shares of the ceiling."""
    import statistics

    seconds = [s for s, _ in samples]
    shares = [gflop / s / c for s, c in samples]
    return {
        "median_s": round(statistics.median(seconds), 3),
        "best_s": round(min(seconds), 3),
        "GFLOP_s": round(gflop / statistics.median(seconds), 1),
        "ceiling_GFLOP_s": round(statistics.median(c for _, c in samples), 1),
        "of_matmul": round(statistics.median(shares), 3),
        "of_matmul_range": [round(min(shares), 3), round(max(shares), 3)],
    }
