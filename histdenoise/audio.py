"""Audio files: probing, block reading, resampling streams, exact output writing.

Integer PCM is read as integers, so that a written residual can make
``denoised + residual == input`` hold exactly (see `split_exact`).

Runtime core: must not import TensorFlow, Keras, or histdenoise.model, .training or
.notebook at module level.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histdenoise.errors import HistdenoiseError, first_line

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".mp3",
    ".aif",
    ".aiff",
    ".w64",
    ".rf64",
    ".opus",
)
"""File name endings treated as audio when scanning folders."""


def audio_files_below(root: Path) -> list[Path]:
    """Every file below ``root`` (at any depth) whose name ends in `AUDIO_EXTENSIONS`, in
    path order."""
    return [
        p for p in sorted(Path(root).rglob("*"))
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    ]

PCM_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
FLOAT_SUBTYPES = {"FLOAT": np.float32, "DOUBLE": np.float64}
EXTENSION_OF_FORMAT = {
    "WAV": ".wav",
    "FLAC": ".flac",
    "OGG": ".ogg",
    "MP3": ".mp3",
    "AIFF": ".aiff",
    "W64": ".w64",
    "RF64": ".rf64",
}


class AudioError(HistdenoiseError):
    """An audio file is missing, unreadable or holds unusable samples."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds.

    Attributes:
        path: the file.
        samplerate: Hz.
        channels: channel count.
        frames: samples per channel.
        format: libsndfile major format (``WAV``, ``FLAC``, ...).
        subtype: libsndfile subtype (``PCM_16``, ``FLOAT``, ``VORBIS``, ...).
    """

    path: Path
    samplerate: int
    channels: int
    frames: int
    format: str
    subtype: str
    declared_frames: int | None = None

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.samplerate

    @property
    def truncated(self) -> bool:
        """The header declares more samples than the file holds (see `probe`)."""
        return self.declared_frames is not None and self.declared_frames > self.frames


def special_file(path: Path) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder, in plain
    words (``a FIFO (named pipe)``, ...); None otherwise. Never opens the path."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a symbolic link to a missing file" if os.path.islink(path) else None
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    for test, words in kinds:
        if test(mode):
            return words
    return None


def probe(path: str | Path) -> AudioInfo:
    """Read a file's header; `AudioError` naming the file if it is not usable audio."""
    import soundfile as sf

    path = Path(path)
    special = special_file(path)
    if special:
        raise AudioError(f"{path}: is {special}, not a regular file; copy the audio to a file")
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        raise AudioError(f"{path}: permission denied (you may not read this file)") from None
    except OSError as exc:
        from histdenoise.files import os_error_cause

        raise AudioError(f"{path}: cannot open: {os_error_cause(exc)}") from None
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile reports several error types
        raise AudioError(f"{path}: not a readable audio file ({first_line(exc)})") from None
    frames = int(info.frames)
    if frames <= 0:
        raise AudioError(f"{path}: contains no samples")
    return AudioInfo(
        path,
        int(info.samplerate),
        int(info.channels),
        frames,
        info.format,
        info.subtype,
        _declared_frames(frames, getattr(info, "extra_info", "")),
    )


