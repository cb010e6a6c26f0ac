"""Plot the training curve of one or more consecutive training stages.

    python tools/plot_history.py OUT.png STAGE1/history.csv [STAGE2/history.csv ...]

Each stage's steps continue after the last step of the one before (a stage that starts
from the previous stage's weights); rows whose step is not above the last one kept (a
resumed run that repeated a step) are dropped. Writes the figure of
`histdenoise.notebook.plotting.plot_history` with a line at each stage boundary.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def joined(paths: list[Path]) -> tuple[list[dict], list[int]]:
    """The rows of every history, steps made consecutive; and the step where each later
    stage starts."""
    rows: list[dict] = []
    starts: list[int] = []
    offset = 0
    for i, path in enumerate(paths):
        with open(path, newline="", encoding="utf-8") as f:
            stage = list(csv.DictReader(f))
        if i:
            starts.append(offset)
        last = -1
        for row in stage:
            step = int(row["step"])
            if step <= last:
                continue
            last = step
            rows.append({**row, "step": offset + step})
        offset += max(last, 0)
    return rows, starts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("histories", type=Path, nargs="+", help="history.csv of each stage")
    args = parser.parse_args()
    from histdenoise.notebook.plotting import plot_history

    rows, starts = joined(args.histories)
    fig = plot_history(rows)
    for ax in fig.axes:
        for s in starts:
            ax.axvline(s, color="0.6", linestyle=":", linewidth=1)
    fig.savefig(args.out, dpi=110)
    print(f"{args.out}: {len(rows)} points, stages start at {[0, *starts]}")


if __name__ == "__main__":
    main()
