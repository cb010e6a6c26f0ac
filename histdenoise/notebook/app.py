"""The small denoising app of the notebooks (`DenoiseApp`), and `denoise_files`, the
same work for scripts: both run files through `histdenoise.runner`.

Must not import TensorFlow or Keras at module level (the model is loaded when used).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from html import escape
from pathlib import Path

from histdenoise.dehum import DEHUM_MODES
from histdenoise.notebook.widgets import (
    PREVIEW_SECONDS,
    _download_link,
    example_recording,
    in_colab,
    preview_seconds,
    progress_bar,
    result_view,
    save_uploads,
    upload,
    upload_widget,
)


class DenoiseApp:
    """A small denoising interface: model, upload, strength, stereo, Denoise button,
    progress bar, and per file the spectrograms, players and a download link.

    Display it with ``display(app.ui)`` (or just ``app`` as a cell's last line).
    ``app.denoise(paths)`` does what the button does, for scripts and tests. The button
    denoises ``files`` and what was uploaded with the interface's chooser; with neither it
    says so (it never picks the example by itself). In Colab the chooser is hidden (its
    widget fails there for files over about 1 MB): files come from Colab's own dialog
    (`ask_for_recordings`) through ``files``.

    Args:
        model: registry name or checkpoint path selected at start.
        out_dir: where results are written.
        upload_dir: where uploaded files are saved.
        seconds: length of the previews, seconds (at most `MAX_PREVIEW_SECONDS`).
        files: recordings chosen before (Colab's upload dialog, or the example).
    """

    def __init__(
        self,
        model: str | None = None,
        out_dir: str | Path = "denoised",
        upload_dir: str | Path = "uploads",
        seconds: float | None = PREVIEW_SECONDS,
        files: list[str | Path] | None = None,
    ):
        import ipywidgets as w

        from histdenoise.registry import DEFAULT_MODEL, list_models

        self.out_dir, self.upload_dir = Path(out_dir), Path(upload_dir)
        self.seconds = preview_seconds(seconds)
        self.files = [Path(f) for f in files or []]
        names = list_models()
        model = model or DEFAULT_MODEL
        if model not in names:
            names.append(model)
        self._denoisers: dict[str, object] = {}
        self.results: list = []
        self.model = w.Dropdown(options=names, value=model, description="Model")
        self.chooser = w.FileUpload(accept="audio/*,.wav,.flac,.ogg,.mp3,.aif,.aiff",
                                    multiple=True, description="Upload")
        self.strength = w.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05,
                                      description="Strength")
        self.stereo = w.Checkbox(value=True, description="Keep stereo")
        self.dehum = w.Dropdown(options=list(DEHUM_MODES), value="auto", description="Hum")
        self.dethump = w.Checkbox(value=True, description="Thumps")
        self.button = w.Button(description="Denoise", button_style="primary", icon="magic")
        self.progress, self._callback = progress_bar()
        if in_colab():
            self.chooser.layout.display = "none"
        chosen = ", ".join(escape(f.name) for f in self.files)
        self.status = w.HTML(f"Ready: {chosen}." if chosen else (
            "Upload recordings with the cell above, then press Denoise." if in_colab()
            else "Upload recordings, then press Denoise."))
        self.output = w.VBox()
        self.button.on_click(lambda _: self.denoise())
        self.ui = w.VBox([
            w.HBox([self.model, self.chooser]),
            w.HBox([self.strength, self.stereo, self.dehum, self.dethump]),
            w.HBox([self.button, self.progress]),
            self.status,
            self.output,
        ])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.ui)

    def denoiser(self):
        """The `Denoiser` for the selected model (loaded, or downloaded, once)."""
        from histdenoise.denoiser import Denoiser

        name = self.model.value
        if name not in self._denoisers:
            self.status.value = f"Loading model {escape(name)}..."
            loaded = Denoiser(name)
            with contextlib.suppress(Exception):  # the first file meets and reports it
                loaded.warm_up()  # TensorFlow traces here, under this message, not in the bar
            self._denoisers[name] = loaded
            self.status.value = f"Model {escape(name)} ready ({loaded.backend}); denoising..."
        return self._denoisers[name]

    def denoise(self, paths: list[str | Path] | None = None) -> list:
        """Denoise ``paths`` (default: ``files`` and the uploaded files) and show the
        results; errors are shown one line per file, never raised."""
        import ipywidgets as w

        if paths is None:
            paths = self.files + save_uploads(self.chooser.value, self.upload_dir)
        if not paths:
            self.status.value = ("Nothing to denoise: upload recordings first "
                                 "(or choose the example).")
            return []
        self.button.disabled = True
        self.status.value = f"Denoising {len(paths)} file(s)..."
        try:
            results, problems = denoise_files(
                self.denoiser,
                paths,
                self.out_dir,
                strength=self.strength.value,
                mono=not self.stereo.value,
                dehum=self.dehum.value,
                dethump="auto" if self.dethump.value else "off",
                progress=self._callback,
            )
        finally:
            self.button.disabled = False
        views = []
        for r in results:
            png, players = result_view(r, self.seconds)
            views.append(w.VBox([
                w.HTML(f"<h4>{escape(Path(r.input).name)}</h4>"),
                w.Image(value=png, format="png"),
                w.HTML(players),
                w.HTML(_download_link(r.denoised)),
            ]))
        self.output.children = tuple(views)
        done = f"Done: {len(results)} file(s) in {self.out_dir}/."
        errors = "".join(f"<br><span style='color:#b00'>{escape(p)}</span>" for p in problems)
        self.status.value = (done if results else "Nothing denoised.") + errors
        self.results = results
        return results


def denoise_files(
    denoiser,
    paths: list[str | Path],
    out_dir: str | Path = "denoised",
    *,
    strength: float = 1.0,
    mono: bool = False,
    dehum: str = "auto",
    dethump: str = "auto",
    progress: Callable[[float, float], None] | None = None,
) -> tuple[list, list[str]]:
    """Denoise files into ``out_dir`` (existing results replaced), one failure not
    stopping the others.

    Args:
        denoiser: a `Denoiser`, a model name or path, or a function returning a Denoiser
            (called once, so loading errors are reported like file errors).
        strength, mono, dehum, dethump: as in `histdenoise.DenoiseConfig`.
        progress: callback in seconds of audio per file; a tqdm bar when None.

    Returns:
        ``(results, problems)``: `FileResult` per good file, one line per bad one.
    """
    from histdenoise.denoiser import DenoiseConfig, Denoiser
    from histdenoise.errors import HistdenoiseError, first_line
    from histdenoise.runner import Job, RunSummary, pending, plan_run, run_files

    try:
        if callable(denoiser) and not isinstance(denoiser, Denoiser):
            denoiser = denoiser()
        elif not isinstance(denoiser, Denoiser):
            denoiser = Denoiser(denoiser)
    except HistdenoiseError as exc:
        return [], [first_line(exc)]
    jobs = [Job(Path(p)) for p in paths]
    plan = plan_run(jobs, Path(out_dir))
    if plan.clashes:  # e.g. a.wav and a.flac uploaded together: name by the whole name
        plan = plan_run(jobs, Path(out_dir), keep_extension=True)
    summary = RunSummary(errors=plan.errors + plan.clashes)
    if not plan.clashes:
        todo, _ = pending(plan.files)
        settings = DenoiseConfig(strength=strength, mono=mono, dehum=dehum,
                                 dethump=dethump)
        run_files(denoiser, todo, settings, summary, overwrite=True,
                  file_progress=_file_bar if progress is None else
                  lambda item, slot: contextlib.nullcontext(progress))
    return summary.results, summary.errors


@contextlib.contextmanager
def _file_bar(item, slot: int):
    """A tqdm bar for one file of `denoise_files`; yields its progress callback."""
    from tqdm.auto import tqdm

    from histdenoise.denoiser import SECONDS_BAR

    bar = tqdm(total=1, unit="s", desc=item.job.path.name, bar_format=SECONDS_BAR)

    def callback(done: float, total: float) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield callback
    finally:
        bar.close()


def ask_for_recordings(
    source: str = "upload", folder: str | Path = "uploads", chooser: bool = True
) -> list[Path]:
    """Recordings to work on: ``"example"`` gives the shipped example; ``"upload"`` opens
    Colab's own upload dialog in Colab, or elsewhere (with ``chooser``) shows a file
    chooser and returns a list that fills as files are chosen (run the next cell
    afterwards). Never falls back to the example by itself."""
    if source == "example":
        return [example_recording()]
    if source != "upload":
        raise ValueError(f"source must be 'example' or 'upload', not {source!r}")
    if in_colab():
        return upload(folder)
    if not chooser:
        print("Choose recordings with the interface's Upload button below.")
        return []
    from IPython.display import display

    chosen: list[Path] = []
    display(upload_widget(chosen.extend, folder))
    print("Choose recordings above, then run the next cell.")
    return chosen
