"""The benchmarks' own arithmetic (machine.py, chunk_length.py): no timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import MatmulCeiling, cpu_name, interleave, summarise


def test_summarise_takes_the_median_of_per_call_shares():
    # Three calls of a 100-GFLOP pass: 1 s beside a 200 GFLOP/s ceiling (0.5), 2 s
    # beside 100 (0.5), 0.5 s beside 250 (0.8).
    got = summarise([(1.0, 200.0), (2.0, 100.0), (0.5, 250.0)], gflop=100.0)
    assert got["median_s"] == 1.0 and got["best_s"] == 0.5
    assert got["GFLOP_s"] == 100.0
    assert got["ceiling_GFLOP_s"] == 200.0
    assert got["of_matmul"] == 0.5  # not 100 / mean ceiling (0.55)
    assert got["of_matmul_range"] == [0.5, 0.8]


def test_interleave_takes_turns_and_measures_around_each_call():
    order: list[str] = []
    ceiling = MatmulCeiling(n=64)
    got = interleave({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                     rounds=3, ceiling=ceiling)
    assert order == ["a", "b", "b", "a", "a", "b"]
    assert [len(v) for v in got.values()] == [3, 3]
    for samples in got.values():
        for seconds, around in samples:
            assert seconds >= 0 and around > 0


def test_cpu_name_names_the_core_count():
    import os

    assert f"{os.cpu_count()} CPUs" in cpu_name()


def test_matmul_ceiling_is_a_rate():
    assert MatmulCeiling(32).measure(1) > 0


def test_chunk_length_counts_the_frames_the_network_computes():
    from benchmarks.chunk_length import frames_computed

    # 1 s of audio is one chunk cut to 64 * 2 frames, whatever the chunk length.
    assert frames_computed(1.0, 960) == frames_computed(1.0, 448) == 128
    # An hour: 448-frame chunks keep 384 of their frames, 960-frame ones 896.
    ratio = frames_computed(3600.0, 448) / frames_computed(3600.0, 960)
    assert abs(ratio - (448 / 384) / (960 / 896)) < 0.002
