"""Clean classical music rendered from scores with FluidSynth: the training corpus we build.

Sources (all offline once installed):

- scores from the ``music21`` corpus (PyPI): Bach chorales and Palestrina masses (choir),
  string quartets of Beethoven, Mozart and Haydn (strings), piano pieces plus chorales and
  quartets played on keyboard instruments (piano), chorales and quartets played by a
  wind, brass and organ ensemble whose bass line is doubled an octave below by two of
  double bass, tuba, bassoon, organ and cello (ensemble: the bass-heavy timbre the other
  settings lack);
- General MIDI soundfonts from Debian: ``fluid-soundfont-gm`` and
  ``musescore-general-soundfont``, played by FluidSynth (``libfluidsynth`` through
  ``pyfluidsynth``, note by note, so that a rendering always ends);
- orchestral recordings of the Debian package ``wesnoth-1.16-music`` (orchestra).

Each rendering is humanised: tempo and its drift, note timing, per-part loudness, note
velocities, and
the instrument (GM program) and soundfont are drawn at random. Pieces are assigned to
``train`` / ``validation`` / ``test`` by a hash of the source score, never by segment,
so a piece heard in training never appears in the test split, in any rendering.

`build_corpus` writes them in the corpus folder layout of `histdenoise.training.corpus`
(``<out>/<split>/<category>/<piece>.flac`` and ``<out>/corpus.csv``), which any folder of
music can also follow.

Training layer: must not import histdenoise.notebook, TensorFlow or Keras at module level;
music21, pyfluidsynth and soundfile only inside the functions that need them.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from histdenoise.errors import first_line
from histdenoise.stft import SAMPLE_RATE
from histdenoise.training.corpus import (
    MAX_SECONDS,
    CorpusError,
    read_rows,
    split_of,
    store_piece,
    write_rows,
)

MAX_MEASURES = 48
"""Longer scores are cut to their first measures before rendering (at most ~3 minutes)."""
CATEGORIES = ("piano", "strings", "choir", "ensemble", "orchestra")

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",  # a link to the Full one on Debian
)
SOUNDFONT_WEIGHT = {"MuseScore_General_Full.sf3": 0.4, "MuseScore_General.sf3": 0.0}
"""Relative chance of each soundfont (the compressed MuseScore font renders slowly)."""
WESNOTH_MUSIC = "/usr/share/games/wesnoth/1.16/data/core/music"

PROGRAMS = {  # General MIDI programs (0-based) per category
    "piano": (0, 1, 2, 6),  # grand, bright, electric grand, harpsichord
    "strings": (40, 41, 42, 48, 49),  # violin, viola, cello, string ensembles
    "choir": (52, 53, 54),  # choir aahs, voice oohs, synth voice
    # church organ, trumpet, trombone, horn, oboe, bassoon, clarinet, flute, strings
    "ensemble": (19, 56, 57, 60, 68, 70, 71, 73, 48),
}
BASS_PROGRAMS = (43, 58, 70, 19, 42)
"""Programs of the ensemble's doubled bass line: contrabass, tuba, bassoon, organ, cello."""
TEMPO_BPM = {"piano": (60, 140), "strings": (50, 130), "choir": (45, 100), "ensemble": (45, 110)}


@dataclass(frozen=True)
class ScoreJob:
    """One rendering of a score.

    Attributes:
        source: music21 corpus path (``bach/bwv66.6.mxl``).
        category: instrumentation category.
        piece: file stem, unique per rendering.
        split: ``train``, ``validation`` or ``test``.
        seed: seed of the humanisation.
    """

    source: str
    category: str
    piece: str
    split: str
    seed: int


def available_soundfonts() -> list[str]:
    return [s for s in SOUNDFONTS if Path(s).is_file()]


