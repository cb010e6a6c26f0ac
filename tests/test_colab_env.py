"""The demo and notebook 1 run with Colab's own versions.

A Python 3.13 virtual environment gets what the notebooks' install cell gives on Colab:
``requirements.txt`` constrained to Colab's published package list (tests/colab/), i.e.
TensorFlow 2.20.0, Keras 3.13.2, NumPy 2.1.3, protobuf 5.29.6, ipywidgets 7.7.1, ipykernel
6.17.1, IPython 7.34.0, matplotlib 3.10.0, librosa 0.11.0, soundfile 0.14.0 (histdenoise
itself from this checkout). nbclient drives a kernel of that environment through the demo
and notebook 1, including an upload through ipywidgets 7's FileUpload protocol.

Not reproduced here: Colab's OS (Ubuntu 22.04; this is whatever runs the tests), its exact
Python (3.13.15; here the local python3.13), GPUs, and everything of ``google.colab``
(its upload dialog, downloads, frontend and widget rendering): outside Colab the notebooks
take their non-Colab paths.

The environment (about 3 GB, a few minutes to build from PyPI) is cached in
``$HISTDENOISE_COLAB_ENV`` or the user cache folder, keyed by the two lists. Skipped,
saying why, without python3.13 or PyPI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_colab import FREEZE, colab_versions, pypi_reachable
from tests.test_notebooks import count, outputs, set_params, text

REPO = Path(__file__).resolve().parent.parent
CHECKS = ("tensorflow", "keras", "numpy", "protobuf", "ipywidgets", "ipykernel", "ipython")


def python313() -> str | None:
    """A Python 3.13 with venv: on PATH, or installed by pyenv."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which("python3.13"),
                  *sorted(str(p) for p in pyenv.glob("3.13*/bin/python3.13"))]
    for found in filter(None, candidates):
        if subprocess.run([found, "-c", "import venv"], capture_output=True).returncode == 0:
            return found
    return None


def colab_env_folder() -> Path:
    """Where the environment for the current package lists is (or will be) cached."""
    import platformdirs

    lists = FREEZE.read_bytes() + (REPO / "requirements.txt").read_bytes()
    key = hashlib.sha256(lists).hexdigest()[:12]
    base = Path(os.environ.get("HISTDENOISE_COLAB_ENV")
                or platformdirs.user_cache_dir("histdenoise-tests"))
    return base / f"colab-env-{key}"


def colab_env_cached() -> bool:
    return (colab_env_folder() / "complete").is_file()


def colab_env() -> Path:
    """The cached environment's python, built on first use."""
    env = colab_env_folder()
    python = env / "bin" / "python"
    if (env / "complete").is_file():
        return python
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([python313(), "-m", "venv", str(env)], check=True)
    constraints = env / "colab-constraints.txt"
    constraints.write_text("\n".join(
        line for line in FREEZE.read_text().splitlines() if "==" in line and "@" not in line))
    out = subprocess.run(
        [str(python), "-m", "pip", "--isolated", "install", "-q", "--index-url",
         "https://pypi.org/simple", "--only-binary=:all:", "-c", str(constraints),
         "-r", str(REPO / "requirements.txt"), "ipykernel"],
        capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (env / "complete").write_text("ok\n")
    return python


@pytest.fixture(scope="module")
def colab_kernel(tmp_path_factory):
    """A kernelspec ``colab`` running the Colab-like environment with this checkout."""
    if python313() is None:
        pytest.skip("no python3.13 here: Colab's versions need Python 3.13")
    if os.environ.get("HISTDENOISE_COLAB_ENV_TEST") != "1" and not colab_env_cached():
        pytest.skip("the Colab-like environment is not built (3 GB from PyPI, several "
                    "minutes: more than the suite's 15-minute budget); run with "
                    "HISTDENOISE_COLAB_ENV_TEST=1 to build it once, later runs use the cache")
    if not pypi_reachable():
        pytest.skip("PyPI not reachable: cannot build the Colab-like environment")
    python = colab_env()
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "colab"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like (Python 3.13)", "language": "python",
        "env": {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    }))
    return root


def run_in_colab_env(path: Path, cwd: Path, jupyter_path: Path, extra: str = "", **params):
    """Execute the notebook in the Colab-like kernel, with a first cell printing the
    versions and ``extra`` appended as a last cell."""
    nb = nbformat.read(path, as_version=4)
    set_params(nb, **params)
    probe = ("import importlib.metadata as m, sys\n"
             f"print('versions', sys.version.split()[0], *[m.version(p) for p in {CHECKS!r}])")
    nb.cells.insert(0, nbformat.v4.new_code_cell(probe))
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(jupyter_path)
    try:
        NotebookClient(nb, timeout=900, kernel_name="colab",
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old
    return nb


def check_versions(out: str) -> None:
    colab = colab_versions()
    line = next(x for x in out.splitlines() if x.startswith("versions "))
    python, *versions = line.split()[1:]
    assert python.startswith("3.13")
    assert versions == [colab[p] for p in CHECKS], line


def test_demo_with_colabs_versions(colab_kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTDENOISE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    nb = run_in_colab_env(REPO / "colab" / "demo.ipynb", work, colab_kernel,
                          MODEL="bundled", SOURCE="example", PREVIEW_SECONDS=4)
    check_versions(text(nb))
    assert count(nb, "image/png") == 1 and count(nb, "text/html", "<audio") == 3
    assert (work / "denoised" / "histdenoise_results.zip").is_file()
    # the upload chooser of ipywidgets 7 (the demo's default outside Colab) displays
    nb = run_in_colab_env(REPO / "colab" / "demo.ipynb", work, colab_kernel, MODEL="bundled")
    assert count(nb, "application/vnd.jupyter.widget-view+json") == 1
    assert "No recordings chosen" in text(nb)


V7_UPLOAD = """
data = notebook.example_recording().read_bytes()
app.chooser.metadata = [{"name": "side A (v7).flac", "type": "audio/flac",
                         "size": len(data), "lastModified": 0}]
app.chooser.data = [data]
app.chooser._counter = 1  # what ipywidgets 7's frontend sends after an upload
print("denoised:", [r.input.name for r in app.denoise()], app.status.value)
"""


def test_notebook_1_with_colabs_versions(colab_kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("HISTDENOISE_HOME", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    nb = run_in_colab_env(REPO / "notebooks" / "01_denoise.ipynb", work, colab_kernel,
                          extra=V7_UPLOAD, PREVIEW_SECONDS=3)
    out = text(nb)
    check_versions(out)
    assert "denoised: ['side A (v7).flac'] Done: 1 file(s)" in out
    assert (work / "denoised" / "side A (v7)_denoised.flac").is_file()
    assert count(nb, "application/vnd.jupyter.widget-view+json") == 1  # the app
    assert not [o for o in outputs(nb) if o.get("output_type") == "error"]