def _declared_frames(frames: int, log: str) -> int | None:
    """Samples per channel that the header declares, when libsndfile found fewer in the
    file (its log then says ``data : 441000 (should be 220478)`` for WAV-like files and
    ``SSND : ...`` for AIFF); None when the header agrees."""
    import re

    m = re.search(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", log, re.M)
    if not m:
        return None
    declared, real = int(m.group(1)), int(m.group(2))
    if real <= 0 or declared <= real:
        return None
    return round(frames * declared / real)


@dataclass
class ReadState:
    """What `read_blocks` found: samples per channel read, and whether the file ended
    (or stopped decoding) before the samples its header declares."""

    frames: int = 0
    ended_early: bool = False
    reason: str = ""


READ_PIECE = 8192
"""Samples per channel decoded per read: a file that stops decoding loses at most this."""


def mono_start(x: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """The first ``seconds`` of (samples,) or (channels, samples) ``x``, channels averaged,
    float64 (samples,)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    return x[: int(seconds * sample_rate)]


def read_blocks(
    info: AudioInfo, block: int, state: ReadState | None = None
) -> Iterator[np.ndarray]:
    """Yield (channels, samples) blocks of the file in its exact representation.

    Integer PCM comes as int32 (the sample left-aligned, as libsndfile scales it), DOUBLE
    as float64, everything else as float32. Raises `AudioError` on NaN or Inf samples.
    A file that stops decoding part way (cut off, or damaged at the end) yields what
    could be decoded and sets ``state.ended_early``; one that cannot be decoded at all
    raises `AudioError`.
    """
    import soundfile as sf

    state = state if state is not None else ReadState()
    dtype = (
        "int32"
        if info.subtype in PCM_BITS
        else ("float64" if info.subtype == "DOUBLE" else "float32")
    )
    pieces: list[np.ndarray] = []
    have = 0
    try:
        f = sf.SoundFile(str(info.path))
    except (sf.LibsndfileError, OSError) as exc:
        raise AudioError(f"{info.path}: cannot decode audio ({first_line(exc)})") from None
    with f:
        while True:
            try:
                data = f.read(min(block, READ_PIECE), dtype=dtype, always_2d=True)
            except (sf.LibsndfileError, OSError) as exc:
                if state.frames + have == 0:
                    raise AudioError(
                        f"{info.path}: cannot decode audio ({first_line(exc)})"
                    ) from None
                state.ended_early = True
                state.reason = first_line(exc)
                break
            if data.shape[0] == 0:
                break
            if dtype != "int32" and not np.all(np.isfinite(data)):
                bad = int(np.argwhere(~np.isfinite(data))[0][0]) + state.frames + have
                raise AudioError(
                    f"{info.path}: NaN or Inf sample at {bad / info.samplerate:.3f} s"
                )
            pieces.append(data)
            have += data.shape[0]
            if have >= block:
                state.frames += have
                yield np.concatenate(pieces).T
                pieces, have = [], 0
    if have:
        state.frames += have
        yield np.concatenate(pieces).T
    if state.frames < info.frames:
        state.ended_early = True


def to_float(block: np.ndarray) -> np.ndarray:
    """Samples in [-1, 1) as float64, from any of `read_blocks`' representations."""
    if block.dtype == np.int32:
        return block.astype(np.float64) / 2.0**31
    return block.astype(np.float64)


class Resampler:
    """Streaming sample-rate conversion of (channels, samples) blocks with soxr (HQ).

    A pass-through when the rates are equal. Call `flush` once after the last block.
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int):
        self.passthrough = in_rate == out_rate
        self.channels = channels
        if not self.passthrough:
            import soxr

            self._stream = soxr.ResampleStream(
                in_rate, out_rate, channels, dtype="float32", quality="HQ"
            )

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        if self.passthrough:
            return block
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T), last=last)
        return np.asarray(out, dtype=np.float32).reshape(-1, self.channels).T

    def flush(self) -> np.ndarray:
        return self(np.zeros((self.channels, 0), np.float32), last=True)


@dataclass(frozen=True)
class OutputFormat:
    """How an output file is written.

    Attributes:
        format: libsndfile major format.
        subtype: libsndfile subtype.
        extension: file name ending, with the dot.
        reason: why this format was chosen when it is not the input's ("" otherwise).
    """

    format: str
    subtype: str
    extension: str
    reason: str = ""

    @property
    def lossless(self) -> bool:
        """Integer PCM, FLOAT or DOUBLE: what is written is read back unchanged."""
        return self.subtype in PCM_BITS or self.subtype in FLOAT_SUBTYPES

    @property
    def exact(self) -> str:
        """What ``denoised + residual == input`` means for this subtype (for the report)."""
        if self.subtype in PCM_BITS:
            return (
                "integer: exact, except residual samples clipped at full scale "
                "(residual_clipped) and input samples off this subtype's grid (inexact)"
            )
        if self.subtype in FLOAT_SUBTYPES:
            return "float: bit-exact when summed in the file's own precision, except inexact"
        return "lossy or companded codec: approximate (inexact counted after decoding)"


LOSSY_SUBTYPES = frozenset(
    {"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III", "SPEEX"}
)
"""Subtypes whose decoded samples are floats on no integer grid."""

DECODED_PCM = {
    "DPCM_8": "PCM_S8",
    "DWVW_24": "PCM_24",
    "ALAC_20": "PCM_24",
    "ALAC_24": "PCM_24",
    "ALAC_32": "PCM_32",
}
"""Integer grid of decoded non-PCM subtypes; the companded and ADPCM ones not listed here
(ULAW, ALAW, IMA_ADPCM, MS_ADPCM, GSM610, G72x, NMS/VOX ADPCM, DWVW_12/16, DPCM_16,
ALAC_16) decode to 16-bit integers."""

FLAC_MAX_CHANNELS = 8
FLAC_MAX_RATE = 655350


def lossless_default(info: AudioInfo) -> OutputFormat:
    """The output format for an input whose own subtype cannot hold ``denoised + residual``
    exactly: FLAC on the decoded samples' integer grid (16 bits for mu-law, A-law and
    ADPCM), WAV FLOAT for lossy codecs (MP3, Vorbis, Opus), WAV on that grid when FLAC
    cannot hold it (over 8 channels or 655350 Hz, or 32 bits)."""
    what = f"{info.subtype} input"
    if info.subtype in LOSSY_SUBTYPES:
        return OutputFormat(
            "WAV", "FLOAT", ".wav", f"{what} is lossy: written as WAV FLOAT, losslessly"
        )
    grid = DECODED_PCM.get(info.subtype, "PCM_16")
    fits = (
        info.channels <= FLAC_MAX_CHANNELS
        and info.samplerate <= FLAC_MAX_RATE
        and grid in ("PCM_S8", "PCM_16", "PCM_24")
    )
    major = "FLAC" if fits else "WAV"
    return OutputFormat(
        major,
        grid,
        EXTENSION_OF_FORMAT[major],
        f"{what} is not stored exactly: written as {major} {grid}, losslessly",
    )


def choose_output(
    info: AudioInfo, fmt: str | None = None, subtype: str | None = None
) -> OutputFormat:
    """The input's format and subtype, unless overridden; checked against libsndfile.

    With neither ``fmt`` nor ``subtype``, an input that is not integer PCM, FLOAT or
    DOUBLE (MP3, Vorbis, Opus, mu-law, A-law, ADPCM, ...) gets `lossless_default`.
    """
    import soundfile as sf

    if not fmt and not subtype and info.subtype not in PCM_BITS and (
        info.subtype not in FLOAT_SUBTYPES
    ):
        return lossless_default(info)
    major = (fmt or info.format).upper()
    if major not in sf.available_formats():
        raise AudioError(
            f"{info.path}: unknown output format {major!r} "
            f"(choose from {', '.join(sorted(sf.available_formats()))})"
        )
    if subtype:
        sub = subtype.upper()
    elif fmt and major != info.format:
        sub = sf.default_subtype(major)
    else:
        sub = info.subtype
    if not sf.check_format(major, sub):
        if subtype:
            raise AudioError(
                f"{info.path}: format {major} cannot hold subtype {sub} "
                f"(choose from {', '.join(sf.available_subtypes(major))})"
            )
        sub = sf.default_subtype(major)
    ext = (
        info.path.suffix
        if (major == info.format and info.path.suffix)
        else (EXTENSION_OF_FORMAT.get(major, "." + major.lower()))
    )
    return OutputFormat(major, sub, ext)


def off_grid(x: np.ndarray, out: OutputFormat) -> int:
    """Input samples (of a `read_blocks` block) that the integer PCM subtype ``out``
    cannot hold: the output pair then sums to the nearest value it can (0 for other
    subtypes, which `split_exact` counts itself)."""
    if out.subtype not in PCM_BITS:
        return 0
    bits = PCM_BITS[out.subtype]
    if x.dtype == np.int32:
        step = 2 ** (32 - bits)
        return int(np.count_nonzero(x % step)) if step > 1 else 0
    scaled = x.astype(np.float64) * 2.0 ** (bits - 1)
    return int(np.count_nonzero((np.round(scaled) != scaled) | (np.abs(x) > 1)))


def split_exact(
    x: np.ndarray, target: np.ndarray, out: OutputFormat
) -> tuple[np.ndarray, np.ndarray, int]:
    """Denoised and residual samples to write, with ``denoised + residual == input``.

    Args:
        x: (channels, n) input block as from `read_blocks` (int32 PCM or float).
        target: (channels, n) float64 denoised signal wanted.
        out: output format.

    Returns:
        ``(denoised, residual, inexact)``, arrays in the dtype to hand to soundfile, and the
        count of samples for which the identity could not be kept:

        - integer PCM of b bits: both are integers on the b-bit grid and sum exactly to the
          input on that grid (the input itself when it has at most b bits); residual samples
          beyond full scale are clipped and counted.
        - FLOAT / DOUBLE: ``denoised + residual``, computed in that precision, equals the
          input bit for bit; samples where no neighbouring pair of values achieves it are
          counted (0.01 % of samples in FLOAT on music, none in DOUBLE: README,
          Exactness, measured by benchmarks/exactness.py).
        - lossy codecs: float32 with ``residual = input - denoised`` before encoding.
    """
    if out.subtype in PCM_BITS:
        bits = PCM_BITS[out.subtype]
        scale = 2.0 ** (bits - 1)
        lo, hi = -scale, scale - 1
        if x.dtype == np.int32:
            xq = np.round(x.astype(np.float64) / 2.0 ** (32 - bits))
        else:
            xq = np.round(x.astype(np.float64) * scale)
        xq = np.clip(xq, lo, hi)
        d = np.clip(np.round(target * scale), lo, hi)
        r = xq - d
        clipped = int(np.count_nonzero((r < lo) | (r > hi)))
        r = np.clip(r, lo, hi)
        container, shift = (np.int16, 16 - bits) if bits <= 16 else (np.int32, 32 - bits)
        return ((d * 2.0**shift).astype(container), (r * 2.0**shift).astype(container), clipped)
    ft = FLOAT_SUBTYPES.get(out.subtype, np.float32)
    xf = x.astype(np.float64) / 2.0**31 if x.dtype == np.int32 else x
    xt = xf.astype(ft)
    a = target.astype(ft)
    b = (xt.astype(np.float64) - a.astype(np.float64)).astype(ft)
    if out.subtype not in FLOAT_SUBTYPES:
        return a, b, 0
    bad = (a + b) != xt
    for step_a in (0, 1, -1, 2, -2):
        if not bad.any():
            break
        idx = np.nonzero(bad)
        a_try = a[idx]
        toward = ft(np.inf if step_a > 0 else -np.inf)  # same dtype: no promotion
        for _ in range(abs(step_a)):
            a_try = np.nextafter(a_try, toward)
        base = (xt[idx].astype(np.float64) - a_try.astype(np.float64)).astype(ft)
        for b_try in (base, np.nextafter(base, ft(np.inf)), np.nextafter(base, ft(-np.inf))):
            ok = (a_try + b_try) == xt[idx]
            sel = tuple(i[ok] for i in idx)
            a[sel], b[sel] = a_try[ok], b_try[ok]
            bad[sel] = False
            if not bad.any():
                break
    return a, b, int(np.count_nonzero(bad))


class OutputError(HistdenoiseError):
    """An output file could not be written (disk full, no permission, ...)."""


def _sf_detail(sfile, exc: BaseException) -> str:
    """libsndfile's own description of the last error of ``sfile`` (it holds the system
    message, e.g. ``No space left on device``), else the exception's."""
    try:
        import soundfile as sf

        return sf._ffi.string(sf._snd.sf_strerror(sfile._file)).decode("utf-8", "replace")
    except Exception:
        return str(exc)


