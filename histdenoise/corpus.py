"""An offline corpus of clean classical music, rendered from scores with FluidSynth.

Sources (all offline once installed):

- scores from the ``music21`` corpus (PyPI): Bach chorales and Palestrina masses (choir),
  string quartets of Beethoven, Mozart and Haydn (strings), piano pieces plus chorales and
  quartets played on keyboard instruments (piano);
- General MIDI soundfonts from Debian: ``fluid-soundfont-gm`` and
  ``musescore-general-soundfont``, rendered by ``fluidsynth``;
- orchestral recordings of the Debian package ``wesnoth-1.16-music`` (orchestra).

Each rendering is humanised: tempo and its drift, per-part loudness, note velocities, and
the instrument (GM program) and soundfont are drawn at random. Pieces are assigned to
``train`` / ``validation`` / ``test`` by a hash of the source score, never by segment,
so a piece heard in training never appears in the test split, in any rendering.

Output: ``<out>/<split>/<category>/<piece>.flac`` (44.1 kHz mono, 16 bit, peak -1 dBFS,
at most `MAX_SECONDS`)
and ``<out>/corpus.csv`` listing every file with its provenance.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histdenoise.errors import HistdenoiseError

SAMPLE_RATE = 44100
MAX_SECONDS = 180.0
"""Renderings are cut to their first three minutes, to keep the categories balanced."""
MAX_MEASURES = 48
"""Longer scores are cut to their first measures before rendering (at most ~3 minutes)."""
CATEGORIES = ("piano", "strings", "choir", "orchestra")

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",  # a link to the Full one on Debian
)
RENDER_TIMEOUT_S = 180
"""A rendering that takes longer is abandoned (a broken score), not waited for."""
SOUNDFONT_WEIGHT = {"MuseScore_General_Full.sf3": 0.4, "MuseScore_General.sf3": 0.0}
"""Relative chance of each soundfont (the compressed MuseScore font renders slowly)."""
WESNOTH_MUSIC = "/usr/share/games/wesnoth/1.16/data/core/music"

PROGRAMS = {  # General MIDI programs (0-based) per category
    "piano": (0, 1, 2, 6),  # grand, bright, electric grand, harpsichord
    "strings": (40, 41, 42, 48, 49),  # violin, viola, cello, string ensembles
    "choir": (52, 53, 54),  # choir aahs, voice oohs, synth voice
}
TEMPO_BPM = {"piano": (60, 140), "strings": (50, 130), "choir": (45, 100)}


class CorpusError(HistdenoiseError):
    """The corpus cannot be built (missing tools or packages)."""


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


def split_of(key: str, validation: float = 0.1, test: float = 0.1) -> str:
    """Deterministic split of a piece by the crc32 of its source name."""
    u = (zlib.crc32(key.encode()) % 10_000) / 10_000
    return "test" if u < test else "validation" if u < test + validation else "train"


def available_soundfonts() -> list[str]:
    return [s for s in SOUNDFONTS if Path(s).is_file()]


def plan_scores(per_category: int, seed: int = 0) -> list[ScoreJob]:
    """Choose the scores to render: ``per_category`` renderings for piano, strings, choir."""
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


def render_score(job: ScoreJob, out_root: Path) -> dict:
    """Render one humanised score to FLAC; returns its corpus.csv row."""
    import soundfile as sf
    from music21 import corpus, instrument, tempo

    rng = np.random.default_rng(job.seed)
    score = corpus.parse(job.source)
    if len(score.parts) and len(score.parts[0].getElementsByClass("Measure")) > MAX_MEASURES:
        score = score.measures(0, MAX_MEASURES)
    # every tempo indication goes (metric modulations can become absurd MIDI tempi)
    for mark in list(score.recurse().getElementsByClass(tempo.TempoIndication)):
        mark.activeSite.remove(mark)
    bpm = float(rng.uniform(*TEMPO_BPM[job.category]))
    programs = []
    for part in score.parts:
        for inst in list(part.recurse().getElementsByClass(instrument.Instrument)):
            inst.activeSite.remove(inst)
        new = instrument.Instrument()
        new.midiProgram = int(rng.choice(PROGRAMS[job.category]))
        programs.append(new.midiProgram)
        part.insert(0, new)
        base = rng.uniform(55, 105)
        for n in part.recurse().notes:
            n.volume.velocity = int(np.clip(base + rng.normal(0, 8), 20, 127))
    # Timing: a slow random tempo drift (rubato) every 4 beats. Per-note offset jitter is
    # avoided: overlapping repeated notes leave FluidSynth voices hanging forever.
    end = score.highestTime
    drift = 0.0
    for beat in np.arange(0.0, end, 4.0):
        drift = float(np.clip(0.8 * drift + rng.normal(0, 0.03), -0.12, 0.12))
        score.parts[0].insert(float(beat), tempo.MetronomeMark(number=bpm * (1 + drift)))
    fonts = available_soundfonts()
    weights = np.array([SOUNDFONT_WEIGHT.get(Path(f).name, 1.0) for f in fonts])
    soundfont = str(rng.choice(fonts, p=weights / weights.sum()))
    with tempfile.TemporaryDirectory() as tmp:
        midi = Path(tmp) / "score.mid"
        wav = Path(tmp) / "render.wav"
        score.write("midi", fp=str(midi))
        cmd = [
            "fluidsynth",
            "-ni",
            "-q",
            "-R",
            "0",
            "-C",
            "0",
            "-g",
            "0.5",
            "-r",
            str(SAMPLE_RATE),
            "-F",
            str(wav),
            soundfont,
            str(midi),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=RENDER_TIMEOUT_S)
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    return _store(
        audio.mean(axis=1),
        sr,
        job.category,
        job.piece,
        job.split,
        out_root,
        {
            "source": f"music21:{job.source}",
            "soundfont": Path(soundfont).name,
            "programs": " ".join(map(str, programs)),
            "tempo_bpm": round(bpm, 1),
            "seed": job.seed,
        },
    )


def render_recording(path: str, out_root: Path) -> dict:
    """Convert one orchestral recording (Wesnoth music) to the corpus format."""
    import soundfile as sf

    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    stem = Path(path).stem
    return _store(
        audio.mean(axis=1),
        sr,
        "orchestra",
        f"orchestra-wesnoth-{stem}",
        split_of(f"wesnoth/{stem}"),
        out_root,
        {
            "source": f"wesnoth-1.16-music:{Path(path).name}",
            "soundfont": "",
            "programs": "",
            "tempo_bpm": "",
            "seed": "",
        },
    )


def _store(
    mono: np.ndarray, sr: int, category: str, piece: str, split: str, out_root: Path, extra: dict
) -> dict:
    import soundfile as sf
    import soxr

    if sr != SAMPLE_RATE:
        mono = soxr.resample(mono, sr, SAMPLE_RATE)
    loud = np.nonzero(np.abs(mono) > 1e-4)[0]
    if loud.size == 0:
        raise CorpusError(f"{piece}: rendering is silent")
    mono = mono[loud[0] : loud[-1] + 1][: int(MAX_SECONDS * SAMPLE_RATE)]
    mono = mono / np.max(np.abs(mono)) * 10 ** (-1 / 20)
    dest = out_root / split / category / f"{piece}.flac"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    sf.write(tmp, mono, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    tmp.replace(dest)
    return {
        "file": dest.relative_to(out_root).as_posix(),
        "piece": piece,
        "category": category,
        "split": split,
        "seconds": round(mono.size / SAMPLE_RATE, 2),
        **extra,
    }


@dataclass(frozen=True)
class CorpusConfig:
    """What `build_corpus` makes.

    Attributes:
        per_category: score renderings per category (piano, strings, choir).
        orchestra: include the Wesnoth recordings (if the package is installed).
        seed: seed of the piece choice and humanisation.
        workers: parallel rendering processes.
    """

    per_category: int = 40
    orchestra: bool = True
    seed: int = 0
    workers: int = 2


def check_tools() -> None:
    """Raise `CorpusError` naming what is missing to build a corpus."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("fluidsynth (apt-get install fluidsynth)")
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
    recordings = []
    if config.orchestra and Path(WESNOTH_MUSIC).is_dir():
        recordings = sorted(str(p) for p in Path(WESNOTH_MUSIC).glob("*.ogg"))
    rows, failures = [], []
    existing = _read_rows(out / "corpus.csv")
    with ProcessPoolExecutor(config.workers) as pool:
        futures = []
        for job in jobs:
            row = existing.get(f"{job.split}/{job.category}/{job.piece}.flac")
            if row and (out / row["file"]).is_file():
                rows.append(row)
            else:
                futures.append(pool.submit(render_score, job, out))
        for path in recordings:
            futures.append(pool.submit(render_recording, path, out))
        for fut in tqdm(futures, desc="corpus", unit="piece", disable=not progress):
            try:
                rows.append(fut.result())
            except Exception as exc:  # one bad score must not stop the build
                failures.append(str(exc).splitlines()[0] if str(exc) else repr(exc))
    rows.sort(key=lambda r: r["file"])
    _write_rows(out / "corpus.csv", rows)
    if failures and progress:
        print(f"{len(failures)} pieces failed to render, e.g. {failures[0]}")
    return rows


FIELDS = (
    "file",
    "piece",
    "category",
    "split",
    "seconds",
    "source",
    "soundfont",
    "programs",
    "tempo_bpm",
    "seed",
)


def _read_rows(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def _write_rows(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def read_corpus(root: str | Path) -> list[dict]:
    """Rows of ``<root>/corpus.csv``, or, for any folder of audio without one, every audio
    file as a piece (category ``music``, split by a hash of its path)."""
    from histdenoise.audio import AUDIO_EXTENSIONS

    root = Path(root)
    table = root / "corpus.csv"
    if table.is_file():
        return list(_read_rows(table).values())
    rows = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS:
            rel = p.relative_to(root).as_posix()
            rows.append({"file": rel, "piece": rel, "category": "music", "split": split_of(rel)})
    return rows


__all__ = ["CorpusConfig", "ScoreJob", "build_corpus", "plan_scores", "read_corpus", "split_of"]
