"""Run an exported network with ONNX Runtime, without TensorFlow or Keras.

This module and everything it imports need only numpy and onnxruntime, so that
``Denoiser(path, backend="onnxruntime")`` (and ``histdenoise denoise --backend
onnxruntime``) work in an environment without TensorFlow. The export itself is
`histdenoise.model.export`; the layout of an exported ONNX folder is::

    model.onnx   graph: "spectrogram" (batch, frames, 1025, 2) float32 -> "denoised" (same
                 shape, stage 2 of the network); batch and frames are dynamic. The model card
                 is in metadata_props["histdenoise_card"] (JSON), the export record in
                 metadata_props["histdenoise_export"].
    model.json   the same model card, plus an "export" key holding the export record.

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from histdenoise.card import CARD_NAME, ModelCard, parse_card
from histdenoise.errors import CheckpointError, HistdenoiseError, first_line

ONNX_NAME = "model.onnx"
"""File name of the graph in an exported ONNX folder."""
CARD_KEY = "histdenoise_card"
"""ONNX metadata_props key of the model card (JSON)."""
EXPORT_KEY = "histdenoise_export"
"""ONNX metadata_props key of the export record (JSON): versions, opset, measured error."""
INPUT_NAME = "spectrogram"
OUTPUT_NAME = "denoised"

_EXPORT_HINT = "make one with `histdenoise export MODEL --format onnx OUT`"


def find_onnx(source: str | os.PathLike) -> Path:
    """The ``.onnx`` file of an exported model: ``source`` itself or ``source/model.onnx``.

    Raises:
        CheckpointError: one line naming ``source`` when it is neither.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        onnx_file = path / ONNX_NAME
        if onnx_file.is_file():
            return onnx_file
        raise CheckpointError(
            f"{path}: not an exported ONNX model (no {ONNX_NAME} in this folder; {_EXPORT_HINT})"
        )
    if path.is_file():
        if path.suffix.lower() != ".onnx":
            raise CheckpointError(
                f"{path}: not an ONNX model (the onnxruntime backend takes a .onnx file or a "
                f"folder with {ONNX_NAME}; {_EXPORT_HINT})"
            )
        return path
    if os.sep in text or "/" in text or path.suffix:
        raise CheckpointError(f"{text}: no such file or folder")
    shipped = _shipped_onnx(text)
    if shipped is not None:
        return shipped
    raise CheckpointError(
        f"{text}: the onnxruntime backend needs an exported ONNX model (a folder with "
        f"{ONNX_NAME} or a .onnx file), not a registry name; make one with "
        f"`histdenoise export {text} --format onnx OUT`"
    )


def _shipped_onnx(name: str) -> Path | None:
    """``model.onnx`` of a registry model shipped with histdenoise (``bundled``), if any."""
    from histdenoise.registry import load_registry

    try:
        entry = load_registry().get(name)
    except HistdenoiseError:
        return None
    folder = entry.local_path() if entry is not None else None
    if folder is not None and (folder / ONNX_NAME).is_file():
        return folder / ONNX_NAME
    return None


