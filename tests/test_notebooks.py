"""Every notebook runs headless end to end (nbclient) with fast settings, and the
committed notebooks are clean Colab form notebooks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_training import corpus  # noqa: F401  (a tiny four-piece corpus fixture)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb")) + [REPO / "colab" / "demo.ipynb"]
ALLOWED_METADATA = {"kernelspec", "language_info", "colab", "accelerator"}


def load(path: Path):
    return nbformat.read(path, as_version=4)


def set_params(nb, **values) -> None:
    """Replace the values of ``NAME = ...  #@param`` lines (as Colab's form fields do)."""
    found = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        for i, line in enumerate(lines):
            m = re.match(r"^(\w+) = .*?(\s+#@param.*)$", line)
            if m and m.group(1) in values:
                lines[i] = f"{m.group(1)} = {values[m.group(1)]!r}{m.group(2)}"
                found.add(m.group(1))
        cell.source = "\n".join(lines)
    assert found == set(values), f"no form field for {set(values) - found}"


def run(path: Path, cwd: Path, twice: bool = False, **params):
    """Execute a copy of the notebook in ``cwd`` (``twice``: all cells, then all again in
    the same kernel, as *Run all* run twice does); returns the executed notebook."""
    nb = load(path)
    set_params(nb, **params)
    if twice:
        nb.cells = nb.cells + [nbformat.from_dict(dict(c)) for c in nb.cells]
        for i, cell in enumerate(nb.cells):
            cell.id = f"cell-{i}"
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def count(nb, mime: str, needle: str | None = None) -> int:
    total = 0
    for o in outputs(nb):
        data = o.get("data", {})
        if mime in data:
            total += 1 if needle is None else str(data[mime]).count(needle)
    return total


def text(nb) -> str:
    parts = []
    for o in outputs(nb):
        parts.append(o.get("text", ""))
        parts.append(str(o.get("data", {}).get("text/plain", "")))
    return "".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_are_clean_form_notebooks(path):
    nb = load(path)
    nbformat.validate(nb)
    assert set(nb.metadata) <= ALLOWED_METADATA
    rel = path.relative_to(REPO).as_posix()
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "colab-badge.svg" in first.source
    assert f"/blob/main/{rel})" in first.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "stale outputs"
            assert cell.source.startswith("#@title "), cell.source[:60]
            assert cell.metadata.get("cellView") == "form"
            assert "def " not in cell.source and "class " not in cell.source, (
                "notebook helpers belong in the library")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch folder and a private model cache for the kernel."""
    monkeypatch.setenv("HISTDENOISE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HISTDENOISE_REGISTRY", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    return work


def serve_published_model(server, zip_bytes: bytes, tmp_path, monkeypatch) -> None:
    """Point the registry's moliner2022 entry at ``zip_bytes`` served from 127.0.0.1 (the
    bundled entry at this checkout's folder), through ``HISTDENOISE_REGISTRY``."""
    server.files["/checkpoint.zip"] = zip_bytes
    shipped = json.loads((REPO / "checkpoints" / "registry.json").read_text())
    entry = shipped["models"]["moliner2022"]
    entry["urls"] = [{"url": server.url("/checkpoint.zip")}]
    entry["sha256"] = hashlib.sha256(zip_bytes).hexdigest()
    entry["size"] = len(zip_bytes)
    shipped["models"]["bundled"]["path"] = str(REPO / "checkpoints" / "bundled")
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps(shipped))
    monkeypatch.setenv("HISTDENOISE_REGISTRY", str(registry))


def test_colab_demo_downloads_the_published_weights_and_denoises(
    workdir, tmp_path, monkeypatch, server, small_zip_bytes
):
    """The demo's default model: the moliner2022 entry downloaded over HTTP (here the
    reference's small checkpoint, packed like the release, from 127.0.0.1), the example
    chosen, players, spectrograms, zip."""
    serve_published_model(server, small_zip_bytes, tmp_path, monkeypatch)

    nb = run(REPO / "colab" / "demo.ipynb", workdir, PREVIEW_SECONDS=4, SOURCE="example")
    assert [p for p, _ in server.requests] == ["/checkpoint.zip"]
    assert count(nb, "image/png") == 1
    assert count(nb, "text/html", "<audio") == 3
    assert "histdenoise_results.zip" in str([o.get("data", {}) for o in outputs(nb)])
    archive = workdir / "denoised" / "histdenoise_results.zip"
    import zipfile

    assert sorted(zipfile.ZipFile(archive).namelist()) == [
        "k80_78rpm_denoised.flac", "k80_78rpm_report.json", "k80_78rpm_residual.flac"]