class AtomicWriter:
    """Write an audio file under a short temporary name; rename when `commit` is called.

    ``with AtomicWriter(...) as w: w.write(block); w.commit()`` - leaving the block
    without commit (an error, an interrupt) removes the temporary file, so no half file
    ever carries the final name. Failures raise `OutputError` naming the final file and
    the cause; `close` checks that every sample written is in the (lossless) file.
    """

    def __init__(self, path: Path, samplerate: int, channels: int, out: OutputFormat):
        from histdenoise.files import temp_path

        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.out = out
        self.frames = 0
        self._done = False
        self._file = None
        self._shape = (samplerate, channels)

    def _open(self) -> None:
        """Create the temporary file (by `__enter__`: from then on `__exit__` removes it)."""
        import soundfile as sf

        from histdenoise.files import os_error_cause

        samplerate, channels = self._shape
        try:
            # created here first, so that the system's reason for a refusal is known
            os.close(os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
            self._file = sf.SoundFile(
                str(self.tmp),
                "w",
                samplerate=samplerate,
                channels=channels,
                format=self.out.format,
                subtype=self.out.subtype,
            )
        except (OSError, sf.SoundFileError) as exc:
            self._discard()
            raise OutputError(f"{self.path}: cannot write: {os_error_cause(exc)}") from None
        except BaseException:  # an interrupt (SIGTERM, Ctrl-C) while the file was created
            self._discard()
            raise

    def _fail(self, exc: BaseException) -> OutputError:
        from histdenoise.files import os_error_cause

        detail = _sf_detail(self._file, exc) if self._file is not None else str(exc)
        cause = os_error_cause(exc if isinstance(exc, OSError) else RuntimeError(detail))
        self._discard()
        return OutputError(f"{self.path}: cannot write: {cause}")

    def write(self, block: np.ndarray) -> None:
        """Write (channels, samples)."""
        import soundfile as sf

        try:
            self._file.write(np.ascontiguousarray(block.T))
        except (OSError, sf.SoundFileError, AssertionError) as exc:
            raise self._fail(exc) from None
        self.frames += block.shape[1]

    def close(self) -> None:
        """Finish the temporary file and check it holds every sample written."""
        import soundfile as sf

        try:
            self._file.close()
            got = sf.info(str(self.tmp)).frames
        except (OSError, sf.SoundFileError) as exc:
            raise self._fail(exc) from None
        # lossy encoders may pad or trim; `count_inexact_written` counts what they lose
        if got != self.frames and (self.out.lossless or got == 0):
            self._discard()
            raise OutputError(
                f"{self.path}: cannot write: only {got} of {self.frames} samples reached "
                "the disk (disk full?)"
            )

    def commit(self) -> None:
        """Close (if not yet) and rename to the final name."""
        if not self._file.closed:
            self.close()
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise self._fail(exc) from None
        self._done = True

    def _discard(self) -> None:
        if self._file is not None and not self._file.closed:
            # a full disk can fail the final header write: the file goes anyway
            with contextlib.suppress(Exception):
                self._file.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicWriter:
        self._open()
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            self._discard()


def count_inexact_written(
    info: AudioInfo, denoised: Path, residual: Path, mono: bool = False
) -> int:
    """Samples where the decoded ``denoised + residual`` differs from the decoded input
    (float64 sums; samples missing from either output count too). For outputs in lossy or
    companded subtypes, whose encoder changes what was handed to it."""
    import soundfile as sf

    bad = 0
    with (
        sf.SoundFile(str(info.path)) as fx,
        sf.SoundFile(str(denoised)) as fd,
        sf.SoundFile(str(residual)) as fr,
    ):
        while True:
            # decoded as `read_blocks` does (float32), downmixed as `Denoiser` does
            try:
                x = fx.read(65536, dtype="float32", always_2d=True).astype(np.float64)
            except (sf.LibsndfileError, OSError):  # a cut-off input: compared as far as read
                break
            if not x.shape[0]:
                break
            if mono:
                x = x.mean(axis=1, keepdims=True)
            d = fd.read(x.shape[0], dtype="float32", always_2d=True).astype(np.float64)
            r = fr.read(x.shape[0], dtype="float32", always_2d=True).astype(np.float64)
            n = min(d.shape[0], r.shape[0])
            bad += int(np.count_nonzero(d[:n] + r[:n] != x[:n])) + (x.shape[0] - n) * x.shape[1]
    return bad
