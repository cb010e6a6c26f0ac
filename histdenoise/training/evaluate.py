"""Scoring on held-out test sets: SNR and SI-SDR improvement per input SNR and category.

`evaluate` runs a model and the baselines (the untouched input, ``noisereduce`` with the
settings that score best on the set) over a test set (`histdenoise.training.testsets`
builds and reads them) and returns one row per example and method, with SI-SDR/SNR
improvement, output level and per-band level against the clean reference; `summarise`
averages them, `format_table` and `format_levels` print them, `save_results` writes them
and `update_card` stores them in a native model's card.

Training layer: must not import histdenoise.notebook, TensorFlow or Keras at module level.
The names of `histdenoise.training.testsets` stay importable from here.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np

from histdenoise.card import CARD_NAME
from histdenoise.errors import HistdenoiseError
from histdenoise.files import temp_path
from histdenoise.metrics import si_sdr_db, snr_db
from histdenoise.stft import SAMPLE_RATE
from histdenoise.training.testsets import (  # noqa: F401  (re-exported: importable from here)
    CLEAN_SNR,
    CONDITIONS,
    NOISE_SEED_OFFSET,
    SUITES,
    TEST_SNRS,
    TestsetConfig,
    build_testset,
    heldout_noise,
    read_testset,
)

BANDS_HZ = ((20, 200), (200, 400), (400, 800), (800, 1600), (1600, 4000), (4000, 8000),
            (8000, 20000))
"""Bands of the per-band level comparison, Hz; 200 Hz - 4 kHz is the music band of an
acoustic-era record."""
MUSIC_BANDS = ((200, 400), (400, 800), (800, 1600), (1600, 4000))


def band_levels_db(x: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Level (dB) of ``x`` in each of `BANDS_HZ`, from one whole-signal power spectrum."""
    spec = np.abs(np.fft.rfft(np.asarray(x, np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / sr)
    return np.array([10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-20)
                     for lo, hi in BANDS_HZ])


def training_overlap(card, items: list[dict]) -> list[str]:
    """The test pieces (`histdenoise.training.data.piece_key` names) that ``card``'s model was
    trained on, by its card's ``training_pieces``; empty when the card lists none."""
    listed = list(getattr(card, "training_pieces", None) or [])
    listed += list((getattr(card, "training", None) or {}).get("training_pieces", []))
    known = {str(p) for p in listed} | {str(p).split(":", 1)[-1] for p in listed}
    return sorted({it.get("source") or it["piece"] for it in items
                   if {it.get("source", ""), it["piece"],
                       str(it.get("source", "")).split(":", 1)[-1]} & known - {""}})


NOISEREDUCE_GRID = [
    {"stationary": s, "prop_decrease": p} for s in (True, False) for p in (0.5, 0.75, 1.0)
]


def _noisereduce(noisy: np.ndarray, settings: dict) -> np.ndarray:
    import noisereduce

    return noisereduce.reduce_noise(y=noisy, sr=SAMPLE_RATE, **settings).astype(np.float32)


def evaluate(
    model,
    testset: str | Path,
    baselines: bool = True,
    progress: bool = True,
    dehum: str = "auto",
    dethump: str = "auto",
) -> tuple[list[dict], dict]:
    """Score ``model`` (anything `histdenoise.Denoiser` takes, run as `Denoiser.denoise`
    runs it, hum and thump removal, ``dehum`` and ``dethump``, included) and the baselines.

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
        out = denoiser.denoise(noisy, SAMPLE_RATE, dehum=dehum, dethump=dethump)[0]
        outputs["model"].append(out)
    info = {"model": denoiser.card.name, "training_overlap": overlap, "dehum": dehum,
            "dethump": dethump}
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
            s_in, si_in = _capped(snr_db(noisy, clean)), _capped(si_sdr_db(noisy, clean))
            s_out, si_out = _capped(snr_db(est, clean)), _capped(si_sdr_db(est, clean))
            band = band_levels_db(est) - band_levels_db(clean)
            rows.append(
                {
                    "method": method,
                    "condition": it.get("condition") or "mixture",
                    "snr_db": float(it["snr_db"]),
                    "category": it["category"],
                    "piece": it["piece"],
                    "snr_out": s_out,
                    "si_sdr_out": si_out,
                    "snr_improvement": s_out - s_in,
                    "si_sdr_improvement": si_out - si_in,
                    "level_db": float(10 * np.log10(
                        (np.mean(np.square(est)) + 1e-20) / (np.mean(np.square(clean)) + 1e-20))),
                    **{f"band_{lo}_{hi}_db": float(v) for (lo, hi), v in zip(BANDS_HZ, band,
                                                                             strict=True)},
                }
            )
    return rows, info


def _capped(db: float, cap: float = 100.0) -> float:
    """A dB figure capped at ``cap`` (a clean example scores infinite SI-SDR against itself)."""
    return float(min(db, cap))


def summarise(rows: list[dict]) -> list[dict]:
    """Means per method, input SNR and category (plus ``all`` categories)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        for cat in (r["category"], "all"):
            key = (r["method"], r.get("condition", "mixture"), r["snr_db"], cat)
            groups.setdefault(key, []).append(r)
    out = []
    for (method, condition, snr, cat), rs in sorted(groups.items()):
        bands = [k for k in rs[0] if k.startswith("band_")]
        out.append(
            {
                "method": method,
                "condition": condition,
                "snr_db": snr,
                "category": cat,
                "n": len(rs),
                "snr_improvement": float(np.mean([r["snr_improvement"] for r in rs])),
                "si_sdr_improvement": float(np.mean([r["si_sdr_improvement"] for r in rs])),
                "si_sdr_out_median": float(np.median([r["si_sdr_out"] for r in rs])),
                "level_db": float(np.mean([r["level_db"] for r in rs])) if "level_db" in rs[0]
                else float("nan"),
                **{b: float(np.mean([r[b] for r in rs])) for b in bands},
            }
        )
    return out


def format_table(summary: list[dict], category: str = "all", condition: str = "mixture") -> str:
    """A Markdown table: rows methods, columns input SNR, cells SI-SDR / SNR improvement."""
    summary = [s for s in summary if s.get("condition", "mixture") == condition]
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


def format_levels(summary: list[dict], method: str = "model") -> str:
    """A Markdown table per condition: median SI-SDR of the output, its level and its
    level per band, each against the clean reference (dB)."""
    rows = [s for s in summary if s["method"] == method and s["category"] == "all"]
    if not rows:
        return ""
    bands = [k for k in rows[0] if k.startswith("band_")]
    names = [b[5:-3].replace("_", "-") + " Hz" for b in bands]
    lines = ["| condition | input SNR | median SI-SDR | level | " + " | ".join(names) + " |",
             "|---" * (len(bands) + 4) + "|"]
    for s in rows:
        lines.append(f"| {s['condition']} | {s['snr_db']:g} | {s['si_sdr_out_median']:.1f} | "
                     f"{s['level_db']:+.2f} | " + " | ".join(f"{s[b]:+.2f}" for b in bands)
                     + " |")
    return "\n".join(lines) + "\n"


def save_results(rows: list[dict], info: dict, out: str | Path) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.json``, ``table.md`` and ``si_sdr.png`` to ``out``."""
    from histdenoise.notebook.plotting import plot_improvements

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
    conditions = list(dict.fromkeys(s["condition"] for s in summary))
    text = ""
    for cond in conditions:
        if cond.startswith("clean"):
            continue
        text += f"## {cond}: all categories\n\n" + format_table(summary, "all", cond) + "\n"
        if cond == "mixture":
            for c in cats:
                text += f"\n## {cond}: {c}\n\n" + format_table(summary, c, cond) + "\n"
        text += "\n"
    text += "## Levels against the clean reference (dB; model)\n\n" + format_levels(summary)
    paths["table"].write_text(text)
    fig = plot_improvements([s for s in summary if s["condition"] == conditions[0]])
    fig.savefig(paths["plot"], dpi=120, bbox_inches="tight")
    return paths


def card_metrics(summary: list[dict], suite: str) -> dict[str, float]:
    """Model-card entries for a summary: ``<suite>_<condition>_<snr>dB_<category>`` ->
    SI-SDR improvement (dB, rounded to 0.01), plus ``..._median_si_sdr`` and ``..._level``
    for clean conditions and ``..._band_<lo>_<hi>`` levels for acoustic ones."""
    out: dict[str, float] = {}
    for s in summary:
        if s["method"] != "model":
            continue
        snr = "clean" if s["snr_db"] == CLEAN_SNR else f"{s['snr_db']:g}dB"
        key = f"{suite}_{s['condition']}_{snr}_{s['category']}"
        if s["condition"].startswith("clean"):
            out[f"{key}_median_si_sdr"] = round(s["si_sdr_out_median"], 2)
            out[f"{key}_level"] = round(s["level_db"], 2)
        else:
            out[key] = round(s["si_sdr_improvement"], 2)
        if "acoustic" in s["condition"] and s["category"] == "all":
            for b in (k for k in s if k.startswith("band_")):
                out[f"{key}_{b[:-3]}"] = round(s[b], 2)
    nr = {(s["condition"], s["snr_db"]): s["si_sdr_improvement"] for s in summary
          if s["method"] == "noisereduce" and s["category"] == "all"}
    for (condition, snr), value in nr.items():
        out[f"{suite}_{condition}_{snr:g}dB_all_noisereduce"] = round(value, 2)
    return out


def update_card(
    model: str | Path, summary: list[dict], suite: str, info: dict | None = None
) -> Path:
    """Write `card_metrics` into the ``metrics`` of a native model folder's card (replacing
    that suite's earlier entries), and under ``evaluated_with[suite]`` the settings the
    model ran with (``dehum``, ``dethump`` of ``info``, as `evaluate` returns it); returns
    the card's path."""
    path = Path(model) / CARD_NAME
    if not path.is_file():
        raise HistdenoiseError(f"{model}: --update-card needs a native model folder "
                               "(with model.json)")
    card = json.loads(path.read_text(encoding="utf-8"))
    metrics = card.get("metrics") or {}
    if isinstance(metrics, str):  # cards written before metrics were a mapping
        import ast

        metrics = ast.literal_eval(metrics)
    metrics = {k: v for k, v in metrics.items() if not k.startswith(f"{suite}_")}
    metrics.update(card_metrics(summary, suite))
    card["metrics"] = metrics
    if info is not None:
        runs = card.get("evaluated_with") or {}
        runs[suite] = {k: info[k] for k in ("dehum", "dethump") if k in info}
        card["evaluated_with"] = runs
    tmp = temp_path(path)
    tmp.write_text(json.dumps(card, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path