def test_notebook_1_interface_and_code_path(workdir):
    nb = run(REPO / "notebooks" / "01_denoise.ipynb", workdir, DENOISE_EXAMPLE=True,
             PREVIEW_SECONDS=3)
    assert count(nb, "application/vnd.jupyter.widget-view+json") == 1  # the app
    assert count(nb, "image/png") == 1 and count(nb, "text/html", "<audio") == 3
    assert (workdir / "denoised" / "k80_78rpm_denoised.flac").is_file()
    states = nb.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    html = [s["state"].get("value", "") for s in states.values()
            if s["model_name"] == "HTMLModel"]
    assert any(v.startswith("Done: 1 file(s)") for v in html)
    assert sum(v.count("<audio") for v in html) == 3
    assert any(s["model_name"] == "ImageModel" for s in states.values())


def test_notebook_4_trains_and_plots_and_runs_again(workdir, corpus):  # noqa: F811
    nb = run(REPO / "notebooks" / "04_train.ipynb", workdir, twice=True, CORPUS=str(corpus),
             BUILD_CORPUS=False, STEPS=4, MINUTES=3, WIDTH=4, DEPTH=2)
    out = text(nb)
    assert out.count("train      2 pieces") == 2 and out.count("model saved in") == 2
    assert "step 4 (finished, 4 this run)" in out and "step 4 (finished, 0 this run)" in out
    assert count(nb, "image/png") == 4 and count(nb, "text/html", "<audio") == 6
    assert (workdir / "runs" / "notebook" / "model" / "model.json").is_file()


def test_notebook_5_evaluates_against_baselines(workdir, corpus):  # noqa: F811
    nb = run(REPO / "notebooks" / "05_evaluate.ipynb", workdir, CORPUS=str(corpus),
             BUILD_CORPUS=False, EXCERPTS_PER_PIECE=1, EXCERPT_SECONDS=3.0)
    out = text(nb)
    assert "3 noisy excerpts" in out and "noisereduce" in out
    assert count(nb, "image/png") == 2


def test_gpu_runtime_is_asked_only_where_it_helps():
    wants = {p.relative_to(REPO).as_posix() for p in NOTEBOOKS
             if load(p).metadata.get("accelerator") == "GPU"}
    assert wants == {"colab/demo.ipynb", "notebooks/04_train.ipynb"}


def test_teaching_notebooks_explain_their_plots():
    words = {"02_degradations": ["Reading the spectrograms", "SNR_DB"],
             "03_inside_the_model": ["SI-SDR", "first convolution of each stage", "mask"],
             "04_train": ["loss", "overfitting", "SI-SDR improvement"],
             "05_evaluate": ["SI-SDR", "improvement", "Bars above the line"]}
    for name, needed in words.items():
        nb = load(REPO / "notebooks" / f"{name}.ipynb")
        prose = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
        assert all(w in prose for w in needed), name
        assert "every layer" not in prose
        assert sum(c.cell_type == "markdown" for c in nb.cells) >= 3, name


@pytest.fixture
def no_fluidsynth(tmp_path, monkeypatch):
    """Kernels that cannot load libfluidsynth, as on a machine without FluidSynth: a
    module in front of pyfluidsynth raising what it raises there."""
    import os

    shim = tmp_path / "no-fluidsynth"
    shim.mkdir()
    (shim / "fluidsynth.py").write_text(
        'raise ImportError("Couldn\'t find the FluidSynth library.")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(shim), *filter(None, [os.environ.get("PYTHONPATH")])]))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_runs_twice_with_its_defaults_without_fluidsynth(
    path, workdir, tmp_path, monkeypatch, server, small_zip_bytes, no_fluidsynth
):
    """Run all, twice in the same kernel, every setting at its default (the demo's
    published model comes from 127.0.0.1). Without FluidSynth, notebooks 4 and 5 say in
    one line what to install and skip what needs a corpus."""
    serve_published_model(server, small_zip_bytes, tmp_path, monkeypatch)

    nb = run(path, workdir, twice=True)
    out = text(nb)
    if path.name in ("04_train.ipynb", "05_evaluate.ipynb"):
        lines = [line for line in out.splitlines() if "apt-get install fluidsynth" in line]
        assert len(lines) == 2 and "libfluidsynth" in lines[0], out  # once per run
        assert out.count("the cells below are skipped") == 2
    if path.name in ("demo.ipynb", "01_denoise.ipynb"):
        assert not (workdir / "denoised").exists()  # no upload: nothing, not the example
    if path.name == "02_degradations.ipynb":
        assert count(nb, "image/png") == 2 * 7  # six types + all at once, per run
        assert count(nb, "text/html", "<audio") == 2 * (1 + 2 * 6 + 1)
        for name in ("hiss", "clicks", "crackle", "thumps", "hum", "rumble"):
            assert str(outputs(nb)).count(f"<h3>{name}</h3>") == 2
    if path.name == "03_inside_the_model.ipynb":
        assert count(nb, "image/png") == 2 * 3  # encoding, stages, masks
        assert count(nb, "text/html", "<audio") == 2 * 3
        errors = [float(e) for e in re.findall(r"round trip: max error (\S+)", out)]
        assert len(errors) == 2 and max(errors) < 1e-5
        assert out.count("71,408,196 parameters") == 2 and "mask: (" in out
        assert len(re.findall(r"SI-SDR\s+(-?\d+\.\d+) dB", out)) == 6
