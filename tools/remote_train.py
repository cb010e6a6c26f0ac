"""Train a config within a fixed wall-clock budget on a lent machine, then export.

Meant for a machine lent for minutes (an accelerator without TensorFlow, any Keras
backend): it runs ``calibrate`` steps at the constant starting learning rate (this also
compiles the step), measures the step rate, then sets ``steps`` so that the rest of the
budget is used and continues under the config's cosine schedule to its final learning
rate. Writes the run folder (history.csv, model/) under OUT and a JSON summary with the
measured step time and throughput.

Usage: python tools/remote_train.py CONFIG.json OUT --corpus DIR --minutes M
       [--workers N] [--calibrate 100]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    t0 = time.monotonic()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--corpus", required=True)
    p.add_argument("--minutes", type=float, required=True, help="whole budget, start-up included")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--calibrate", type=int, default=100)
    p.add_argument("--reserve", type=float, default=0.75, help="minutes kept for export")
    args = p.parse_args()

    from histdenoise.training import TrainConfig, Trainer

    cfg = TrainConfig.from_json(args.config)
    cfg = replace(cfg, run_dir=str(args.out / "run"), workers=args.workers,
                  data=replace(cfg.data, corpus=[args.corpus]))
    final_lr, planned = cfg.final_learning_rate, cfg.steps
    cfg.final_learning_rate, cfg.steps, cfg.validate_every = 0.0, args.calibrate, args.calibrate
    trainer = Trainer(cfg)
    setup_s = time.monotonic() - t0
    c0 = time.monotonic()
    trainer.run()  # compiles the step, then runs at the constant starting rate
    first_s = time.monotonic() - c0
    # A second, shorter interval without compilation gives the step time.
    cfg.steps = args.calibrate + args.calibrate // 2
    cfg.validate_every = cfg.steps
    c1 = time.monotonic()
    trainer.run()
    step_s = (time.monotonic() - c1) / (args.calibrate // 2)
    left_s = 60 * (args.minutes - args.reserve) - (time.monotonic() - t0)
    cfg.steps = trainer.step + max(0, int(left_s / step_s * 0.97))
    cfg.final_learning_rate = final_lr
    cfg.validate_every = max(100, (cfg.steps - trainer.step) // 8)
    cfg.max_minutes = max(0.5, left_s / 60)
    print(f"calibrated: {step_s * 1000:.1f} ms/step; training to step {cfg.steps} "
          f"(config planned {planned})", flush=True)
    result = trainer.run()
    trainer.config.steps = trainer.step  # the schedule actually run ends here
    model = trainer.export(metrics={k: v for k, v in result.items() if k.startswith("val_")})
    summary = {
        "backend": trainer.backend,
        "setup_s": round(setup_s, 1),
        "first_interval_s_incl_compile": round(first_s, 1),
        "step_ms": round(step_s * 1000, 2),
        "examples_per_s": round(cfg.batch_size / step_s, 1),
        "frames_per_example": cfg.data.segment_frames,
        "steps_done": trainer.step,
        "result": result,
        "total_s": round(time.monotonic() - t0, 1),
        "model": str(model),
    }
    trainer.close()
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
