"""Make the shipped example recording: a held-out quartet excerpt with simulated 78 rpm noise.

    python examples/make_example.py

Renders Mozart's quartet K. 80, movement 3 (a piece of the corpus's test split, so the
bundled model never heard it) with the corpus builder, takes 15 s, adds the simulator's
hiss, clicks, crackle, thumps and hum at 8 dB SNR, and writes ``examples/k80_78rpm.flac``
(the degraded recording, peak -1 dBFS) and ``examples/k80_clean.flac`` (its clean
original, same scale).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import soundfile as sf

from histdenoise.training.degradations import DegradationConfig, mix, simulate
from histdenoise.training.render import plan_scores, render_score

HERE = Path(__file__).resolve().parent
PIECE = "strings-mozart_k80_movement3"
START_S, SECONDS, SNR_DB, SEED = 8.0, 15.0, 8.0, 78


def main() -> None:
    job = next(j for j in plan_scores(40) if j.piece == PIECE)
    with tempfile.TemporaryDirectory() as tmp:
        row = render_score(job, Path(tmp))
        music, sr = sf.read(Path(tmp) / row["file"], dtype="float32")
    clean = music[int(START_S * sr) : int((START_S + SECONDS) * sr)]
    cfg = DegradationConfig.only("hiss", "clicks", "crackle", "thumps", "hum")
    noise = sum(simulate(clean.size, sr, cfg, seed=SEED).values())
    noisy, clean = mix(clean, noise, SNR_DB)
    peak = 10 ** (-1 / 20) / abs(noisy).max()  # the noisy transfer peaks at -1 dBFS
    noisy, clean = noisy * peak, clean * peak
    sf.write(HERE / "k80_78rpm.flac", noisy, sr, subtype="PCM_16")
    sf.write(HERE / "k80_clean.flac", clean, sr, subtype="PCM_16")
    print(f"wrote {HERE / 'k80_78rpm.flac'} and {HERE / 'k80_clean.flac'} ({SECONDS:g} s)")


if __name__ == "__main__":
    main()
