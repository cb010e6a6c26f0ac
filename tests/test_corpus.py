"""The offline corpus builder (music21 scores through FluidSynth) and the corpus folder."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

corpus = pytest.importorskip("histdenoise.training.corpus")
render = pytest.importorskip("histdenoise.training.render")



def _missing_tools() -> str:
    try:
        render.check_tools()
    except corpus.CorpusError as exc:
        return str(exc)
    return ""


needs_synth = pytest.mark.skipif(bool(_missing_tools()), reason=_missing_tools() or "tools found")


def test_split_is_by_piece_and_stable():
    assert corpus.split_of("bach/bwv66.6.mxl") == corpus.split_of("bach/bwv66.6.mxl")
    splits = [corpus.split_of(f"piece{i}") for i in range(2000)]
    shares = {s: splits.count(s) / 2000 for s in ("train", "validation", "test")}
    assert 0.75 < shares["train"] < 0.85 and 0.07 < shares["test"] < 0.13
    jobs = render.plan_scores(6)
    by_source = {}
    for j in jobs:
        by_source.setdefault(j.source, set()).add(j.split)
    assert all(len(s) == 1 for s in by_source.values())  # every rendering of a score: one split
    assert {j.category for j in jobs} == {"piano", "strings", "choir", "ensemble"}
    # adding the ensemble left the other categories' plan as it was
    assert [j.piece for j in jobs if j.category == "choir"] == [
        j.piece for j in render.plan_scores(6) if j.category == "choir"]


def test_humanised_events_are_seeded():
    job = next(j for j in render.plan_scores(6) if j.category == "choir")
    a, info = render.score_events(job)
    b, _ = render.score_events(job)
    assert a == b and len(a) > 50
    assert all(t1 > t0 >= 0 and 20 <= v <= 127 for t0, t1, _, _, v in a)
    assert all(int(p) in render.PROGRAMS["choir"] for p in info["programs"])


def test_the_ensemble_doubles_its_bass_line_an_octave_down():
    job = next(j for j in render.plan_scores(6) if j.category == "ensemble")
    events, info = render.score_events(job)
    *parts, bass_a, bass_b = info["channels"]
    assert len(info["programs"]) == len(parts) + 2
    assert all(int(p) in render.PROGRAMS["ensemble"] for p in info["programs"][:-2])
    assert {*info["programs"][-2:]} <= set(render.BASS_PROGRAMS)
    assert info["programs"][-2] != info["programs"][-1]
    lowest_part = min(k for _, _, ch, k, _ in events if ch in parts)
    doubled = [k for _, _, ch, k, _ in events if ch == bass_a]
    assert doubled == [k for _, _, ch, k, _ in events if ch == bass_b]
    assert min(doubled) == lowest_part - 12 and min(doubled) >= 24


@needs_synth
def test_build_small_corpus_and_resume(tmp_path):
    cfg = render.CorpusConfig(per_category=1, orchestra=False, workers=1)
    rows = render.build_corpus(tmp_path, cfg, progress=False)
    assert sorted(r["category"] for r in rows) == ["choir", "ensemble", "piano", "strings"]
    for r in rows:
        x, sr = sf.read(tmp_path / r["file"])
        assert sr == 44100 and x.ndim == 1
        assert 5 < x.size / sr <= corpus.MAX_SECONDS
        assert np.max(np.abs(x)) == pytest.approx(10 ** (-1 / 20), abs=1e-3)
    table = list(csv.DictReader((tmp_path / "corpus.csv").read_text().splitlines()))
    assert [t["file"] for t in table] == [r["file"] for r in rows]
    stamp = (tmp_path / rows[0]["file"]).stat().st_mtime_ns
    render.build_corpus(tmp_path, cfg, progress=False)  # resumes: nothing re-rendered
    assert (tmp_path / rows[0]["file"]).stat().st_mtime_ns == stamp
    listed = corpus.read_corpus(tmp_path)
    assert len(listed) == 4



@needs_synth
def test_only_the_test_split_is_rendered(tmp_path):
    """``splits=("test",)`` renders the test pieces of the same plan and nothing else;
    a test set built from it records each piece's source score."""
    from histdenoise.training.testsets import TestsetConfig, build_testset, read_testset

    plan = [j for j in render.plan_scores(2) if j.split == "test"]
    cfg = render.CorpusConfig(per_category=2, orchestra=False, workers=1, max_seconds=6,
                              splits=("test",))
    rows = render.build_corpus(tmp_path / "c", cfg, progress=False)
    assert [r["piece"] for r in rows] == [j.piece for j in plan] == ["choir-bach_bwv245.17"]
    assert [r["split"] for r in rows] == ["test"]
    build_testset([str(tmp_path / "c")], tmp_path / "ts",
                  TestsetConfig(excerpts_per_piece=1, seconds=1.0, snrs=(6.0,)))
    assert [it["source"] for it in read_testset(tmp_path / "ts")] == [
        f"music21:{plan[0].source}"]
