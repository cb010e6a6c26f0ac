"""`Denoiser`: arrays and files in, denoised audio and the residual (exactly what was
removed) out.

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from histdenoise.audio import (
    PCM_BITS,
    AtomicWriter,
    AudioError,
    AudioInfo,
    OutputError,
    OutputFormat,
    ReadState,
    Resampler,
    choose_output,
    count_inexact_written,
    off_grid,
    probe,
    read_blocks,
    split_exact,
    to_float,
)
from histdenoise.card import CARD_NAME, WEIGHTS_NAME
from histdenoise.dehum import DEHUM_MODES, DETECT_SECONDS, HumEstimate, HumRemover, detect_hum
from histdenoise.dethump import DETHUMP_MODES, ThumpEstimate, ThumpRemover, detect_thumps
from histdenoise.engine import ChunkConfig, StreamingEngine
from histdenoise.errors import HistdenoiseError
from histdenoise.files import os_error_cause, remove_stale_temporaries, temp_path
from histdenoise.registry import DEFAULT_MODEL
from histdenoise.runner import output_names
from histdenoise.stft import StftConfig

DETECT_RATE = 4000
"""Hz at which `Disturbances.find` looks for hum (harmonics up to 1.5 kHz) and thumps."""

Progress = Callable[[float, float], None]
"""Called as ``progress(seconds_done, seconds_total)`` while audio is processed."""

SECONDS_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{elapsed}<{remaining}]"
"""tqdm ``bar_format`` for progress counted in seconds of audio."""

BLOCK_SECONDS = 10.0
"""Seconds of audio read from a file at a time."""

BACKENDS = ("auto", "tensorflow", "onnxruntime")
"""Ways to run the network: TensorFlow (any checkpoint), ONNX Runtime (an ONNX export), or
``auto``: ONNX Runtime where the model has an ONNX graph of the same weights (the shipped
``bundled`` model does), onnxruntime is installed and no TensorFlow-only option
(``precision``, ``jit``) is asked for; TensorFlow otherwise (see `resolve_backend`)."""
PRECISIONS = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class DenoiseConfig:
    """What to do to a recording.

    Attributes:
        strength: 0..1; output = input - strength * residual.
        mono: downmix to one channel first (as the authors' tool did).
        format: output major format (``WAV``, ``FLAC``, ...); the input's if None.
        subtype: output subtype (``PCM_16``, ``FLOAT``, ...); the input's if None.
        dehum: mains hum removal before the network (`histdenoise.dehum`): ``auto``
            (look for 50- and 60-Hz hum, remove it where found), ``off``, or ``50``/``60``
            (that mains frequency, up to 4 % off, with a lower bar for presence).
        dethump: removal of thumps that repeat every turn of the disc, before the network
            (`histdenoise.dethump`): ``auto`` (where found) or ``off``.
    """

    strength: float = 1.0
    mono: bool = False
    format: str | None = None
    subtype: str | None = None
    dehum: str = "auto"
    dethump: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be within 0..1, got {self.strength}")
        if self.dehum not in DEHUM_MODES:
            raise ValueError(f"dehum must be one of {DEHUM_MODES}, got {self.dehum!r}")
        if self.dethump not in DETHUMP_MODES:
            raise ValueError(f"dethump must be one of {DETHUMP_MODES}, got {self.dethump!r}")


@dataclass(frozen=True)
class Disturbances:
    """What the classical stages found in a recording and take out before the network.

    Attributes:
        hum: mains hum (`histdenoise.dehum.detect_hum`), or None.
        thumps: a thump repeating every turn (`histdenoise.dethump.detect_thumps`), or None.
    """

    hum: HumEstimate | None = None
    thumps: ThumpEstimate | None = None

    @classmethod
    def find(cls, x: np.ndarray, samplerate: int, settings: DenoiseConfig) -> Disturbances:
        """Look for hum, then (in what is left) thumps, in (channels, samples) ``x``.

        Both look below 1.5 kHz, so they look at the channels' average resampled to
        `DETECT_RATE` (a 96-kHz stereo side: 2 minutes of 4-kHz mono, not 23 million
        samples); the thump found is resampled back for its removal."""
        if settings.dehum == "off" and settings.dethump == "off":
            return cls()
        import soxr

        mono = np.asarray(x, np.float64).mean(axis=0)
        low = mono
        if samplerate != DETECT_RATE:
            low = soxr.resample(mono, samplerate, DETECT_RATE, "HQ")
        hum = detect_hum(low, DETECT_RATE, settings.dehum)
        if hum is not None and settings.dethump != "off":
            low = _run_stages([HumRemover(hum, DETECT_RATE, 1)], low[None])[0]
        thumps = detect_thumps(low, DETECT_RATE, settings.dethump)
        return cls(hum, thumps.at_rate(samplerate) if thumps else None)

    def stages(self, samplerate: int, channels: int) -> list:
        """The streaming removers, in order (hum first)."""
        out: list = []
        if self.hum is not None:
            out.append(HumRemover(self.hum, samplerate, channels))
        if self.thumps is not None:
            out.append(ThumpRemover(self.thumps, channels))
        return out


def _run_stages(stages: list, x: np.ndarray) -> np.ndarray:
    """(channels, samples) through every stage, flushed."""
    for stage in stages:
        x = np.concatenate([stage(x), stage.flush()], axis=1)
    return x


class _Chain:
    """Streaming stages one after another; each returns as many samples as it is given,
    over the whole stream (some of them at `flush`)."""

    def __init__(self, stages: list):
        self.stages = stages

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for stage in self.stages:
            x = stage(x)
        return x

    def flush(self, channels: int) -> np.ndarray:
        x = np.zeros((channels, 0), np.float32)
        for stage in self.stages:
            x = np.concatenate([stage(x), stage.flush()], axis=1)
        return x


DenoiseSettings = DenoiseConfig
"""The earlier name of `DenoiseConfig` (``histdenoise.DenoiseSettings``), kept for users."""


@dataclass
class FileResult:
    """Outcome of `Denoiser.denoise_file`; ``report`` is what the JSON report holds."""

    input: Path
    denoised: Path
    residual: Path
    report_path: Path
    report: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class Denoiser:
    """Denoise recordings with a two-stage U-Net.

    Args:
        model: with the ``"tensorflow"`` backend, a registry name, checkpoint path (see
            `histdenoise.load_network`) or a Keras model, the default model when None; with
            ``"onnxruntime"``, an exported ONNX folder (``model.onnx`` + ``model.json``, see
            `histdenoise.model.export`), a ``.onnx`` file, or ``"bundled"`` (shipped as ONNX
            too; also the default when None).
        batch_size: spectrogram chunks (11 s of one channel each) per network call;
            more is faster on a GPU and needs more memory. None (default): with ONNX Runtime
            on the CPU, as many as it runs side by side (`OnnxNetwork.parallel`: one per
            core, at most 4), else 1.
        chunk: chunking of the spectrogram (frames per chunk, margin, cross-fade).
        backend: ``"auto"`` (default; see `resolve_backend`: ONNX Runtime for the shipped
            model, which starts in under a second where TensorFlow takes 15-40 s on a
            2-core CPU), ``"tensorflow"`` or ``"onnxruntime"``; the latter never imports
            TensorFlow (numpy, soundfile, soxr and onnxruntime suffice). ``self.backend``
            is the one that runs.
        precision: network arithmetic with TensorFlow: ``"float32"``; ``"bfloat16"``
            (Keras mixed precision in the first stage: bfloat16 compute, float32 weights;
            fast on CPUs with AVX512-BF16/AMX and on TPUs) or ``"float16"`` (GPUs). The
            second stage, STFT, overlap-add and the output split stay in float32/float64.
        jit: compile the network with XLA (``jit_compile``); helps on GPUs, often not on
            CPUs (see benchmarks/inference.py).
        emulate: run a reduced ``precision`` even where the machine has no native support
            for it (`native_precision`); otherwise such a request runs float32, which is
            faster there, and ``precision`` records what ran (``precision_requested``
            what was asked).

    Example::

        d = Denoiser()
        denoised, residual = d.denoise(audio, 48000)         # (samples,) or (samples, ch)
        result = d.denoise_file("disc 1.flac", out_dir="out")
        d = Denoiser(backend="onnxruntime")                 # the bundled model, no TensorFlow
        d = Denoiser("bundled-onnx", backend="onnxruntime")  # from `histdenoise export`
    """

    def __init__(
        self,
        model=None,
        *,
        batch_size: int | None = None,
        chunk: ChunkConfig | None = None,
        backend: str = "auto",
        precision: str = "float32",
        jit: bool = False,
        emulate: bool = False,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision_requested = precision
        reduced = precision != "float32" and backend != "onnxruntime" and not emulate
        if reduced and not native_precision(precision):
            logging.getLogger("histdenoise").warning(
                "%s: no native support on this machine (CPU flags %s, no GPU), where it "
                "is slower than float32; running float32", precision,
                "/".join(NATIVE_FLAGS[precision]),
            )
            precision = "float32"
        onnx_net = None
        if backend == "auto":
            backend, onnx_file = resolve_backend(model, precision, jit)
            if backend == "onnxruntime":
                from histdenoise.onnx_backend import OnnxNetwork

                onnx_net = OnnxNetwork(onnx_file)
                if not _same_weights(onnx_file, onnx_net.card.weights_sha256):
                    backend, onnx_net = "tensorflow", None
        if backend == "tensorflow":
            self.model, self.card, self._fn = _load_tensorflow(model, precision, jit)
        elif backend == "onnxruntime":
            if precision != "float32" or jit:
                raise HistdenoiseError(
                    "the onnxruntime backend runs the exported float32 graph: --precision "
                    "and --jit apply to the tensorflow backend"
                )
            if onnx_net is None:
                from histdenoise.onnx_backend import OnnxNetwork

                onnx_net = OnnxNetwork(DEFAULT_MODEL if model is None else model)
            self.model = onnx_net
            self.card, self._fn = onnx_net.card, onnx_net
        else:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.precision = precision
        self.jit = bool(jit)
        self.stft = self.card.stft if self.card.stft else StftConfig()
        if batch_size is None:
            batch_size = onnx_net.parallel if onnx_net is not None else 1
        self.batch_size = max(1, int(batch_size))
        self.chunk = chunk or ChunkConfig()

    @property
    def samplerate(self) -> int:
        """The model's sample rate, Hz."""
        return self.stft.sample_rate

    def warm_up(self) -> float:
        """Run the network once on the shortest chunk it takes (``chunk.align`` frames of
        silence, one channel), so that what a first call costs happens now rather than
        inside the first file's progress: TensorFlow traces and optimises its graph
        there (seconds on a CPU; ONNX Runtime has nothing left to do by then). Nothing
        with ``jit``, where XLA compiles each shape: the warm-up's would be one more.

        Returns:
            The seconds it took.
        """
        if self.jit:
            return 0.0
        start = time.perf_counter()
        self._fn(np.zeros((1, self.chunk.align, self.stft.bins, 2), np.float32))
        return time.perf_counter() - start

    def shared(self, callers: int) -> contextlib.AbstractContextManager:
        """A block in which ``callers`` threads denoise files with this denoiser at once,
        so that its network shares the cores between them (`OnnxNetwork.shared`; nothing
        to do with TensorFlow, whose one thread pool already serves every caller)."""
        share = getattr(self.model, "shared", None)
        return share(callers) if share is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ streaming core
    def stream(
        self,
        blocks: Iterable[np.ndarray],
        samplerate: int,
        channels: int,
        total: int | None = None,
        progress: Progress | None = None,
        found: Disturbances | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Pair each input block with the network's estimate at the same rate.

        Args:
            blocks: (channels, samples) blocks in any representation `to_float` takes.
            samplerate: Hz of ``blocks``.
            channels: channel count of ``blocks``.
            total: total samples, for progress.
            progress: callback in seconds of audio.
            found: hum and thumps (`Disturbances.find`) to take out before the network.

        Yields:
            ``(x, y)``: the input samples (as given) and the denoised estimate, float32,
            both (channels, n), covering the input exactly once in order.
        """
        to_model = Resampler(samplerate, self.samplerate, channels)
        to_out = Resampler(self.samplerate, samplerate, channels)
        pending_x: deque[np.ndarray] = deque()
        engine = StreamingEngine(self._fn, channels, self.stft, self.chunk, self.batch_size)
        stages = _Chain(found.stages(samplerate, channels) if found else [])

        def feed() -> Iterator[np.ndarray]:
            for block in blocks:
                pending_x.append(block)
                yield to_model(stages(to_float(block)))
            yield to_model(stages.flush(channels))
            yield to_model.flush()

        y_parts: list[np.ndarray] = []
        y_have = 0
        done = 0

        def drain(final: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            nonlocal y_have, done
            while pending_x and (y_have >= pending_x[0].shape[1] or final):
                x = pending_x.popleft()
                n = x.shape[1]
                y = (
                    np.concatenate(y_parts, axis=1)
                    if y_parts
                    else np.zeros((channels, 0), np.float32)
                )
                if y.shape[1] < n:  # resampling may end a sample or two short
                    y = np.pad(
                        y, ((0, 0), (0, n - y.shape[1])), mode="edge" if y.shape[1] else "constant"
                    )
                y_parts[:] = [y[:, n:]]
                y_have = y_parts[0].shape[1]
                done += n
                if progress and total:
                    progress(done / samplerate, total / samplerate)
                yield x, y[:, :n]

        for y in engine.process(feed()):
            part = to_out(y)
            if part.shape[1]:
                y_parts.append(part)
                y_have += part.shape[1]
            yield from drain(final=False)
        tail = to_out.flush()
        if tail.shape[1]:
            y_parts.append(tail)
            y_have += tail.shape[1]
        yield from drain(final=True)

    # ------------------------------------------------------------------ arrays
    def denoise(
        self,
        audio: np.ndarray,
        samplerate: int,
        *,
        strength: float = 1.0,
        mono: bool = False,
        progress: Progress | None = None,
        dehum: str = "auto",
        dethump: str = "auto",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Denoise an array.

        Args:
            audio: (samples,) or (samples, channels) float in [-1, 1].
            samplerate: Hz.
            strength: 0..1; output = input - strength * residual.
            mono: downmix to one channel first.
            progress: callback in seconds of audio.
            dehum: mains hum removal, one of `DEHUM_MODES` (see `DenoiseConfig`).
            dethump: removal of once-per-turn thumps, ``auto`` or ``off``.

        Returns:
            ``(denoised, residual)``, float32, shaped like ``audio`` (one channel with
            ``mono``), with ``denoised + residual == input`` in float32.
        """
        settings = DenoiseConfig(strength=strength, mono=mono, dehum=dehum, dethump=dethump)
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[0] == 0:
            raise AudioError(f"audio must be (samples,) or (samples, channels), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise AudioError("audio contains NaN or Inf samples")
        flat = x.ndim == 1
        xc = x[None, :] if flat else x.T
        if mono:
            xc = xc.mean(axis=0, keepdims=True)
        block = int(BLOCK_SECONDS * samplerate)
        blocks = (xc[:, i : i + block] for i in range(0, xc.shape[1], block))
        out_fmt = OutputFormat("RAW", "FLOAT", "")
        den, rem = [], []
        found = Disturbances.find(xc[:, : int(DETECT_SECONDS * samplerate)], samplerate, settings)
        for xb, yb in self.stream(
            blocks, samplerate, xc.shape[0], xc.shape[1], progress, found=found
        ):
            target = _apply_strength(xb, yb, settings.strength)
            d, r, _ = split_exact(xb, target, out_fmt)
            den.append(d)
            rem.append(r)
        d = np.concatenate(den, axis=1)
        r = np.concatenate(rem, axis=1)
        if flat or mono:
            return d[0], r[0]
        return d.T, r.T

    # ------------------------------------------------------------------ files
    def denoise_file(
        self,
        path: str | Path,
        out_dir: str | Path | None = None,
        *,
        settings: DenoiseConfig | None = None,
        overwrite: bool = False,
        progress: Progress | None = None,
        outputs: tuple[Path, Path, Path] | None = None,
    ) -> FileResult:
        """Denoise one file; write the denoised audio, the residual and a JSON report.

        Outputs go beside the input (or into ``out_dir``; or to ``outputs``, the
        (denoised, residual, report) paths of a plan, see `histdenoise.runner`) under short
        temporary names and are renamed only when complete; on any error none is left
        behind. Temporaries of killed runs for these outputs are removed first. A file
        that ends before its header says is processed as far as it goes (``truncated`` in
        the report, a line in ``FileResult.warnings``). File system failures raise
        `OutputError` naming the file and the cause.
        """
        settings = settings or DenoiseConfig()
        path = Path(path)
        info = probe(path)
        out_fmt = choose_output(info, settings.format, settings.subtype)
        if outputs is None:
            folder = Path(out_dir) if out_dir is not None else None
            outputs = output_names(path, folder, out_fmt.extension)
        den_path, rem_path, rep_path = (Path(p) for p in outputs)
        check_outputs(path, (den_path, rem_path, rep_path), overwrite)
        make_folder(den_path.parent)
        for p in (den_path, rem_path, rep_path):
            remove_stale_temporaries(p)
        channels = 1 if settings.mono else info.channels
        t0 = time.perf_counter()
        stats = {"residual_clipped": 0, "inexact": 0}
        block = max(1, int(BLOCK_SECONDS * info.samplerate))
        state = ReadState()

        reader = read_blocks(info, block, state)
        head: deque[np.ndarray] = deque()  # blocks the detection read, replayed (one decode)
        found = self._find_in(info, settings, reader, head)

        def downmixed(b: np.ndarray) -> np.ndarray:
            if settings.mono and b.shape[0] > 1:
                return to_float(b).mean(axis=0, keepdims=True)
            return b

        def blocks():
            while head:
                yield downmixed(head.popleft())
            for b in reader:
                yield downmixed(b)

        tmp_report = temp_path(rep_path)
        try:
            with (
                AtomicWriter(den_path, info.samplerate, channels, out_fmt) as wd,
                AtomicWriter(rem_path, info.samplerate, channels, out_fmt) as wr,
            ):
                for xb, yb in self.stream(
                    blocks(), info.samplerate, channels, info.frames, progress, found=found
                ):
                    target = _apply_strength(xb, yb, settings.strength)
                    d, r, bad = split_exact(xb, target, out_fmt)
                    if out_fmt.subtype in PCM_BITS:
                        stats["residual_clipped"] += bad
                        stats["inexact"] += off_grid(xb, out_fmt)
                    else:
                        stats["inexact"] += bad
                    wd.write(d)
                    wr.write(r)
                wd.close()
                wr.close()
                if not out_fmt.lossless:
                    stats["inexact"] = count_inexact_written(info, wd.tmp, wr.tmp, settings.mono)
                elapsed = time.perf_counter() - t0
                truncated = _truncation(info, state)
                report = self._report(
                    info, out_fmt, settings, (den_path, rem_path, rep_path), elapsed, stats,
                    truncated, found,
                )
                _write_text(tmp_report, rep_path, json.dumps(report, indent=2) + "\n")
                # an old report goes first: all three outputs present means one complete run
                _unlink_output(rep_path)
                wd.commit()
                wr.commit()
                try:
                    os.replace(tmp_report, rep_path)
                except OSError as exc:
                    raise OutputError(f"{rep_path}: cannot write: {os_error_cause(exc)}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp_report.unlink(missing_ok=True)
        warnings = []
        if truncated:
            warnings.append(
                f"{path}: truncated: the header declares {truncated['declared_seconds']:.3f} s, "
                f"the file holds {truncated['real_seconds']:.3f} s; processed as far as it goes"
            )
        return FileResult(path, den_path, rem_path, rep_path, report, warnings)

    def _find_in(
        self, info: AudioInfo, settings: DenoiseConfig, reader: Iterator[np.ndarray],
        head: deque[np.ndarray],
    ) -> Disturbances:
        """`Disturbances.find` on the first `DETECT_SECONDS` of a file, channels averaged.

        Args:
            info: the file.
            settings: ``dehum`` and ``dethump`` say whether to look.
            reader: the file's blocks (`read_blocks`), as the denoising reads them; the
                blocks taken from it are appended to ``head``, to be denoised from there
                (the start of the file is decoded once).
            head: receives the blocks read.
        """
        if settings.dehum == "off" and settings.dethump == "off":
            return Disturbances()
        want = int(DETECT_SECONDS * info.samplerate)
        parts, have = [], 0
        for b in reader:
            head.append(b)
            parts.append(to_float(b).mean(axis=0))
            have += b.shape[1]
            if have >= want:
                break
        if not parts:
            return Disturbances()
        x = np.concatenate(parts)[None, :want]
        return Disturbances.find(x, info.samplerate, settings)

    def _report(
        self,
        info: AudioInfo,
        out_fmt: OutputFormat,
        settings: DenoiseConfig,
        outputs: tuple[Path, Path, Path],
        elapsed: float,
        stats: dict,
        truncated: dict | None = None,
        found: Disturbances | None = None,
    ) -> dict:
        from histdenoise import __version__

        den, rem, rep = outputs
        seconds = (truncated or {}).get("real_seconds", info.duration)
        return {
            "paths": "relative to the folder of this report",
            "input": _relative(info.path, rep.parent),
            "denoised": _relative(den, rep.parent),
            "residual": _relative(rem, rep.parent),
            "model": {
                "name": self.card.name,
                "weights_sha256": self.card.weights_sha256,
                "licence": self.card.licence,
            },
            "settings": {
                **asdict(settings),
                "backend": self.backend,
                "precision": self.precision,
                "precision_requested": self.precision_requested,
                "jit": self.jit,
                "batch_size": self.batch_size,
                "chunk": asdict(self.chunk),
            },
            "input_audio": {
                "samplerate": info.samplerate,
                "channels": info.channels,
                "samples": round(seconds * info.samplerate),
                "seconds": round(seconds, 6),
                "format": info.format,
                "subtype": info.subtype,
                "truncated": truncated or False,
            },
            "output_audio": {
                "format": out_fmt.format,
                "subtype": out_fmt.subtype,
                **({"chosen_because": out_fmt.reason} if out_fmt.reason else {}),
                "channels": 1 if settings.mono else info.channels,
                "denoised_plus_residual_equals_input": out_fmt.exact,
                **stats,
            },
            "hum": found.hum.to_dict() if found and found.hum else None,
            "thumps": found.thumps.to_dict() if found and found.thumps else None,
            "processing_seconds": round(elapsed, 3),
            "real_time_factor": round(elapsed / seconds, 4) if seconds else None,
            "histdenoise": __version__,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def _truncation(info: AudioInfo, state: ReadState) -> dict | None:
    """``{"declared_seconds", "real_seconds"[, "decoder_message"]}`` when the input ended
    early."""
    declared = max(info.frames, info.declared_frames or 0)
    if not state.ended_early and not info.truncated:
        return None
    if state.frames >= declared:
        return None
    out = {
        "declared_seconds": round(declared / info.samplerate, 6),
        "real_seconds": round(state.frames / info.samplerate, 6),
    }
    if state.reason:
        out["decoder_message"] = state.reason
    return out


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (``/`` separated), absolute where no relative path
    exists (another drive)."""
    try:
        return Path(os.path.relpath(Path(path).absolute(), Path(folder).absolute())).as_posix()
    except ValueError:
        return str(Path(path).absolute())


def check_outputs(path: Path, outputs: Iterable[Path], overwrite: bool) -> None:
    """Refuse outputs that are the input itself (compared as files, through links) or
    that exist when ``overwrite`` is off."""
    for p in outputs:
        if p.exists() and same_file(p, path):
            raise AudioError(f"{path}: output {p} would overwrite the input")
        if p.exists() and not overwrite:
            raise AudioError(f"{p}: already exists (use --overwrite or --skip-existing)")


def same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file (hard or symbolic links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def make_folder(folder: Path) -> None:
    """Create an output folder (and its parents); `OutputError` with the cause."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(
            f"{folder}: cannot create the output folder: a file has that name"
        ) from None
    except OSError as exc:
        raise OutputError(
            f"{folder}: cannot create the output folder: {os_error_cause(exc)}"
        ) from None


def _write_text(tmp: Path, final: Path, text: str) -> None:
    try:
        tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{final}: cannot write: {os_error_cause(exc)}") from None


def _unlink_output(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot replace: {os_error_cause(exc)}") from None


NATIVE_FLAGS = {
    "bfloat16": ("avx512_bf16", "amx_bf16"),
    "float16": ("avx512_fp16", "amx_fp16"),
}
"""/proc/cpuinfo flags of native CPU support for each reduced precision."""


def native_precision(precision: str, cpuinfo: str | None = None) -> bool:
    """Whether this machine computes ``precision`` natively: a CPU flag of `NATIVE_FLAGS`
    in ``cpuinfo`` (the text of /proc/cpuinfo, read if None), or a GPU TensorFlow sees.
    float32 always is."""
    if precision == "float32":
        return True
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    if flags & set(NATIVE_FLAGS.get(precision, ())):
        return True
    try:
        import tensorflow as tf
    except ImportError:
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def resolve_backend(model, precision: str = "float32", jit: bool = False):
    """The backend ``backend="auto"`` picks, and the model to give it.

    ONNX Runtime when onnxruntime is installed, ``precision`` is float32, ``jit`` is off
    and ``model`` (None = the default model) names an ONNX graph: a ``.onnx`` file, an
    export folder (``model.onnx`` without ``model.weights.h5``), or a native folder or
    registry model shipping ``model.onnx`` beside its weights (``bundled``). TensorFlow
    otherwise, and also where that graph's card names other weights than those beside it
    (checked by `Denoiser`, which has the graph's card once it is loaded).

    Returns:
        ``("onnxruntime", path of the .onnx file)`` or ``("tensorflow", model)``.
    """
    import importlib.util

    if precision != "float32" or jit or importlib.util.find_spec("onnxruntime") is None:
        return "tensorflow", model
    onnx_file = _onnx_graph_of(DEFAULT_MODEL if model is None else model)
    return ("onnxruntime", onnx_file) if onnx_file is not None else ("tensorflow", model)


def _onnx_graph_of(model) -> Path | None:
    """The ``.onnx`` file that computes what ``model`` (a name or path) computes, if any."""
    from histdenoise.onnx_backend import ONNX_NAME, _shipped_onnx

    if not isinstance(model, (str, os.PathLike)):
        return None
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_file():
        return path if path.suffix.lower() == ".onnx" else None
    if path.is_dir():
        onnx_file = path / ONNX_NAME
    elif os.sep in text or "/" in text or path.suffix:
        return None
    else:
        onnx_file = _shipped_onnx(text)
    if onnx_file is None or not onnx_file.is_file():
        return None
    return onnx_file


def _same_weights(onnx_file: Path, exported_sha256: str) -> bool:
    """Whether ``onnx_file`` (whose card records ``exported_sha256``) was exported from the
    weights beside it, if there are any (``model.weights.h5`` and its ``model.json``).
    A stale graph is logged, and ``backend="auto"`` runs TensorFlow instead."""
    weights, card_file = onnx_file.with_name(WEIGHTS_NAME), onnx_file.with_name(CARD_NAME)
    if not weights.is_file():
        return True  # an export folder: the graph is the model
    try:
        native = json.loads(card_file.read_text(encoding="utf-8")).get("weights_sha256", "")
    except (OSError, ValueError, AttributeError):
        native = ""
    if native and exported_sha256 == native:
        return True
    logging.getLogger("histdenoise").warning(
        "%s: not exported from the %s beside it; running TensorFlow instead (regenerate "
        "it with `histdenoise export`, see histdenoise.model.export)", onnx_file, weights.name
    )
    return False


def _apply_strength(x: np.ndarray, y: np.ndarray, strength: float) -> np.ndarray:
    """``input - strength * (input - estimate)`` in float64."""
    xf = to_float(x)
    return xf - strength * (xf - y.astype(np.float64))


def _load_tensorflow(
    model, precision: str = "float32", jit: bool = False
) -> tuple[object, object, Callable[[np.ndarray], np.ndarray]]:
    """Load ``model`` with TensorFlow: the Keras model, its card and the network function."""
    try:
        from histdenoise.model.loading import load_model
    except ImportError as exc:
        if exc.name not in ("tensorflow", "keras"):
            raise
        raise HistdenoiseError(
            f"the tensorflow backend needs TensorFlow ({exc.name} is not installed: pip install "
            "tensorflow), or use --backend onnxruntime with an ONNX export"
        ) from None

    network, card = load_model(model if model is not None else DEFAULT_MODEL)
    return network, card, _compile(network, card.config, precision, jit)


def _compile(
    model, config, precision: str = "float32", jit: bool = False
) -> Callable[[np.ndarray], np.ndarray]:
    """The network as a traced function (batch, frames, bins, 2) -> stage 2, float32.

    Reduced precision runs a copy of the network (of shape ``config``, a `NetworkConfig`)
    whose first stage is built under a Keras mixed-precision policy (float32 weights,
    bfloat16/float16 compute) and whose second stage stays float32; ``jit`` compiles it
    with XLA.
    """
    import tensorflow as tf

    bins = model.input_shape[2]
    if precision != "float32":
        from histdenoise.model.network import build_network

        if config is None:
            raise HistdenoiseError(f"{precision} needs a histdenoise network (no config)")
        fast = build_network(config, stage1_dtype=f"mixed_{precision}")
        fast.set_weights(model.get_weights())
        model = fast

    # No AutoGraph: the network has no Python control flow on tensors, and converting
    # the Keras call path only adds to every TensorFlow start (about 0.5 s of tracing and
    # first call for the bundled model on this project's 2-core CPU).
    @tf.function(
        input_signature=[tf.TensorSpec([None, None, bins, 2], tf.float32)],
        reduce_retracing=True,
        jit_compile=bool(jit),
        autograph=False,
    )
    def run(x):
        return tf.cast(model(x, training=False)[0], tf.float32)

    return lambda x: run(tf.constant(x)).numpy()
