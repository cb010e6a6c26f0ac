"""How exact is ``denoised + residual == input`` in float files? Measured, not assumed.

    python benchmarks/exactness.py                      # the example recording, bundled model
    python benchmarks/exactness.py --backend tensorflow path/to/music.flac ...

Each recording is written as WAV FLOAT and as WAV DOUBLE and denoised by the real command
(``histdenoise denoise``, default settings). The outputs are read back and summed in the
file's own precision; the script prints, per file and subtype, the samples whose sum is not
the input bit for bit (count and share, next to the report's ``inexact`` counter, which
must agree), the largest error in dB re full scale, and the bound it must keep: one unit in
the last place of the larger of |denoised| and |residual| (at most 2^-24, -144.5 dB, while
both stay within +-1). Integer PCM is exact by construction (see README, Exactness).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent


def measure(src: Path, subtype: str, backend: str, work: Path) -> dict:
    dtype = "float32" if subtype == "FLOAT" else "float64"
    x, sr = sf.read(src, dtype=dtype, always_2d=True)
    name = work / f"{src.stem}_{subtype.lower()}.wav"
    sf.write(name, x, sr, subtype=subtype)
    done = subprocess.run(
        [sys.executable, "-m", "histdenoise", "denoise", str(name), "--quiet", "--overwrite",
         "--backend", backend],
        capture_output=True, text=True, check=False,
    )
    if done.returncode:
        raise SystemExit(done.stderr)
    d = sf.read(name.with_name(f"{name.stem}_denoised.wav"), dtype=dtype, always_2d=True)[0]
    r = sf.read(name.with_name(f"{name.stem}_residual.wav"), dtype=dtype, always_2d=True)[0]
    report = json.loads(name.with_name(f"{name.stem}_report.json").read_text())
    wrong = (d + r) != x
    err = np.abs(d.astype(np.float64) + r - x)
    big = np.maximum(np.abs(d), np.abs(r)).astype(np.float64)
    ulp = np.spacing(big.astype(dtype)).astype(np.float64)
    return {
        "file": src.name,
        "subtype": subtype,
        "samples": x.size,
        "inexact": int(wrong.sum()),
        "report_inexact": report["output_audio"]["inexact"],
        "share_percent": 100.0 * wrong.sum() / x.size,
        "max_error_db": 20 * np.log10(err.max()) if err.max() > 0 else -np.inf,
        "within_one_ulp": bool(np.all(err <= ulp)),
        "max_abs_where_inexact": float(big[wrong].max()) if wrong.any() else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path,
                        default=[REPO / "examples" / "k80_78rpm.flac"])
    parser.add_argument("--backend", default="onnxruntime",
                        choices=("onnxruntime", "tensorflow"))
    args = parser.parse_args()
    print("| file | subtype | samples | inexact (report) | share | max error | <= 1 ulp |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for src in args.files:
            for subtype in ("FLOAT", "DOUBLE"):
                m = measure(src, subtype, args.backend, Path(tmp))
                print(
                    f"| {m['file']} | {m['subtype']} | {m['samples']} | {m['inexact']} "
                    f"({m['report_inexact']}) | {m['share_percent']:.4f} % | "
                    f"{m['max_error_db']:.1f} dB | {m['within_one_ulp']} |"
                )


if __name__ == "__main__":
    main()
