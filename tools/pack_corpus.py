"""Pack a corpus compactly (Opus) for training on a machine without the renderer.

A GPU machine lent for a few minutes has no FluidSynth and no network, and what travels
there is limited in size. This writes the chosen splits and categories of a corpus as
Opus (48 kHz in the file, resampled back to 44.1 kHz by `histdenoise.training.data.load_mono`
when ``cache_audio`` is on) with its ``corpus.csv``; 40 kbit/s mono keeps about two
hours of music in 36 MB.

Usage: python tools/pack_corpus.py CORPUS OUT [--splits train validation]
       [--exclude-categories orchestra] [--kbps 40]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--splits", nargs="+", default=["train", "validation"])
    p.add_argument("--exclude-categories", nargs="*", default=["orchestra"])
    p.add_argument("--kbps", type=float, default=40.0)
    args = p.parse_args()
    with open(args.corpus / "corpus.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f)
                if r["split"] in args.splits and r["category"] not in args.exclude_categories]
    args.out.mkdir(parents=True, exist_ok=True)
    for row in tqdm(rows, desc="opus"):
        x, rate = sf.read(args.corpus / row["file"], dtype="float32", always_2d=True)
        x = soxr.resample(x.mean(axis=1), rate, 48000)
        target = args.out / Path(row["file"]).with_suffix(".opus")
        target.parent.mkdir(parents=True, exist_ok=True)
        # libsndfile maps compression level 0..1 to Opus bit rates of about 260..16 kbit/s
        level = float(np.clip(1.0 - (args.kbps - 16.0) / 244.0, 0.0, 1.0))
        with sf.SoundFile(target, "w", 48000, 1, format="OGG", subtype="OPUS",
                          compression_level=level) as out:
            out.write(np.clip(x, -1, 1))
        row["file"] = target.relative_to(args.out).as_posix()
    with open(args.out / "corpus.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    size = sum(q.stat().st_size for q in args.out.rglob("*.opus"))
    print(f"{len(rows)} pieces, {size / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
