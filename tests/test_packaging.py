"""A fresh clone works as README says: the two commands, CI running the same test command,
dependency layers, requirements.txt for the notebooks, one public address, tests that read
nothing outside the repository, and notebooks that leave the checkout clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb")) + [REPO / "colab" / "demo.ipynb"]


def readme_commands() -> list[str]:
    """The commands of README's first code block, comments removed."""
    block = re.search(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.strip().splitlines()]


def requirement_names(lines) -> list[str]:
    return [re.split(r"[<>=\[; ]", line.strip(), maxsplit=1)[0].lower() for line in lines
            if line.strip() and not line.strip().startswith("#")]


def test_readme_starts_with_the_two_commands():
    install, tests = readme_commands()
    assert install.startswith("pip install -e . && histdenoise denoise examples/k80_78rpm.flac")
    assert tests == 'pip install -e ".[dev]" && python -m pytest -q -n 2 --dist loadfile'


def test_ci_runs_exactly_readmes_test_command():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[-1] == readme_commands()[1]
    assert not [line for line in lines if "pytest" in line or "pip " in line][:-1]


def test_dependency_layers():
    core = requirement_names(PYPROJECT["project"]["dependencies"])
    extras = {k: requirement_names(v) for k, v in
              PYPROJECT["project"]["optional-dependencies"].items()}
    assert {"tensorflow", "keras", "onnxruntime", "soundfile"} <= set(core)
    assert set(extras) >= {"notebooks", "training", "export", "dev"}
    assert "ipywidgets" in extras["notebooks"] and "music21" in extras["training"]
    assert {"tf2onnx", "onnx"} <= set(extras["export"])
    assert extras["dev"][0] == "histdenoise" and "pytest" in extras["dev"]
    tools = {"pytest", "ruff", "playwright", "voila", "nbclient", "tf2onnx", "onnx", "music21",
             "pyfluidsynth", "noisereduce", "tensorboard"}
    assert not tools & (set(core) | set(extras["notebooks"]))
    every = list(PYPROJECT["project"]["dependencies"])
    for group in PYPROJECT["project"]["optional-dependencies"].values():
        every += group
    specs = [r.split(";")[0] for r in every]
    assert not [r for r in specs if "<" in r or "==" in r or "~=" in r], "no upper pins"


def test_requirements_txt_is_core_plus_notebooks_only():
    text = (REPO / "requirements.txt").read_text().splitlines()
    expected = (PYPROJECT["project"]["dependencies"]
                + PYPROJECT["project"]["optional-dependencies"]["notebooks"])
    assert [line for line in text if line and not line.startswith("#")] == expected
    assert "ipywidgets>=7.6" in text  # Colab ships 7.7.1 and has it imported


def test_public_address_is_set_once_and_used_everywhere():
    url = PYPROJECT["project"]["urls"]["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url)
    slug = url.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{slug}/blob/main/"
    for path in NOTEBOOKS:
        rel = path.relative_to(REPO).as_posix()
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert f"({colab}{rel})" in source, f"{rel}: badge"
        assert f'REPOSITORY = "{url}"' in source, f"{rel}: clone address"
        assert set(re.findall(r"github(?:\.com)?/([\w.-]+/[\w.-]+)", source)) == {slug}, rel
    readme = (REPO / "README.md").read_text()
    others = {m for m in re.findall(r"github(?:\.com)?/([\w.-]+/[\w-]+)", readme)
              if "histdenoise" in m}
    assert others == {slug}, others


def test_no_test_reads_outside_the_repository():
    assert (REPO / "tests" / "reference" / "small_checkpoint" / "checkpoint.index").is_file()
    outside = ("REPO.parent", "parent.parent.parent", '"shared"', "/work/")
    for path in (REPO / "tests").glob("*.py"):
        if path.name != "test_packaging.py":
            text = path.read_text()
            assert not [s for s in outside if s in text], path.name


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="not a git checkout")
def test_notebook_work_folders_are_ignored_by_git():
    """Whatever a notebook writes beside itself (its default folders, a clone of the
    repository when histdenoise is not installed) is ignored, so the checkout stays clean."""
    written = ["histdenoise-src/setup.py", "uploads/a.wav"]
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            found = re.findall(r'^(?:\w+_DIR|CORPUS|TESTSET) = "([^"]+)"', cell.source, re.M)
            written += [f"{value}/x" for value in found]
    for path in NOTEBOOKS:
        folder = path.parent.relative_to(REPO).as_posix()
        for rel in written:
            out = subprocess.run(["git", "check-ignore", "-q", f"{folder}/{rel}"], cwd=REPO)
            assert out.returncode == 0, f"{folder}/{rel} would show up in git status"
