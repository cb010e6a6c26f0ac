"""Audio files: probing, block reading, resampling streams, exact output writing.

Integer PCM is read as integers, so that a written residual can make
``denoised + removed == input`` hold exactly (see `split_exact`).
"""

from __future__ import annotations

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

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.samplerate


def probe(path: str | Path) -> AudioInfo:
    """Read a file's header; `AudioError` naming the file if it is not usable audio."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile reports several error types
        raise AudioError(f"{path}: not a readable audio file ({first_line(exc)})") from None
    frames = int(info.frames)
    if frames <= 0:
        raise AudioError(f"{path}: contains no samples")
    return AudioInfo(
        path, int(info.samplerate), int(info.channels), frames, info.format, info.subtype
    )


def read_blocks(info: AudioInfo, block: int) -> Iterator[np.ndarray]:
    """Yield (channels, samples) blocks of the file in its exact representation.

    Integer PCM comes as int32 (the sample left-aligned, as libsndfile scales it), DOUBLE
    as float64, everything else as float32. Raises `AudioError` on NaN or Inf samples.
    """
    import soundfile as sf

    dtype = (
        "int32"
        if info.subtype in PCM_BITS
        else ("float64" if info.subtype == "DOUBLE" else "float32")
    )
    done = 0
    try:
        with sf.SoundFile(str(info.path)) as f:
            while True:
                data = f.read(block, dtype=dtype, always_2d=True)
                if data.shape[0] == 0:
                    break
                if dtype != "int32" and not np.all(np.isfinite(data)):
                    bad = int(np.argwhere(~np.isfinite(data))[0][0]) + done
                    raise AudioError(
                        f"{info.path}: NaN or Inf sample at {bad / info.samplerate:.3f} s"
                    )
                done += data.shape[0]
                yield data.T
    except sf.LibsndfileError as exc:
        raise AudioError(f"{info.path}: cannot decode audio ({first_line(exc)})") from None


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
    """

    format: str
    subtype: str
    extension: str

    @property
    def exact(self) -> str:
        """What ``denoised + removed == input`` means for this subtype (for the report)."""
        if self.subtype in PCM_BITS:
            return "integer: exact, except residual samples clipped at full scale (counted)"
        if self.subtype in FLOAT_SUBTYPES:
            return "float: bit-exact when summed in the file's own precision"
        return "lossy codec: approximate"


def choose_output(
    info: AudioInfo, fmt: str | None = None, subtype: str | None = None
) -> OutputFormat:
    """The input's format and subtype, unless overridden; checked against libsndfile."""
    import soundfile as sf

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


def split_exact(
    x: np.ndarray, target: np.ndarray, out: OutputFormat
) -> tuple[np.ndarray, np.ndarray, int]:
    """Denoised and removed samples to write, with ``denoised + removed == input``.

    Args:
        x: (channels, n) input block as from `read_blocks` (int32 PCM or float).
        target: (channels, n) float64 denoised signal wanted.
        out: output format.

    Returns:
        ``(denoised, removed, inexact)``, arrays in the dtype to hand to soundfile, and the
        count of samples for which the identity could not be kept:

        - integer PCM of b bits: both are integers on the b-bit grid and sum exactly to the
          input on that grid (the input itself when it has at most b bits); removed samples
          beyond full scale are clipped and counted.
        - FLOAT / DOUBLE: ``denoised + removed``, computed in that precision, equals the
          input bit for bit; samples where no neighbouring pair of values achieves it are
          counted (none seen in practice).
        - lossy codecs: float32 with ``removed = input - denoised`` before encoding.
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


class AtomicWriter:
    """Write an audio file under a temporary name; rename when `commit` is called.

    ``with AtomicWriter(...) as w: w.write(block); w.commit()`` - leaving the block
    without commit (an error, a kill) removes the temporary file, so no half file ever
    carries the final name.
    """

    def __init__(self, path: Path, samplerate: int, channels: int, out: OutputFormat):
        import soundfile as sf

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        self._file = sf.SoundFile(
            str(self.tmp),
            "w",
            samplerate=samplerate,
            channels=channels,
            format=out.format,
            subtype=out.subtype,
        )
        self._done = False

    def write(self, block: np.ndarray) -> None:
        """Write (channels, samples)."""
        self._file.write(np.ascontiguousarray(block.T))

    def commit(self) -> None:
        self._file.close()
        os.replace(self.tmp, self.path)
        self._done = True

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self._done:
            self._file.close()
            self.tmp.unlink(missing_ok=True)