def default_providers() -> list[str]:
    """CUDA if this onnxruntime build has it, then the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


def default_parallel() -> int:
    """Worker sessions an `OnnxNetwork` runs at once on the CPU: one per core, at most 4
    (each holds a chunk's activations, about 0.3 GB for the bundled model)."""
    return max(1, min(4, os.cpu_count() or 1))


def session_options(threads: int | None = None):
    """``onnxruntime.SessionOptions`` for the network: errors-only logging, ``threads``
    intra-op threads (onnxruntime's default, one per core, if None), and worker threads
    that sleep instead of spinning between operators (on a busy or shared CPU, spinning
    takes the time other processes, and other files in flight, need)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


class OnnxNetwork:
    """An exported network run by ``onnxruntime.InferenceSession``.

    Calling it maps a (batch, frames, bins, 2) float32 spectrogram (real and imaginary
    parts) to the denoised spectrogram of the same shape, as `histdenoise.engine` expects.

    On the CPU, work that can run side by side does: a call with several spectrograms
    (chunks, or the channels of a stereo file) is split over up to ``parallel`` worker
    sessions run at once, each with an equal share of the cores (one thread each on a
    2-core CPU), and so is a call made while another is in flight (files denoised in
    parallel); a lone one-spectrogram call runs on the main session with ``threads``
    threads. The bundled model's layers are small, so one thread per spectrogram wastes
    less time in synchronisation than several threads on one (`benchmarks/backends.py`).
    The worker sessions are made on first use.

    Args:
        source: an exported ONNX folder (with ``model.onnx``) or a ``.onnx`` file.
        providers: onnxruntime execution providers; `default_providers()` if None.
        threads: intra-op threads; onnxruntime's default (one per physical core) if None.
        parallel: worker sessions run at once; `default_parallel()` if None, 1 (never
            split) where a GPU provider is used.

    Attributes:
        path: the ``.onnx`` file.
        card: the model card (from the graph's metadata, else ``model.json`` beside it).
        export_info: the export record (opset, versions, measured error), or ``{}``.
        session: the ``onnxruntime.InferenceSession``.
    """

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        parallel: int | None = None,
    ):
        import onnxruntime as ort

        self.path = find_onnx(source)
        providers = providers or default_providers()
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=session_options(threads), providers=providers
            )
        except Exception as exc:
            raise CheckpointError(
                f"{self.path}: not a readable ONNX model ({first_line(exc)})"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[-1] != 2:
            shapes = [(i.name, i.shape) for i in inputs]
            raise CheckpointError(
                f"{self.path}: not a histdenoise network (expects inputs {shapes}, "
                "wanted one (batch, frames, bins, 2))"
            )
        self.input_name = inputs[0].name
        self.output_name = next((o.name for o in outputs if o.name == OUTPUT_NAME), outputs[0].name)
        self.bins = inputs[0].shape[2] if isinstance(inputs[0].shape[2], int) else None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.card = self._read_card(meta)
        try:
            self.export_info: dict = json.loads(meta.get(EXPORT_KEY, "{}"))
        except ValueError:
            self.export_info = {}
        if self.bins is not None and self.bins != self.card.stft.bins:
            raise CheckpointError(
                f"{self.path}: the graph takes {self.bins} frequency bins but the model card's "
                f"STFT gives {self.card.stft.bins}"
            )
        cpu_only = self.session.get_providers() == ["CPUExecutionProvider"]
        self.parallel = max(1, int(parallel or default_parallel())) if cpu_only else 1
        self._worker_threads = max(1, (os.cpu_count() or 1) // self.parallel)
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._made = 0
        self._callers = 0
        self._pool = (  # its threads start on first use
            ThreadPoolExecutor(self.parallel, thread_name_prefix="onnxruntime")
            if self.parallel > 1 else None
        )

    def _worker(self):
        """A worker session, made if fewer than `parallel` exist, else the next one free
        (waits)."""
        import onnxruntime as ort

        with self._lock:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                make = self._made < self.parallel
                self._made += make
        if make:
            return ort.InferenceSession(
                str(self.path), sess_options=session_options(self._worker_threads),
                providers=["CPUExecutionProvider"],
            )
        return self._idle.get()

    def _run_worker(self, x: np.ndarray) -> np.ndarray:
        session = self._worker()
        try:
            return session.run([self.output_name], {self.input_name: x})[0]
        finally:
            self._idle.put(session)

    def _read_card(self, meta: dict[str, str]) -> ModelCard:
        card_file = self.path.with_name(CARD_NAME)
        try:
            if CARD_KEY in meta:
                return parse_card(meta[CARD_KEY])
            if card_file.is_file():
                return parse_card(card_file.read_text(encoding="utf-8"))
        except (ValueError, TypeError, KeyError) as exc:
            where = f"{self.path} metadata" if CARD_KEY in meta else str(card_file)
            raise CheckpointError(f"{where}: invalid model card ({exc})") from None
        raise CheckpointError(
            f"{self.path}: no model card (neither metadata '{CARD_KEY}' nor {CARD_NAME} beside it)"
        )

    @contextlib.contextmanager
    def shared(self, callers: int):
        """Within this block ``callers`` threads may call the network at once (files
        denoised side by side): every call then runs on a worker session, a lone
        one-spectrogram call included. Otherwise such a call, made while the other caller
        happens to be between calls, takes the main session's threads on top of the
        workers' (3 threads on 2 cores). Blocks may nest; ``callers`` <= 1 changes nothing.
        """
        many = callers > 1 and self.parallel > 1
        with self._lock:
            self._callers += many
        try:
            yield self
        finally:
            with self._lock:
                self._callers -= many

    @property
    def providers(self) -> list[str]:
        """Execution providers the session uses, in order of preference."""
        return list(self.session.get_providers())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Denoise spectrograms: (batch, frames, bins, 2) float32 -> the same shape."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[-1] != 2 or (self.bins is not None and x.shape[2] != self.bins):
            raise ValueError(f"expected (batch, frames, {self.bins}, 2) input, got {x.shape}")
        with self._lock:
            self._in_flight += 1
            alone = self._in_flight == 1 and not self._callers
        try:
            if self.parallel == 1 or (alone and len(x) == 1):
                return self.session.run([self.output_name], {self.input_name: x})[0]
            if len(x) == 1:
                return self._run_worker(x)
            parts = np.array_split(x, min(len(x), self.parallel))
            return np.concatenate(list(self._pool.map(self._run_worker, parts)))
        finally:
            with self._lock:
                self._in_flight -= 1


__all__ = [
    "CARD_KEY",
    "EXPORT_KEY",
    "INPUT_NAME",
    "ONNX_NAME",
    "OUTPUT_NAME",
    "OnnxNetwork",
    "default_parallel",
    "default_providers",
    "find_onnx",
    "session_options",
]
