"""Seam-free streaming inference: overlapping spectrogram chunks, cross-faded in frames.

The signal (at the model's rate, 44.1 kHz) is framed once, from ``n_fft - hop`` zeros before
its first sample, so that every sample lies under ``n_fft / hop`` frames and is
reconstructed exactly (the reference pipeline loses the first 1536 samples of every chunk).
The frame sequence is cut into chunks of ``frames`` frames advancing by ``stride`` frames;
each chunk goes through the network, and its output frames are weighted and summed:

    weight  0 ... 0 | ramp up (crossfade) | 1 ... 1 | ramp down (crossfade) | 0 ... 0
            margin                                                           margin

The ramp down of one chunk and the ramp up of the next cover the same frames and sum to
exactly one, and the ``margin`` frames at each chunk edge, where the U-Net sees its own
padding, are never used (except at the ends of the file). The last chunk is cut to the
frames the file still has (rounded up to ``align``), so a short file costs what it holds.
One inverse STFT of the summed frames, by overlap-add, gives the output. Memory stays
constant: only the chunks in flight, their frames and an ``n_fft`` tail are held.

In the code: `_Input` reads the stream as far as needed; `StreamingEngine._cut_batch`
cuts the next chunks (a `_Chunk` each); `StreamingEngine._run_batch` feeds them to the
network; `_Stitcher` sums their weighted frames and overlap-adds those that are final.
Needs numpy only: this module must not import TensorFlow, Keras or onnxruntime (the
network comes in as a function).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from histdenoise.stft import (
    StftConfig,
    from_channels,
    istft_frames,
    overlap_add,
    stft,
    to_channels,
)

NetworkFn = Callable[[np.ndarray], np.ndarray]
"""Maps (batch, frames, bins, 2) float32 to the same shape (the denoised spectrogram)."""


@dataclass(frozen=True)
class ChunkConfig:
    """How the frame sequence is cut into chunks (all counts in STFT frames of 512 samples).

    The U-Net down-samples by 2 per level, so it is not shift-invariant: a stride that is a
    multiple of ``2**depth`` frames (64 for the paper config) gives every chunk the same
    sampling phase as a single pass over the whole file. The defaults (960 frames = 11.1 s;
    stride 896 = 14 x 64) do that. Consecutive chunks overlap by ``2 * margin +
    crossfade`` = 64 frames of repeated work: 7 % at 960 frames, 17 % at 448 (the
    training length, 5.2 s), which is why the default is the longer chunk (448 took 12 %
    more time for the bundled model on TensorFlow, 7 % on ONNX Runtime;
    benchmarks/chunk_length.py).

    Attributes:
        frames: frames per chunk.
        margin: frames discarded at each inner chunk edge.
        crossfade: frames over which one chunk hands over to the next.
        align: the last chunk of a file is cut to the frames it needs, rounded up to a
            multiple of this (64 = 2**6, the paper network's down-sampling).
    """

    frames: int = 960
    margin: int = 16
    crossfade: int = 32
    align: int = 64

    def __post_init__(self) -> None:
        if self.margin < 0 or self.crossfade < 1 or self.align < 1:
            raise ValueError("margin must be >= 0, crossfade and align >= 1")
        if self.stride < self.crossfade:
            raise ValueError(
                f"chunk of {self.frames} frames too short for margin {self.margin} and "
                f"crossfade {self.crossfade} (needs frames >= 2*margin + 2*crossfade)"
            )

    @property
    def stride(self) -> int:
        """Frames between the starts of consecutive chunks."""
        return self.frames - 2 * self.margin - self.crossfade

    def weights(self, first: bool, last: bool) -> np.ndarray:
        """Per-frame weights (frames,) float64 of a chunk; neighbours' weights sum to 1."""
        w = np.ones(self.frames)
        up = np.sin(0.5 * np.pi * (np.arange(self.crossfade) + 0.5) / self.crossfade) ** 2
        m, c, f = self.margin, self.crossfade, self.frames
        if not first:
            w[:m] = 0.0
            w[m : m + c] = up
        if not last:
            w[f - m - c : f - m] = 1.0 - up
            w[f - m :] = 0.0
        return w

    def last_chunk_frames(self, remaining: int) -> int:
        """Frames the last chunk runs with when ``remaining`` frames of the file are left
        from its start: ``remaining`` rounded up to a multiple of ``align`` (at most
        ``frames``). Short files and the tail of long ones cost only what they hold."""
        return min(self.frames, -(-max(1, remaining) // self.align) * self.align)

    def num_chunks(self, total_frames: int) -> int:
        """Chunks needed to cover ``total_frames`` frames."""
        if total_frames <= self.frames:
            return 1
        return 1 + -(-(total_frames - self.frames) // self.stride)


def total_frames(samples: int, cfg: StftConfig) -> int:
    """Frames that cover ``samples`` samples (after the ``n_fft - hop`` lead-in) fully."""
    lead = cfg.n_fft - cfg.hop
    return (lead + samples - 1) // cfg.hop + 1


class StreamingEngine:
    """Runs a spectrogram-to-spectrogram network over an audio stream of any length.

    Args:
        network: the network function (see `NetworkFn`).
        channels: channels of the stream; they are batched together.
        stft_cfg: STFT parameters.
        chunk: chunking.
        batch_size: at most this many spectrograms (a chunk of one channel each) per
            network call; chunks of all channels are gathered together and split into
            calls of this size, so memory does not grow with the channel count.
    """

    def __init__(
        self,
        network: NetworkFn,
        channels: int,
        stft_cfg: StftConfig | None = None,
        chunk: ChunkConfig | None = None,
        batch_size: int = 1,
    ):
        self.network = network
        self.channels = channels
        self.stft = stft_cfg or StftConfig()
        self.chunk = chunk or ChunkConfig()
        self.batch_size = max(1, batch_size)
        self.chunks_per_call = max(1, self.batch_size // channels)

    def process(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Denoise a stream of (channels, samples) float32 blocks.

        Yields (channels, samples) float32 blocks of output, in order, in total exactly as
        many samples as came in. Output lags input by about ``batch_size`` chunks.

        Each round cuts the next chunks (`_cut_batch`), runs them through the network
        (`_run_batch`), adds their weighted frames to the `_Stitcher`, and yields the
        samples that no later chunk changes.
        """
        s, c = self.stft, self.chunk
        source = _Input(blocks, self.channels, lead=s.n_fft - s.hop)
        stitcher = _Stitcher(self.channels, s, c)
        k = 0  # next chunk
        while True:
            batch = self._cut_batch(source, k)
            if batch is None:  # an empty stream
                return
            if not batch:
                break
            for chunk, y in zip(batch, self._run_batch(batch), strict=True):
                stitcher.add(chunk, y)
            k = batch[-1].index + 1
            finished = batch[-1].last
            if finished:  # up to the end of the input
                final, end = total_frames(source.samples, s), source.lead + source.samples
            else:  # frames before the next chunk's start get no more contributions
                final = k * c.stride
                end = final * s.hop
            block = stitcher.release(final, end)
            if block is not None:
                yield block
            if finished:
                break
            source.drop_before(k * c.stride * s.hop)  # no later chunk needs these

    def _span(self, frames: int) -> int:
        """Samples a chunk of ``frames`` frames covers."""
        return (frames - 1) * self.stft.hop + self.stft.n_fft

    def _cut_batch(self, source: _Input, k: int) -> list[_Chunk] | None:
        """Chunks ``k``, ``k + 1``, ... for one round: at most ``chunks_per_call``, ending
        early at the file's last chunk (cut to the frames the file still has). An empty
        list past the last chunk; None for a stream without samples."""
        s, c = self.stft, self.chunk
        batch: list[_Chunk] = []
        while len(batch) < self.chunks_per_call:
            start = k * c.stride * s.hop
            source.fill(start + self._span(c.frames) + s.n_fft)  # to know whether k is last
            frames, last = c.frames, False
            if source.eof:
                if source.samples == 0:
                    return None
                remaining = total_frames(source.samples, s)
                if k >= c.num_chunks(remaining):
                    break
                last = k == c.num_chunks(remaining) - 1
                if last:  # only as many frames as the file still has, rounded up
                    frames = c.last_chunk_frames(remaining - k * c.stride)
            segment = source.segment(start, self._span(frames))
            batch.append(_Chunk(k, stft(segment, s), last))
            k += 1
            if last:
                break
        return batch

    def _run_batch(self, batch: list[_Chunk]) -> list[np.ndarray]:
        """Each chunk's denoised spectrogram (channels, frames, bins) complex64.

        One network call per run of equal-length chunks (a shortened last chunk goes
        alone), at most ``batch_size`` spectrograms each: (chunks * channels, frames, bins).
        """
        outs: list[np.ndarray] = []
        for _, group in itertools.groupby(batch, key=lambda chunk: chunk.spec.shape[1]):
            specs = [chunk.spec for chunk in group]
            spec = np.concatenate(specs, axis=0)
            n = self.batch_size
            parts = [_run(self.network, spec[i : i + n]) for i in range(0, len(spec), n)]
            out = parts[0] if len(parts) == 1 else np.concatenate(parts)
            outs.extend(np.split(out, len(specs), axis=0))
        return outs


@dataclass(frozen=True)
class _Chunk:
    """One chunk: its number ``index`` (it starts at frame ``index * stride``), its
    spectrogram (channels, frames, bins) complex64, and whether it is the file's last."""

    index: int
    spec: np.ndarray
    last: bool


class _Input:
    """The input stream, read as far as asked, as padded samples (``lead`` zeros first).

    Attributes:
        buf: (channels, n) float32, padded samples from index ``start`` on.
        samples: real samples read so far.
        eof: the stream has ended.
    """

    def __init__(self, blocks: Iterable[np.ndarray], channels: int, lead: int):
        self._source = iter(blocks)
        self.channels = channels
        self.lead = lead
        self.buf = np.zeros((channels, lead), np.float32)
        self.start = 0
        self.samples = 0
        self.eof = False

    def fill(self, upto: int) -> None:
        """Read blocks until the padded index ``upto`` is held, or the stream ends."""
        parts = [self.buf]
        have = self.start + self.buf.shape[1]
        while have < upto and not self.eof:
            try:
                block = np.asarray(next(self._source), dtype=np.float32)
            except StopIteration:
                self.eof = True
                break
            if block.ndim != 2 or block.shape[0] != self.channels:
                raise ValueError(
                    f"expected blocks of shape ({self.channels}, n), got {block.shape}"
                )
            parts.append(block)
            self.samples += block.shape[1]
            have += block.shape[1]
        if len(parts) > 1:
            self.buf = np.concatenate(parts, axis=1)

    def segment(self, start: int, span: int) -> np.ndarray:
        """Padded samples ``start`` to ``start + span`` (zeros past the end): (channels, span)."""
        seg = self.buf[:, start - self.start : start - self.start + span]
        if seg.shape[1] < span:
            seg = np.pad(seg, ((0, 0), (0, span - seg.shape[1])))
        return seg

    def drop_before(self, index: int) -> None:
        """Forget the samples before the padded index ``index``."""
        if index > self.start:
            self.buf = self.buf[:, index - self.start :]
            self.start = index


class _Stitcher:
    """Sums the chunks' weighted output frames, and turns the frames that are final into
    samples by overlap-add.

    Attributes:
        acc: (channels, n, bins) complex64, the weighted sum of frames from ``start`` on.
        tail: the overlap-add carry: samples from ``start * hop`` on that later frames
            still add to.
        emitted: padded index up to which samples were released.
    """

    def __init__(self, channels: int, stft_cfg: StftConfig, chunk: ChunkConfig):
        self.stft, self.chunk = stft_cfg, chunk
        self.acc = np.zeros((channels, 0, stft_cfg.bins), np.complex64)
        self.start = 0
        self.tail = np.zeros((channels, stft_cfg.n_fft - stft_cfg.hop), np.float32)
        self.emitted = stft_cfg.n_fft - stft_cfg.hop

    def add(self, chunk: _Chunk, y: np.ndarray) -> None:
        """Add chunk output ``y`` (channels, frames, bins), weighted (`ChunkConfig.weights`)."""
        w = self.chunk.weights(first=chunk.index == 0, last=chunk.last)
        w = w[: y.shape[1]].astype(np.float32)
        lo = chunk.index * self.chunk.stride - self.start
        hi = lo + y.shape[1]
        if hi > self.acc.shape[1]:
            grow = np.zeros((y.shape[0], hi - self.acc.shape[1], self.stft.bins), np.complex64)
            self.acc = np.concatenate([self.acc, grow], axis=1)
        self.acc[:, lo:hi] += y * w[None, :, None]

    def release(self, final: int, end: int) -> np.ndarray | None:
        """Overlap-add the frames before frame ``final`` (no chunk adds to them any more);
        return the samples from the last release up to the padded index ``end`` (None if
        there are none yet)."""
        hop = self.stft.hop
        n_final = final - self.start
        ola = overlap_add(istft_frames(self.acc[:, :n_final], self.stft), self.stft, self.tail)
        out_start = self.start * hop
        self.tail = ola[:, n_final * hop :]
        self.acc = self.acc[:, n_final:]
        self.start = final
        if end <= self.emitted:
            return None
        block = ola[:, self.emitted - out_start : end - out_start]
        self.emitted = end
        return block


def _run(network: NetworkFn, spec: np.ndarray) -> np.ndarray:
    """Complex (batch, frames, bins) through the network; complex64 out."""
    return from_channels(np.asarray(network(to_channels(spec)), dtype=np.float32))
