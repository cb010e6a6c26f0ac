"""Evaluation on held-out pieces: SNR and SI-SDR improvement per input SNR and category.

A test set is a folder with ``testset.csv`` (``noisy``, ``clean``, ``snr_db``,
``category``, ``piece``) and the audio it lists. `build_testset` makes one from the test
split of a corpus (pieces never used in training) and noise drawn with seeds that
training never uses. `evaluate` runs a model and the baselines (the untouched input,
``noisereduce`` with the settings that score best on the set) and returns one row per
example and method; `summarise` averages them.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histdenoise.errors import HistdenoiseError
from histdenoise.metrics import si_sdr_db, snr_db

TEST_SNRS = (2.0, 6.0, 12.0)
NOISE_SEED_OFFSET = 10_000_019
"""Test noise seeds start here; training and validation seeds stay far below."""


@dataclass(frozen=True)
class TestsetConfig:
    """How `build_testset` samples.

    Attributes:
        snrs: input SNRs, dB.
        excerpts_per_piece: excerpts taken from each test piece.
        seconds: excerpt length.
        seed: seed of excerpt positions and noise.
    """

    snrs: tuple[float, ...] = TEST_SNRS
    excerpts_per_piece: int = 2
    seconds: float = 6.0
    seed: int = 0


def build_testset(corpus: list[str], out: str | Path, config: TestsetConfig | None = None) -> Path:
    """Write a test set from the corpora's test split into ``out``; returns the csv path."""
    import soundfile as sf

    from histdenoise.corpus import read_corpus
    from histdenoise.data import DataConfig, ExampleSource, piece_key

    config = config or TestsetConfig()
    keys = {(Path(root) / row["file"]).as_posix(): piece_key(row)
            for root in corpus for row in read_corpus(root)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = int(config.seconds * 44100 - 2048) // 512 + 1
    data = DataConfig(corpus=list(corpus), segment_frames=frames)
    source = ExampleSource(data, "test", seed=config.seed + NOISE_SEED_OFFSET)
    rows = []
    pieces = list(source.pieces)
    for p_idx, (path, category) in enumerate(pieces):
        source.pieces = [(path, category)]
        for e in range(config.excerpts_per_piece):
            clean, _ = source.clean_segment()
            for snr in config.snrs:
                from histdenoise.degradations import mix

                noisy, ref = mix(clean, source.noise_segment(), snr, 0.0)
                stem = f"{p_idx:03d}_{e}_{snr:g}dB"
                sf.write(out / f"{stem}_noisy.flac", noisy, 44100, subtype="PCM_24")
                sf.write(out / f"{stem}_clean.flac", ref, 44100, subtype="PCM_24")
                rows.append(
                    {
                        "noisy": f"{stem}_noisy.flac",
                        "clean": f"{stem}_clean.flac",
                        "snr_db": snr,
                        "category": category,
                        "piece": path.stem,
                        "source": keys.get(path.as_posix(), path.stem),
                    }
                )
    source.pieces = pieces
    table = out / "testset.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return table


def training_overlap(card, items: list[dict]) -> list[str]:
    """The test pieces (`histdenoise.data.piece_key` names) that ``card``'s model was
    trained on, by its card's ``training_pieces``; empty when the card lists none."""
    listed = list(getattr(card, "training_pieces", None) or [])
    listed += list((getattr(card, "training", None) or {}).get("training_pieces", []))
    known = {str(p) for p in listed} | {str(p).split(":", 1)[-1] for p in listed}
    return sorted({it.get("source") or it["piece"] for it in items
                   if {it.get("source", ""), it["piece"],
                       str(it.get("source", "")).split(":", 1)[-1]} & known - {""}})


def read_testset(folder: str | Path) -> list[dict]:
    folder = Path(folder)
    table = folder / "testset.csv"
    if not table.is_file():
        raise HistdenoiseError(f"{folder}: no testset.csv (make one with build_testset)")
    with open(table, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


NOISEREDUCE_GRID = [
    {"stationary": s, "prop_decrease": p} for s in (True, False) for p in (0.5, 0.75, 1.0)
]


def _noisereduce(noisy: np.ndarray, settings: dict) -> np.ndarray:
    import noisereduce

    return noisereduce.reduce_noise(y=noisy, sr=44100, **settings).astype(np.float32)


def evaluate(
    model, testset: str | Path, baselines: bool = True, progress: bool = True
) -> tuple[list[dict], dict]:
    """Score ``model`` (anything `histdenoise.Denoiser` takes) and the baselines.

    Returns:
        ``(rows, info)``: one row per example and method (``method``, ``snr_db``,
        ``category``, ``snr_out``, ``si_sdr_out``, ``snr_improvement``,
        ``si_sdr_improvement``), and ``info`` with the chosen noisereduce settings and
        ``training_overlap``: test pieces the model's card lists among its training pieces
        (a `UserWarning` names them; the scores then overstate the model).
    """
    import soundfile as sf
    from tqdm.auto import tqdm

    from histdenoise.denoiser import Denoiser

    folder = Path(testset)
    items = read_testset(folder)
    denoiser = model if isinstance(model, Denoiser) else Denoiser(model, batch_size=4)
    overlap = training_overlap(denoiser.card, items)
    if overlap:
        pieces = len({it.get("source") or it["piece"] for it in items})
        warnings.warn(
            f"{denoiser.card.name} was trained on {len(overlap)} of this test set's {pieces} "
            f"pieces ({', '.join(overlap[:3])}{', ...' if len(overlap) > 3 else ''}): its "
            "scores overstate how it does on music it never heard", UserWarning, stacklevel=2)
    pairs = []
    for it in items:
        noisy, _ = sf.read(folder / it["noisy"], dtype="float32")
        clean, _ = sf.read(folder / it["clean"], dtype="float32")
        pairs.append((it, noisy, clean))
    outputs: dict[str, list[np.ndarray]] = {"input": [p[1] for p in pairs], "model": []}
    for _, noisy, _ in tqdm(pairs, desc="model", disable=not progress):
        outputs["model"].append(denoiser.denoise(noisy, 44100)[0])
    info = {"model": denoiser.card.name, "training_overlap": overlap}
    if baselines:
        best, best_score = None, -np.inf
        for settings in tqdm(NOISEREDUCE_GRID, desc="noisereduce grid", disable=not progress):
            est = [_noisereduce(noisy, settings) for _, noisy, _ in pairs]
            score = np.mean([si_sdr_db(e, c) for e, (_, _, c) in zip(est, pairs, strict=True)])
            if score > best_score:
                best, best_score, best_est = settings, score, est
        outputs["noisereduce"] = best_est
        info["noisereduce_settings"] = best
    rows = []
    for method, ests in outputs.items():
        for (it, noisy, clean), est in zip(pairs, ests, strict=True):
            s_in, si_in = snr_db(noisy, clean), si_sdr_db(noisy, clean)
            s_out, si_out = snr_db(est, clean), si_sdr_db(est, clean)
            rows.append(
                {
                    "method": method,
                    "snr_db": float(it["snr_db"]),
                    "category": it["category"],
                    "piece": it["piece"],
                    "snr_out": s_out,
                    "si_sdr_out": si_out,
                    "snr_improvement": s_out - s_in,
                    "si_sdr_improvement": si_out - si_in,
                }
            )
    return rows, info


def summarise(rows: list[dict]) -> list[dict]:
    """Means per method, input SNR and category (plus ``all`` categories)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        for cat in (r["category"], "all"):
            groups.setdefault((r["method"], r["snr_db"], cat), []).append(r)
    out = []
    for (method, snr, cat), rs in sorted(groups.items()):
        out.append(
            {
                "method": method,
                "snr_db": snr,
                "category": cat,
                "n": len(rs),
                "snr_improvement": float(np.mean([r["snr_improvement"] for r in rs])),
                "si_sdr_improvement": float(np.mean([r["si_sdr_improvement"] for r in rs])),
            }
        )
    return out


def format_table(summary: list[dict], category: str = "all") -> str:
    """A Markdown table: rows methods, columns input SNR, cells SI-SDR / SNR improvement."""
    snrs = sorted({s["snr_db"] for s in summary})
    methods = list(dict.fromkeys(s["method"] for s in summary))
    cell = {(s["method"], s["snr_db"]): s for s in summary if s["category"] == category}
    head = "| method | " + " | ".join(f"{s:g} dB in: SI-SDR / SNR impr." for s in snrs)
    lines = [head + " | mean SI-SDR impr. |", "|---" * (len(snrs) + 2) + "|"]
    for m in methods:
        vals = [cell.get((m, s)) for s in snrs]
        text = [
            f"{v['si_sdr_improvement']:+.2f} / {v['snr_improvement']:+.2f}" if v else "-"
            for v in vals
        ]
        mean = np.mean([v["si_sdr_improvement"] for v in vals if v])
        lines.append(f"| {m} | " + " | ".join(text) + f" | {mean:+.2f} |")
    return "\n".join(lines)


def save_results(rows: list[dict], info: dict, out: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.json``, ``table.md`` and ``si_sdr.png`` to ``out``."""
    from histdenoise.plotting import plot_improvements

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    paths = {
        "results": out / "results.csv",
        "summary": out / "summary.json",
        "table": out / "table.md",
        "plot": out / "si_sdr.png",
    }
    with open(paths["results"], "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths["summary"].write_text(json.dumps({"info": info, "summary": summary}, indent=2))
    cats = sorted({s["category"] for s in summary} - {"all"})
    text = "## All categories\n\n" + format_table(summary) + "\n"
    for c in cats:
        text += f"\n## {c}\n\n" + format_table(summary, c) + "\n"
    paths["table"].write_text(text)
    fig = plot_improvements(summary)
    fig.savefig(paths["plot"], dpi=120, bbox_inches="tight")
    return paths
