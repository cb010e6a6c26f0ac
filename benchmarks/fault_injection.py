"""Fault injection: kill a batch at random moments, resume, check that nothing is lost.

    python benchmarks/fault_injection.py                         # 200 files, 20 kills
    python benchmarks/fault_injection.py --files 50 --kills 5 --seed 3

Writes ``--files`` short recordings (WAV PCM_16, FLAC PCM_24, WAV FLOAT and mu-law WAV in
turn, 1 or 2 channels) into a temporary folder, then runs ``histdenoise denoise IN -o OUT
--skip-existing`` (the bundled model on ONNX Runtime by default) ``--kills`` times, each
killed after a random delay (SIGKILL, every fourth one SIGTERM), and finally once to the
end. It then checks, and prints, that:

- every input has its three outputs, each report is valid JSON naming its files;
- ``denoised + residual == input`` exactly (integer outputs) or everywhere except the
  samples the report counts as ``inexact`` (float outputs);
- no temporary file (``.hd-*.part``) is left anywhere under OUT, and no input changed.

Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

KINDS = (("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_24"), ("wav", "WAV", "FLOAT"),
         ("wav", "WAV", "ULAW"))


def make_inputs(folder: Path, n: int, seconds: float, rng: np.random.Generator) -> list[Path]:
    paths = []
    for i in range(n):
        ext, fmt, subtype = KINDS[i % len(KINDS)]
        channels = 1 + i % 2
        frames = int(seconds * 44100 * rng.uniform(0.5, 1.5))
        t = np.arange(frames) / 44100
        x = np.stack([0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t)
                      for _ in range(channels)], 1)
        x += 0.02 * rng.standard_normal(x.shape)
        path = folder / f"take {i:03d} {subtype.lower()}.{ext}"
        sf.write(path, x, 44100, format=fmt, subtype=subtype)
        paths.append(path)
    return paths


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(inputs: list[Path], out: Path) -> list[str]:
    problems = []
    for src in inputs:
        reports = out / f"{src.stem}_report.json"
        try:
            report = json.loads(reports.read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{src.name}: no valid report ({exc})")
            continue
        den = reports.parent / report["denoised"]
        res = reports.parent / report["residual"]
        info = sf.info(str(den))
        integer = info.subtype.startswith("PCM")
        dtype = "int32" if integer else "float32"
        x = sf.read(src, dtype=dtype, always_2d=True)[0]
        d = sf.read(den, dtype=dtype, always_2d=True)[0]
        r = sf.read(res, dtype=dtype, always_2d=True)[0]
        if d.shape != x.shape or r.shape != x.shape:
            problems.append(f"{src.name}: output shape {d.shape}/{r.shape}, input {x.shape}")
            continue
        if integer:
            # left-aligned int32: compare on the output's grid (ULAW decodes to 16 bits)
            shift = 16 if info.subtype == "PCM_16" else 8
            wrong = int(np.count_nonzero(
                (d.astype(np.int64) >> shift) + (r.astype(np.int64) >> shift)
                != (x.astype(np.int64) >> shift)))
        else:
            wrong = int(np.count_nonzero(d + r != x))
        if wrong != report["output_audio"]["inexact"] or (integer and wrong):
            problems.append(f"{src.name}: {wrong} samples off, report says "
                            f"{report['output_audio']['inexact']}")
    left = [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".part")]
    problems += [f"temporary left: {p}" for p in left]
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.5, help="mean input length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="onnxruntime",
                        choices=("onnxruntime", "tensorflow"))
    parser.add_argument("--max-delay", type=float, default=None,
                        help="longest wait before a kill, s (default: 1.5 x start-up time)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    pick = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        inputs = make_inputs(src, args.files, args.seconds, rng)
        before = {p: digest(p) for p in inputs}
        cmd = [sys.executable, "-m", "histdenoise", "denoise", str(src), "-o", str(out),
               "--skip-existing", "--quiet", "--backend", args.backend]
        # start-up time: a run over an empty set of work (nothing to do is fast), then one file
        t0 = time.perf_counter()
        subprocess.run([*cmd[:4], str(inputs[0]), *cmd[5:]], capture_output=True, check=True)
        startup = time.perf_counter() - t0
        (out / f"{inputs[0].stem}_report.json").unlink()  # leave it incomplete on purpose
        max_delay = args.max_delay or 1.5 * startup + 2.0
        print(f"{args.files} files, one run of one file: {startup:.2f} s; "
              f"kills after 0-{max_delay:.1f} s")
        kills = []
        for k in range(args.kills):
            sig = signal.SIGTERM if k % 4 == 3 else signal.SIGKILL
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            delay = pick.uniform(0.0, max_delay)
            time.sleep(delay)
            proc.send_signal(sig)
            proc.communicate()
            done = len(list(out.glob("*_report.json")))
            temps = len([p for p in out.rglob(".hd-*.part")])
            kills.append((sig.name, delay, proc.returncode, done, temps))
            print(f"kill {k + 1:2d}: {sig.name:7s} after {delay:4.2f} s, exit {proc.returncode:4d},"
                  f" {done:3d} reports, {temps} temporaries left")
        t0 = time.perf_counter()
        final = subprocess.run(cmd, capture_output=True, text=True)
        print(f"resume: exit {final.returncode} in {time.perf_counter() - t0:.1f} s: "
              f"{final.stderr.strip().splitlines()[-1]}")
        problems = check(inputs, out)
        problems += [f"input changed: {p}" for p in inputs if digest(p) != before[p]]
        if final.returncode:
            problems.append(f"resume run failed: {final.stderr.strip()}")
        stale = sum(1 for *_, temps in kills if temps)
        print(f"{stale} of {len(kills)} kills left temporaries; after the resume: "
              f"{len(problems)} problems")
        for line in problems[:20]:
            print("  " + line)
        if not problems:
            print(f"OK: {args.files} inputs, every output complete and exact, "
                  "no temporary left, no input changed")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
