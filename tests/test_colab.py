"""The notebooks' install cells leave Colab's own packages alone.

Each distinct install command of the notebooks is resolved by pip (``--dry-run --report``)
for Colab: Python 3.13, manylinux x86-64 (Ubuntu 22.04, glibc 2.35), wheels only, every
package Colab ships pinned to its version by a constraint (tests/colab/, a dated copy of
Google's published list). A resolution that needs to change a pinned package fails; the
report must not add any TensorFlow, Keras, NumPy, protobuf, IPython, ipywidgets,
ipykernel, notebook or Jupyter package either. Needs PyPI (skipped, saying so, without it).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
FREEZE = REPO / "tests" / "colab" / "pip-freeze.gpu.txt"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb")) + [REPO / "colab" / "demo.ipynb"]
COLAB_PYTHON = "3.13"
COLAB_GLIBC_MINOR = 35  # Ubuntu 22.04
# Packages Colab has imported or depends on at start: never changed, never added.
PROTECTED = re.compile(
    r"^(tensorflow(-.*)?|tf-keras|keras(-.*)?|numpy|protobuf|ipython|ipywidgets|"
    r"widgetsnbextension|jupyterlab-widgets|ipykernel|notebook(-shim)?|nbclassic|"
    r"jupyter(-.*)?|nbformat|nbclient|nbconvert|traitlets|tornado)$"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def colab_versions() -> dict[str, str]:
    """Colab's packages: canonical name -> version (or the URL it came from)."""
    found = {}
    for line in FREEZE.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:==| @ )(\S+)", line.strip())
        if m:
            found[canonical(m.group(1))] = m.group(2)
    return found


def install_targets(path: Path) -> tuple[str, ...]:
    """The pip arguments of a notebook's install cell (after ``install -q``)."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.source.startswith("#@title Install"))
    m = re.search(r'"pip", "install", "-q",\s*(.*?)\],\s*check=True', cell.source, re.S)
    assert m, f"{path.name}: no pip install in the install cell"
    return tuple(re.findall(r'"([^"]+)"', m.group(1)))


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def resolve(targets: tuple[str, ...], tmp_path: Path) -> list[dict]:
    """pip's dry-run report of installing ``targets`` (paths under histdenoise-src/ mean
    this checkout) into Colab; fails the test with pip's message if it cannot."""
    constraints = tmp_path / "colab-constraints.txt"
    constraints.write_text("\n".join(
        line for line in FREEZE.read_text().splitlines() if "==" in line and "@" not in line))
    args = [str(REPO) + t[len("./histdenoise-src"):] if t.startswith("./histdenoise-src")
            else t.replace("histdenoise-src", str(REPO)) for t in targets]
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(COLAB_GLIBC_MINOR, 16, -1)]
    tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    platforms = [f"--platform={tag}" for tag in tags]
    report = tmp_path / "report.json"
    # --target: older pips (23.0) take platform options only with it; nothing is written
    cmd = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
           "install", "--dry-run", "--quiet", "--ignore-installed",
           "--target", str(tmp_path / "target"), "--report", str(report), "--index-url",
           "https://pypi.org/simple", f"--python-version={COLAB_PYTHON}",
           "--implementation=cp", *platforms, "--only-binary=:all:", "-c", str(constraints),
           *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (
        f"pip cannot install {' '.join(targets)} on Colab without changing its packages:\n"
        + (out.stdout + out.stderr)[-3000:])
    return json.loads(report.read_text())["install"]


COMMANDS = sorted({install_targets(p) for p in NOTEBOOKS})


def test_every_notebook_installs_from_requirements_and_the_checkout():
    for path in NOTEBOOKS:
        targets = install_targets(path)
        assert targets[:2] == ("-r", "histdenoise-src/requirements.txt"), path.name
        assert re.fullmatch(r"\./histdenoise-src(\[training\])?", targets[2]), targets


def pip_major() -> int:
    from importlib.metadata import version

    return int(version("pip").split(".")[0])


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI not reachable: Colab resolution skipped")
@pytest.mark.skipif(pip_major() < 25, reason="pip < 25 cannot resolve for another Python "
                    "version (pip install -e '.[dev]' brings pip 25+)")
@pytest.mark.parametrize("targets", COMMANDS, ids=lambda t: t[-1])
def test_colab_install_keeps_colabs_own_packages(targets, tmp_path):
    colab = colab_versions()
    changed, added = [], []
    for item in resolve(targets, tmp_path):
        name, version = canonical(item["metadata"]["name"]), item["metadata"]["version"]
        if name == "histdenoise":
            continue
        if name not in colab:
            added.append(f"{name}=={version}")
            if PROTECTED.match(name):
                changed.append(f"{name}: not in Colab, would be added ({version})")
        elif PROTECTED.match(name) and colab[name] != version:
            changed.append(f"{name}: Colab has {colab[name]}, would get {version}")
    assert not changed, "\n".join(changed)
    # What the install adds to Colab (printed with -s; small and none of the above).
    print(f"{targets[-1]} adds to Colab:", ", ".join(sorted(added)))
    assert "onnxruntime" in " ".join(added)
    forbidden = ("pytest", "ruff", "playwright", "voila", "tf2onnx", "onnx==")
    assert not [a for a in added if a.startswith(forbidden)], added