def plan_scores(per_category: int, seed: int = 0) -> list[ScoreJob]:
    """Choose the scores to render: ``per_category`` renderings for piano, strings, choir
    and ensemble (the same pieces of the first three for any ``per_category``, whether the
    ensemble is rendered or not)."""
    from music21 import corpus

    def paths(composer, pattern=""):
        return sorted(
            str(p).split("/corpus/")[-1]
            for p in corpus.getComposer(composer)
            if pattern in str(p) and str(p).endswith((".mxl", ".xml", ".krn"))
        )

    quartets = [
        p
        for c in ("beethoven", "mozart", "haydn")
        for p in paths(c)
        if not p.endswith(".krn") and "k545" not in p
    ]
    chorales = [p for p in paths("bach") if "bwv" in p][:400]
    palestrina = paths("palestrina")[:200]
    keyboard = paths("mozart", "k545") + paths("joplin") + paths("chopin")
    pools = {
        "strings": quartets,
        "choir": chorales + palestrina,
        "piano": keyboard + chorales[::3] + quartets[::2],
        "ensemble": chorales[1::2] + quartets[1::2],
    }
    rng = np.random.default_rng(seed)
    jobs = []
    for category, pool in pools.items():
        picks = rng.permutation(len(pool))[:per_category]
        for k, i in enumerate(sorted(picks)):
            src = pool[i]
            stem = src.replace("/", "_").rsplit(".", 1)[0]
            jobs.append(
                ScoreJob(
                    src, category, f"{category}-{stem}", split_of(src), int(rng.integers(2**31)) + k
                )
            )
    return jobs


def score_events(job: ScoreJob) -> tuple[list[tuple[float, float, int, int, int]], dict]:
    """Humanised note events of a score: (start s, end s, channel, key, velocity).

    Tempo: a random base tempo with a slow random drift (rubato) every 4 beats; timing: each
    note start and end moved by a few milliseconds; loudness: a base level per part and a
    velocity spread per note; one GM program per part drawn from the category's list. An
    ensemble's lowest part is also played an octave lower (down to MIDI key 24, 32.7 Hz)
    by two of `BASS_PROGRAMS`, louder than the other parts.
    """
    from music21 import corpus

    rng = np.random.default_rng(job.seed)
    score = corpus.parse(job.source)
    if len(score.parts) and len(score.parts[0].getElementsByClass("Measure")) > MAX_MEASURES:
        score = score.measures(0, MAX_MEASURES)
    bpm = float(rng.uniform(*TEMPO_BPM[job.category]))
    end_q = float(score.highestTime)
    # seconds at each 4-beat boundary, integrating the drifting tempo
    bounds = np.arange(0.0, end_q + 8.0, 4.0)
    drift = np.zeros(bounds.size)
    for k in range(1, bounds.size):
        drift[k] = np.clip(0.8 * drift[k - 1] + rng.normal(0, 0.03), -0.12, 0.12)
    seconds = np.concatenate([[0.0], np.cumsum(4.0 * 60.0 / (bpm * (1 + drift[:-1])))])

    def q2s(q: float) -> float:
        return float(np.interp(q, bounds, seconds))

    events, programs = [], []
    channels = [c for c in range(16) if c != 9]  # channel 10 is percussion in GM
    for i, part in enumerate(score.parts):
        ch = channels[i % len(channels)]
        programs.append(int(rng.choice(PROGRAMS[job.category])))
        base = rng.uniform(55, 105)
        for n in part.flatten().notes:
            t0 = q2s(float(n.offset)) + rng.normal(0, 0.006)
            t1 = q2s(float(n.offset + n.quarterLength)) + rng.normal(0, 0.006)
            vel = int(np.clip(base + rng.normal(0, 8), 20, 127))
            for p in n.pitches:
                if t1 > t0 + 0.01:
                    events.append((max(0.0, t0), t1, ch, int(p.midi), vel))
    channel_of = [channels[i % len(channels)] for i in range(len(score.parts))]
    if job.category == "ensemble" and len(score.parts):
        doubling = [channels[(len(score.parts) + k) % len(channels)] for k in range(2)]
        programs += [int(p) for p in rng.choice(BASS_PROGRAMS, size=2, replace=False)]
        channel_of += doubling
        base = rng.uniform(90, 120)
        for n in score.parts[-1].flatten().notes:
            t0 = q2s(float(n.offset)) + rng.normal(0, 0.006)
            t1 = q2s(float(n.offset + n.quarterLength)) + rng.normal(0, 0.006)
            vel = int(np.clip(base + rng.normal(0, 6), 20, 127))
            key = min(int(p.midi) for p in n.pitches) - 12
            if t1 > t0 + 0.01 and key >= 24:
                events += [(max(0.0, t0), t1, ch, key, vel) for ch in doubling]
    return events, {"programs": programs, "channels": channel_of, "tempo_bpm": round(bpm, 1)}


