"""Export the network for other runtimes: ONNX and TensorFlow SavedModel.

Only what inference needs is exported: the spectrogram ``(batch, frames, bins, 2)`` float32
(real and imaginary parts, ``bins`` = 1025) in, the stage-2 estimate of the same shape out,
with the batch and frames axes dynamic. ``OUT`` is always a folder:

ONNX (``format="onnx"``)::

    OUT/model.onnx   input "spectrogram", output "denoised" (written from the weights by
                     `histdenoise.model.onnx_graph`: channels-first inside, no conditionals,
                     a third of a second to load); the model card as JSON in
                     metadata_props["histdenoise_card"], the export record in
                     metadata_props["histdenoise_export"]
    OUT/model.json   the model card plus "export": the export record

SavedModel (``format="savedmodel"``)::

    OUT/saved_model.pb, OUT/variables/, OUT/assets/, OUT/fingerprint.pb
                     signature "serving_default" (and the function ``serve``):
                     spectrogram -> {"denoised": ...}
    OUT/model.json   the model card plus "export"

The export record holds the format, opset, software versions, the frame counts and
batch size the export was checked with and the largest difference from TensorFlow found
there, relative to the largest output magnitude. Run an ONNX export without TensorFlow
with `histdenoise.onnx_backend.OnnxNetwork`, or ``Denoiser(OUT, backend="onnxruntime")``.

The shipped ``checkpoints/bundled/model.onnx`` is regenerated from
``checkpoints/bundled/model.weights.h5`` (after retraining) with one command::

    python -m histdenoise.model.export bundled

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from histdenoise.card import CARD_NAME
from histdenoise.errors import ExportError, first_line
from histdenoise.files import atomic_folder
from histdenoise.onnx_backend import (
    CARD_KEY,
    EXPORT_KEY,
    INPUT_NAME,
    ONNX_NAME,
    OUTPUT_NAME,
)

FORMATS = ("onnx", "savedmodel")
"""Export formats `export_model` writes."""

OPSET = 17
"""ONNX opset of the exported graph (onnxruntime >= 1.13 runs it)."""

VERIFY_TOLERANCE = 1e-3
"""Largest accepted difference from TensorFlow, relative to max |output|, at export time."""


@dataclass
class ExportRecord:
    """What an export is and how it was checked (stored as ``"export"`` in model.json).

    Attributes:
        format: ``"onnx"`` or ``"savedmodel"``.
        input: input name and shape, ``None`` for the dynamic batch and frames axes.
        output: output name and shape.
        opset: ONNX opset (ONNX only).
        software: versions of the exporting software.
        seconds: wall-clock time of conversion and check, s.
        checked_frames: frame counts of the check, on random input.
        checked_batch: batch size of the check.
        max_error: largest |export - TensorFlow| over the check, relative to the largest
            |TensorFlow output|; None when not checked.
        created: ISO 8601 UTC time of writing.
    """

    format: str
    input: dict
    output: dict
    opset: int | None = None
    software: dict = field(default_factory=dict)
    seconds: float = 0.0
    checked_frames: list[int] = field(default_factory=list)
    checked_batch: int = 0
    max_error: float | None = None
    created: str = ""


def export_model(
    source,
    out: str | os.PathLike,
    format: str = "onnx",
    overwrite: bool = False,
    *,
    verify: bool = True,
) -> Path:
    """Export a network for inference, with its model card.

    Args:
        source: anything `histdenoise.model.loading.load_model` takes: a registry name
            (``"bundled"``), a checkpoint path, a native model folder, a Keras model, or a
            `histdenoise.card.LoadedModel`.
        out: the output folder (see the module docstring for its layout). It is assembled
            under a temporary name and renamed when complete.
        format: ``"onnx"`` or ``"savedmodel"``.
        overwrite: replace an existing ``out``; otherwise an existing ``out`` is an error.
        verify: run the export on random spectrograms of two frame counts and compare it
            with TensorFlow; refuse it if it differs by more than `VERIFY_TOLERANCE` of the
            largest output magnitude.

    Returns:
        ``out``.

    Raises:
        ExportError: bad format, ``out`` exists, conversion or check failed.
        CheckpointError, RegistryError: ``source`` cannot be loaded.
    """
    if format not in FORMATS:
        raise ExportError(f"{format}: unknown export format (choose from {', '.join(FORMATS)})")
    out = Path(out).expanduser()
    if out.suffix.lower() == ".onnx":
        raise ExportError(
            f"{out}: OUT is a folder (it gets {ONNX_NAME} and {CARD_NAME}); "
            "give a name without .onnx"
        )
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists (use --overwrite to replace it)")

    from histdenoise.model.loading import load_model

    model, card = load_model(source)
    if card.config is None:
        raise ExportError(
            f"{getattr(model, 'name', source)}: no network config "
            "(build it with histdenoise.build_network or load it with load_model)"
        )
    bins = int(model.input_shape[2])
    depth = card.config.depth
    # 2**depth frames (the U-Net's down-sampling) and an odd count that exercises padding
    frames = [2**depth, 2**depth + 3]
    t0 = time.perf_counter()
    record = ExportRecord(
        format=format,
        input={"name": INPUT_NAME, "shape": [None, None, bins, 2], "dtype": "float32"},
        output={"name": OUTPUT_NAME, "shape": [None, None, bins, 2], "dtype": "float32"},
        opset=OPSET if format == "onnx" else None,
        software=_software(format),
    )
    card_dict = card.to_dict()
    with atomic_folder(out) as tmp:
        if format == "onnx":
            run = _write_onnx(model, card.config, tmp, source)
        else:
            run = _write_savedmodel(model, bins, tmp, source)
        if verify:
            record.checked_frames, record.checked_batch = frames, 2
            record.max_error = _check(model, run, bins, frames, batch=2)
            if not record.max_error <= VERIFY_TOLERANCE:
                raise ExportError(
                    f"{out}: the {format} export differs from TensorFlow by "
                    f"{record.max_error:.2e} of the largest output (limit {VERIFY_TOLERANCE:g})"
                )
        record.seconds = round(time.perf_counter() - t0, 2)
        record.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if format == "onnx":
            _add_metadata(tmp / ONNX_NAME, card_dict, asdict(record))
        text = json.dumps({**card_dict, "export": asdict(record)}, indent=2) + "\n"
        (tmp / CARD_NAME).write_text(text, encoding="utf-8")
    return out


def read_export(path: str | os.PathLike) -> dict:
    """The ``model.json`` of an export folder: the card plus ``"export"`` (a dict)."""
    path = Path(path)
    card_file = path / CARD_NAME if path.is_dir() else path.with_name(CARD_NAME)
    try:
        return json.loads(card_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{card_file}: no model card") from None
    except ValueError as exc:
        raise ExportError(f"{card_file}: invalid model card ({exc})") from None


# --------------------------------------------------------------------------- helpers
def _software(format: str) -> dict[str, str]:
    import keras
    import tensorflow as tf

    from histdenoise import __version__

    versions = {"histdenoise": __version__, "tensorflow": tf.__version__}
    versions["keras"] = keras.__version__
    if format == "onnx":
        import onnx
        import onnxruntime

        versions["onnx"] = onnx.__version__
        versions["onnxruntime"] = onnxruntime.__version__
    return versions


def _serving_function(model, bins: int):
    """``tf.function`` (batch, frames, bins, 2) -> {"denoised": stage 2}, float32."""
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, bins, 2], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(spectrogram):
        stage2 = model(spectrogram, training=False)[0]
        return {OUTPUT_NAME: tf.cast(stage2, tf.float32)}

    return serve, spec


def _write_onnx(model, config, folder: Path, source):
    """Write ``folder/model.onnx`` (`histdenoise.model.onnx_graph`: NCHW, no ``If`` nodes);
    return a runner for the check."""
    import onnx

    from histdenoise.model.onnx_graph import build_onnx
    from histdenoise.onnx_backend import session_options

    try:
        proto = build_onnx(model, config, OPSET)
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"{source}: ONNX conversion failed ({first_line(exc)})") from None
    proto.doc_string = "histdenoise two-stage U-Net: denoised spectrogram (stage 2)"
    path = folder / ONNX_NAME
    onnx.save(proto, str(path))
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(path), session_options(), providers=["CPUExecutionProvider"]
    )
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def _write_savedmodel(model, bins: int, folder: Path, source):
    """Write a SavedModel into ``folder``; return a runner (the reloaded model) for the check."""
    import tensorflow as tf
    from keras.export import ExportArchive

    serve, spec = _serving_function(model, bins)
    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=[spec])
    try:
        archive.write_out(str(folder), verbose=False)
    except Exception as exc:
        raise ExportError(f"{source}: SavedModel export failed ({first_line(exc)})") from None
    loaded = tf.saved_model.load(str(folder))
    return lambda x: loaded.serve(tf.constant(x))[OUTPUT_NAME].numpy()


def _check(model, run, bins: int, frames: list[int], batch: int) -> float:
    """Largest |run(x) - model(x)| / max |model(x)| over random inputs of ``frames`` frames."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for n in frames:
        x = rng.standard_normal((batch, n, bins, 2)).astype(np.float32)
        expected = np.asarray(model(x, training=False)[0], dtype=np.float32)
        got = np.asarray(run(x), dtype=np.float32)
        if got.shape != expected.shape:
            return float("inf")
        scale = float(np.max(np.abs(expected))) or 1.0
        worst = max(worst, float(np.max(np.abs(got - expected))) / scale)
    return worst


