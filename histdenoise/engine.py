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
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from histdenoise.stft import StftConfig, istft_frames, stft

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
    training length, 5.2 s), which is why the default is the longer chunk (6 % less time
    measured for either model; benchmarks/inference.py).

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
        """
        s, c = self.stft, self.chunk
        hop, n_fft = s.hop, s.n_fft
        lead = n_fft - hop
        chunk_len = (c.frames - 1) * hop + n_fft  # samples a chunk spans
        ch = self.channels

        source = iter(blocks)
        buf = np.zeros((ch, lead), np.float32)  # padded samples from buf0 on
        buf0 = 0
        n_in = 0  # real samples read
        eof = False
        k = 0  # next chunk
        acc = np.zeros((ch, 0, s.bins), np.complex64)  # weighted frames from acc0 on
        acc0 = 0
        tail = np.zeros((ch, n_fft - hop), np.float32)  # overlap-add carry, at acc0 * hop
        emitted = lead  # padded index up to which output was yielded
        finished = False

        def fill(upto: int) -> None:
            nonlocal buf, n_in, eof
            parts = [buf]
            have = buf0 + buf.shape[1]
            while have < upto and not eof:
                try:
                    block = np.asarray(next(source), dtype=np.float32)
                except StopIteration:
                    eof = True
                    break
                if block.ndim != 2 or block.shape[0] != ch:
                    raise ValueError(f"expected blocks of shape ({ch}, n), got {block.shape}")
                parts.append(block)
                n_in += block.shape[1]
                have += block.shape[1]
            if len(parts) > 1:
                buf = np.concatenate(parts, axis=1)

        while not finished:
            batch = []
            while len(batch) < self.chunks_per_call:
                start = k * c.stride * hop
                fill(start + chunk_len + n_fft)  # read ahead to know whether k is last
                if eof:
                    if n_in == 0:
                        return
                    t_total = total_frames(n_in, s)
                    if k >= c.num_chunks(t_total):
                        break
                    last = k == c.num_chunks(t_total) - 1
                else:
                    last = False
                frames = c.frames
                if last:  # only as many frames as the file still has, rounded up
                    frames = c.last_chunk_frames(t_total - k * c.stride)
                span = (frames - 1) * hop + n_fft
                seg = buf[:, start - buf0 : start - buf0 + span]
                if seg.shape[1] < span:
                    seg = np.pad(seg, ((0, 0), (0, span - seg.shape[1])))
                batch.append((k, stft(seg, s), last))
                k += 1
                if last:
                    break
            if not batch:
                break
            # Network calls per run of equal-length chunks (a shortened last chunk goes
            # alone), at most batch_size spectrograms each: (chunks*ch, frames, bins).
            outs = []
            for _, group in itertools.groupby(batch, key=lambda b: b[1].shape[1]):
                specs = [b[1] for b in group]
                spec = np.concatenate(specs, axis=0)
                n = self.batch_size
                parts = [_run(self.network, spec[i : i + n]) for i in range(0, len(spec), n)]
                out = parts[0] if len(parts) == 1 else np.concatenate(parts)
                outs.extend(np.split(out, len(specs), axis=0))
            for y, (kk, _, last) in zip(outs, batch, strict=True):
                w = c.weights(first=kk == 0, last=last)[: y.shape[1]].astype(np.float32)
                lo = kk * c.stride - acc0
                hi = lo + y.shape[1]
                if hi > acc.shape[1]:
                    acc = np.concatenate(
                        [acc, np.zeros((ch, hi - acc.shape[1], s.bins), np.complex64)], axis=1
                    )
                acc[:, lo:hi] += y * w[None, :, None]
                finished = finished or last
            # Frames before the next chunk's start get no more contributions.
            final = total_frames(n_in, s) if finished else k * c.stride
            n_final = final - acc0
            frames = istft_frames(acc[:, :n_final], s)  # (ch, n_final, n_fft)
            ola = np.zeros((ch, n_final * hop + n_fft - hop), np.float32)
            ola[:, : tail.shape[1]] += tail
            for j in range(n_fft // hop):
                part = frames[:, :, j * hop : (j + 1) * hop].reshape(ch, n_final * hop)
                ola[:, j * hop : j * hop + n_final * hop] += part
            ready_end = final * hop  # padded index up to which samples are final
            out_start = acc0 * hop
            tail = ola[:, n_final * hop :]
            acc = acc[:, n_final:]
            acc0 = final
            hi = ready_end if not finished else lead + n_in
            if hi > emitted:
                yield ola[:, emitted - out_start : hi - out_start]
                emitted = hi
            # Drop input samples no later chunk needs.
            keep_from = k * c.stride * hop
            if keep_from > buf0:
                buf = buf[:, keep_from - buf0 :]
                buf0 = keep_from


def _run(network: NetworkFn, spec: np.ndarray) -> np.ndarray:
    """Complex (batch, frames, bins) through the network; complex64 out."""
    x = np.stack([spec.real, spec.imag], axis=-1).astype(np.float32)
    y = np.asarray(network(x), dtype=np.float32)
    return (y[..., 0] + 1j * y[..., 1]).astype(np.complex64)