@lru_cache(maxsize=2)
def _synth(soundfont: str):
    """A FluidSynth instance with ``soundfont`` loaded (reused within a process)."""
    import fluidsynth

    synth = fluidsynth.Synth(gain=0.4, samplerate=float(SAMPLE_RATE))
    synth.setting("synth.reverb.active", 0)
    synth.setting("synth.chorus.active", 0)
    return synth, synth.sfload(soundfont)


def synthesize(events, programs: dict[int, int], soundfont: str, tail_s: float = 1.5) -> np.ndarray:
    """Render note events to mono float32 at 44.1 kHz.

    The length is bounded by the last note-off plus ``tail_s``: no stuck note can make a
    rendering run on (as FluidSynth's own MIDI-file renderer does on some scores).
    """
    synth, sfid = _synth(soundfont)
    synth.system_reset()
    for ch, prog in programs.items():
        synth.program_select(ch, sfid, 0, prog)
    timeline = []
    for t0, t1, ch, key, vel in events:
        timeline.append((t0, 1, ch, key, vel))
        timeline.append((t1, 0, ch, key, 0))
    timeline.sort(key=lambda e: (e[0], e[1]))
    total = int((max((e[0] for e in timeline), default=0.0) + tail_s) * SAMPLE_RATE)
    out, pos = [], 0
    for t, on, ch, key, vel in timeline:
        at = min(total, int(t * SAMPLE_RATE))
        if at > pos:
            out.append(synth.get_samples(at - pos))
            pos = at
        if on:
            synth.noteon(ch, key, vel)
        else:
            synth.noteoff(ch, key)
    for ch in programs:
        synth.all_notes_off(ch)
    if total > pos:
        out.append(synth.get_samples(total - pos))
    stereo = np.concatenate(out).astype(np.float32).reshape(-1, 2) / 32768.0
    return stereo.mean(axis=1)


def render_score(job: ScoreJob, out_root: Path, max_seconds: float = MAX_SECONDS) -> dict:
    """Render one humanised score (its first ``max_seconds``) to FLAC; returns its row."""
    rng = np.random.default_rng(job.seed + 1)
    events, info = score_events(job)
    events = [(t0, min(t1, max_seconds), *rest) for t0, t1, *rest in events if t0 < max_seconds]
    fonts = available_soundfonts()
    weights = np.array([SOUNDFONT_WEIGHT.get(Path(f).name, 1.0) for f in fonts])
    soundfont = str(rng.choice(fonts, p=weights / weights.sum()))
    programs = dict(zip(info["channels"], info["programs"], strict=True))
    audio = synthesize(events, programs, soundfont)
    return store_piece(
        audio,
        SAMPLE_RATE,
        job.category,
        job.piece,
        job.split,
        out_root,
        max_seconds,
        {
            "source": f"music21:{job.source}",
            "soundfont": Path(soundfont).name,
            "programs": " ".join(map(str, info["programs"])),
            "tempo_bpm": info["tempo_bpm"],
            "seed": job.seed,
        },
    )


def render_recording(path: str, out_root: Path, max_seconds: float = MAX_SECONDS) -> dict:
    """Convert one orchestral recording (Wesnoth music, its first ``max_seconds``) to the
    corpus format."""
    import soundfile as sf

    audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    stem = Path(path).stem
    return store_piece(
        audio.mean(axis=1),
        sample_rate,
        "orchestra",
        f"orchestra-wesnoth-{stem}",
        split_of(f"wesnoth/{stem}"),
        out_root,
        max_seconds,
        {
            "source": f"wesnoth-1.16-music:{Path(path).name}",
            "soundfont": "",
            "programs": "",
            "tempo_bpm": "",
            "seed": "",
        },
    )