def _add_metadata(path: Path, card: dict, record: dict) -> None:
    """Store the card and the export record as ONNX metadata_props."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {CARD_KEY: json.dumps(card), EXPORT_KEY: json.dumps(record)})
    onnx.save(proto, str(path))



def refresh_shipped_onnx(name: str = "bundled") -> tuple[Path, float]:
    """Rewrite the ``model.onnx`` shipped beside a registry model's weights from those
    weights (after retraining), checked against TensorFlow as `export_model` checks.

    Returns:
        The ``model.onnx`` path and the export's largest relative difference from
        TensorFlow.
    """
    import shutil
    import tempfile

    from histdenoise.registry import load_registry

    entry = load_registry().get(name)
    folder = entry.local_path() if entry is not None else None
    if folder is None or not (folder / "model.weights.h5").is_file():
        raise ExportError(f"{name}: not a registry model shipped with its weights")
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        out = export_model(folder, Path(tmp) / "export", "onnx")
        error = read_export(out)["export"]["max_error"]
        shutil.move(str(out / ONNX_NAME), str(folder / f".{ONNX_NAME}.part"))
        os.replace(folder / f".{ONNX_NAME}.part", folder / ONNX_NAME)
    return folder / ONNX_NAME, error


def main(argv: list[str] | None = None) -> int:
    """``python -m histdenoise.model.export [NAME]``: `refresh_shipped_onnx` (default bundled)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    path, error = refresh_shipped_onnx(args[0] if args else "bundled")
    print(f"{path}: written, largest difference from TensorFlow {error:.2e} of max |output|")
    return 0


__all__ = [
    "FORMATS",
    "OPSET",
    "ExportRecord",
    "export_model",
    "read_export",
    "refresh_shipped_onnx",
]


if __name__ == "__main__":
    raise SystemExit(main())