@dataclass(frozen=True)
class CorpusConfig:
    """What `build_corpus` makes.

    Attributes:
        per_category: score renderings per category (piano, strings, choir, ensemble).
        orchestra: include the Wesnoth recordings (if the package is installed).
        seed: seed of the piece choice and humanisation.
        workers: parallel rendering processes.
        max_seconds: longest piece kept, seconds (short for quick teaching corpora).
        spread_splits: assign the scores to train, validation, train, test, ... in turn
            (every split gets pieces even in a tiny corpus) instead of by a hash of the
            score's name (stable as the corpus grows; the default).
        splits: render only the pieces of these splits (all when empty). With the
            default hash split and the default ``per_category`` and ``seed``,
            ``splits=("test",)`` gives exactly the test pieces of the bundled model's
            corpus: music it never heard, for a held-out test set.
    """

    per_category: int = 40
    orchestra: bool = True
    seed: int = 0
    workers: int = 2
    max_seconds: float = MAX_SECONDS
    spread_splits: bool = False
    splits: tuple[str, ...] = ()


def check_tools() -> None:
    """Raise `CorpusError` naming what is missing to build a corpus."""
    missing = []
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError):
        missing.append(
            "pyfluidsynth with libfluidsynth (pip install pyfluidsynth; apt-get install fluidsynth)"
        )
    if not available_soundfonts():
        missing.append(
            "a GM soundfont (apt-get install fluid-soundfont-gm musescore-general-soundfont)"
        )
    try:
        import music21  # noqa: F401
    except ImportError:
        missing.append("music21 (pip install music21)")
    if missing:
        raise CorpusError("cannot build the corpus, missing: " + "; ".join(missing))


def build_corpus(
    out: str | Path, config: CorpusConfig | None = None, progress: bool = True
) -> list[dict]:
    """Render the corpus into ``out``; returns the rows written to ``corpus.csv``.

    Files already present are kept (an interrupted build resumes).
    """
    from tqdm.auto import tqdm

    check_tools()
    config = config or CorpusConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list = plan_scores(config.per_category, config.seed)
    if config.spread_splits:
        turn = ("train", "validation", "train", "test")
        jobs = [replace(job, split=turn[i % len(turn)]) for i, job in enumerate(jobs)]
    if config.splits:
        jobs = [job for job in jobs if job.split in config.splits]
    recordings = []
    if config.orchestra and Path(WESNOTH_MUSIC).is_dir():
        recordings = sorted(str(p) for p in Path(WESNOTH_MUSIC).glob("*.ogg"))
        if config.splits:
            recordings = [p for p in recordings
                          if split_of(f"wesnoth/{Path(p).stem}") in config.splits]
    rows, failures = [], []
    existing = read_rows(out / "corpus.csv")
    from histdenoise.training.data import safe_context

    with ProcessPoolExecutor(config.workers, mp_context=safe_context()) as pool:
        futures = []
        for job in jobs:
            row = existing.get(f"{job.split}/{job.category}/{job.piece}.flac")
            if row and (out / row["file"]).is_file():
                rows.append(row)
            else:
                futures.append(pool.submit(render_score, job, out, config.max_seconds))
        for path in recordings:
            futures.append(pool.submit(render_recording, path, out, config.max_seconds))
        for fut in tqdm(futures, desc="corpus", unit="piece", disable=not progress):
            try:
                rows.append(fut.result())
            except Exception as exc:  # one bad score must not stop the build
                failures.append(first_line(exc))
    rows.sort(key=lambda r: r["file"])
    write_rows(out / "corpus.csv", rows)
    if failures and progress:
        print(f"{len(failures)} pieces failed to render, e.g. {failures[0]}")
    return rows


__all__ = ["CorpusConfig", "ScoreJob", "build_corpus", "check_tools", "plan_scores", "render_score"]
