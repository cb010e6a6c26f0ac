"""The two-stage U-Net of Moliner & Välimäki (ICASSP 2022) as Keras 3 layers.

The network maps a complex spectrogram, stored as real and imaginary channels of shape
(batch, frames, 1025, 2), to two estimates of the clean spectrogram of the same shape:
``(stage2, stage1)``. Inference uses ``stage2``. Any number of frames (>= 1) works.

Every layer that owns weights knows its path in the authors' TensorFlow checkpoint
(``checkpoint_children``), so that `histdenoise.model.tf_checkpoint` can map keys one to one.

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
from keras import ops

from histdenoise.card import FREQ_BINS, NetworkConfig
from histdenoise.errors import CheckpointError


def frequency_encoding(n: int, bins: int = FREQ_BINS) -> np.ndarray:
    """``cos(2**k * pi * f / (bins - 1))`` for k = 0..n-1: shape (bins, n), float32."""
    f = np.arange(bins, dtype=np.float64)[:, None] / (bins - 1)
    k = 2.0 ** np.arange(n, dtype=np.float64)[None, :]
    return np.cos(k * np.pi * f).astype(np.float32)


# --------------------------------------------------------------------------- padding
def _mirrored(i, n):
    """Where index ``i`` (any integer, a tensor) of a symmetric padding of an axis of
    length ``n`` reads from: ``-1 -> 0``, ``n -> n - 1``; the mirror repeats (period
    ``2 n``) for paddings longer than the axis."""
    period = 2 * n
    m = ops.mod(i, period)
    return ops.where(m >= n, period - 1 - m, m)


def _symmetric_indices(n, before: int, after: int):
    """Indices that mirror-pad an axis of length ``n`` (edge sample repeated).

    Works for any pad size, also larger than ``n`` (the mirror repeats), and for a
    length only known at run time.
    """
    return _mirrored(ops.arange(-before, n + after, dtype="int32"), n)


def pad_sizes(kernel_size: int) -> tuple[int, int]:
    """Padding (before, after) of each axis for a same-size VALID convolution, as the
    reference network pads: ``k//2`` before and ``k//2 - (1 - k%2)`` after."""
    return kernel_size // 2, kernel_size // 2 - (1 - kernel_size % 2)


def symmetric_pad(x, kernel_size: int):
    """Pad the frames and frequency axes of (batch, frames, bins, ch) for a VALID conv.

    Padding is ``k//2`` before and ``k//2 - (1 - k%2)`` after on each axis, with
    symmetric edge mirroring, as the reference network does. Each axis is padded by
    concatenating its edge rows: reversed edge slices where the axis is at least as long
    as the padding (TensorFlow's ``MirrorPad`` kernel took 2.4x as long for the same
    copy, 15 % of the paper network's time on a CPU); for a frame count known only at run
    time and a padding over 1, the edge rows are gathered at mirrored indices, which
    holds for any length (also a chunk's deepest levels shorter than the padding). So the
    traced graph has no conditional, whatever frame counts it will see. Index mirroring
    of the whole tensor for a frequency axis shorter than the padding.
    """
    before, after = pad_sizes(kernel_size)
    if before == 0 and after == 0:
        return x
    need = max(before, after)
    bins, frames = x.shape[2], x.shape[1]
    if bins is None or bins < need or (frames is not None and frames < need):
        return _mirror_by_indices(x, before, after)
    if need == 1 or frames is not None:
        x = _flip_edges(x, 1, before, after)
    else:
        x = _gather_edges(x, before, after)
    return _flip_edges(x, 2, before, after)


def _flip_edges(x, axis: int, before: int, after: int):
    """Symmetric padding of ``axis``, at least ``max(before, after)`` long:
    ``[x[b-1], ..., x[0], x[0], ..., x[n-1], x[n-1], ..., x[n-a]]``."""
    def part(start, stop, width):
        edge = x[(slice(None),) * axis + (slice(start, stop),)]
        return edge if width == 1 else ops.flip(edge, axis=axis)  # one row is its mirror

    parts = [x]
    if before:
        parts.insert(0, part(0, before, before))
    if after:
        parts.append(part(-after, None, after))
    return ops.concatenate(parts, axis=axis) if len(parts) > 1 else x


def _gather_edges(x, before: int, after: int):
    """Symmetric padding of axis 1 whatever its length (>= 1): the ``before`` and
    ``after`` edge rows are gathered at their mirrored indices, the rest is ``x``."""
    n = ops.shape(x)[1]
    parts = [x]
    if before:
        parts.insert(0, ops.take(x, _mirrored(ops.arange(-before, 0, dtype="int32"), n), axis=1))
    if after:
        i = ops.arange(0, after, dtype="int32") + n
        parts.append(ops.take(x, _mirrored(i, n), axis=1))
    return ops.concatenate(parts, axis=1)


def _mirror_by_indices(x, before: int, after: int):
    """Symmetric padding of axes 1 and 2 by gathering mirrored indices (any lengths)."""
    x = ops.take(x, _symmetric_indices(ops.shape(x)[1], before, after), axis=1)
    return ops.take(x, _symmetric_indices(ops.shape(x)[2], before, after), axis=2)


def center_crop(x, like):
    """Crop (batch, frames, bins, ch) ``x`` to the frames and bins of ``like``.

    The offset on each axis is ``(larger - smaller) // 2``.
    """
    xs, ls = ops.shape(x), ops.shape(like)
    t0 = (xs[1] - ls[1]) // 2
    f0 = (xs[2] - ls[2]) // 2
    return x[:, t0 : t0 + ls[1], f0 : f0 + ls[2], :]


# --------------------------------------------------------------------------- layers
class CheckpointLayer(keras.layers.Layer):
    """A layer whose weights live under named children in the reference checkpoint."""

    def checkpoint_children(self) -> dict[str, keras.layers.Layer]:
        raise NotImplementedError


class PaddedConv2D(CheckpointLayer):
    """Symmetric padding followed by a VALID 2-D convolution.

    With ``encodings`` = n > 0 (the stems of both stages), the layer takes the raw
    spectrogram (batch, frames, bins, 2) and convolves it concatenated with n
    `frequency_encoding` channels; the kernel is (k, k, 2 + n, filters), as in the
    reference checkpoint. Those channels do not change along the frames axis (nor does
    their mirror padding), so their part of the convolution is a (bins, filters) response
    shared by every frame: a 1-D convolution along frequency with the kernel summed over
    its frame taps. Only the 2 spectrogram channels are convolved in 2-D, 6x less work
    for the default 10 encodings.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        activation: str | None = "elu",
        encodings: int = 0,
        bins: int = FREQ_BINS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.encodings = encodings
        self.conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="valid",
            activation=activation,
            name="conv",
            dtype=self.dtype_policy,
        )
        self._unfolded = None
        if encodings:
            if strides != 1:
                raise ValueError("frequency encodings need a stride-1 convolution")
            # unfolded[f, d, k]: encoding k at bin f + d - k//2, mirror padded.
            before, after = pad_sizes(kernel_size)
            enc = frequency_encoding(encodings, bins)
            enc = np.pad(enc, [(before, after), (0, 0)], mode="symmetric")
            self._unfolded = np.stack([enc[d : d + bins] for d in range(kernel_size)], axis=1)

    def build(self, input_shape):
        padded = list(input_shape)
        padded[-1] += self.encodings
        for ax in (1, 2):
            if padded[ax] is not None:
                padded[ax] += self.kernel_size - 1
        self.conv.build(tuple(padded))

    def compute_output_shape(self, input_shape):
        # Declared so that Keras never traces `call` on symbolic shapes (JAX cannot
        # compare a symbolic frame count with the padding).
        stride = self.conv.strides[0]
        spatial = _down(input_shape[:-1]) if stride == 2 else tuple(input_shape[:-1])
        return spatial + (self.conv.filters,)

    def encoding_response(self, dtype="float32"):
        """The encoding channels' part of the pre-activation, the same for every frame:
        (bins, filters)."""
        kernel = ops.cast(self.conv.kernel, dtype)
        per_bin = ops.sum(kernel[:, :, -self.encodings :, :], axis=0)  # (k, n, filters)
        return ops.einsum("fdk,dkc->fc", ops.cast(self._unfolded, dtype), per_bin)

    def call(self, x):
        padded = symmetric_pad(x, self.kernel_size)
        if not self.encodings:
            return self.conv(padded)
        kernel = ops.cast(self.conv.kernel, x.dtype)[:, :, : -self.encodings, :]
        y = ops.conv(padded, kernel, strides=1, padding="valid")
        y = y + self.encoding_response(x.dtype) + ops.cast(self.conv.bias, x.dtype)
        return self.conv.activation(y)

    @property
    def kernel(self):
        return self.conv.kernel

    @property
    def bias(self):
        return self.conv.bias

    def checkpoint_children(self):
        return {}


WIDE_FILTERS = 32
"""Dense blocks with at least this many filters per convolution concatenate their sources
(`DenseBlock`); narrower ones stack kernels, which keeps few-channel convolutions wide."""


class DenseBlock(CheckpointLayer):
    """``dense_layers`` 3x3 ELU convolutions, each seeing all earlier outputs.

    ``y = conv_0(x)``; then ``x = concat([y, x])``, ``y = conv_i(x)``; returns the last ``y``.
    Two equivalent forms, chosen by width (`WIDE_FILTERS`): the wide blocks concatenate
    (padded) sources as written; the narrow ones convolve each source once with the
    kernel blocks of every convolution that reads it.
    """

    def __init__(self, filters: int, dense_layers: int, **kwargs):
        super().__init__(**kwargs)
        self.convs = [
            PaddedConv2D(filters, 3, name=f"H_{j}", dtype=self.dtype_policy)
            for j in range(dense_layers)
        ]

    def build(self, input_shape):
        shape = list(input_shape)
        for conv in self.convs:
            conv.build(tuple(shape))
            shape[-1] += conv.conv.filters

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.convs[0].conv.filters,)

    def call(self, x):
        c = self.convs[0].conv.filters
        if c >= WIDE_FILTERS:
            return self._concatenating(x)
        return self._stacked(x)

    def _concatenating(self, x):
        # Each source is padded once; convolution j reads the padded sources
        # concatenated, and its bias and ELU fuse into it (TensorFlow's oneDNN): 14 %
        # less time than the stacked form for the paper network on a CPU.
        padded = symmetric_pad(x, 3)
        for j, conv in enumerate(self.convs):
            y = conv.conv(padded)
            if j + 1 < len(self.convs):
                padded = ops.concatenate([symmetric_pad(y, 3), padded], axis=-1)
        return y

    def _stacked(self, x):
        # Convolution j sees concat([y_{j-1}, ..., y_0, x]). Its kernel is split into the
        # blocks for each source, and every source is convolved once with the blocks of
        # all the convolutions that read it, stacked along the output axis. Same
        # arithmetic as the concatenating form, but no growing concatenations and wider,
        # better vectorised convolutions, which matters with few channels.
        c = self.convs[0].conv.filters
        n = len(self.convs)
        kernels = [ops.cast(conv.conv.kernel, x.dtype) for conv in self.convs]
        biases = [ops.cast(conv.conv.bias, x.dtype) for conv in self.convs]

        # Input-channel offset of source s (0 = x, i + 1 = y_i) in kernel j.
        def block(j: int, s: int):
            start = j * c if s == 0 else (j - s) * c
            stop = None if s == 0 else start + c
            return kernels[j][:, :, start:stop, :]

        pre = [None] * n
        source = x
        for s in range(n):
            readers = list(range(s, n))
            k = ops.concatenate([block(j, s) for j in readers], axis=-1)
            out = ops.conv(symmetric_pad(source, 3), k, strides=1, padding="valid")
            parts = ops.split(out, len(readers), axis=-1) if len(readers) > 1 else [out]
            for j, part in zip(readers, parts, strict=True):
                pre[j] = part if pre[j] is None else pre[j] + part
            source = ops.elu(pre[s] + biases[s])
        return source

    def checkpoint_children(self):
        return {f"H/{j}": c for j, c in enumerate(self.convs)}


class IBlock(CheckpointLayer):
    """Dense block plus a linear 1x1 convolution of the input, summed.

    With ``remat``, its activations are recomputed in the backward pass instead of kept.
    """

    def __init__(self, filters: int, dense_layers: int, remat: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.remat = remat
        self.tfc = DenseBlock(filters, dense_layers, name="tfc", dtype=self.dtype_policy)
        self.conv2d_res = PaddedConv2D(
            filters, 1, activation=None, name="conv2d_res", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.tfc.build(input_shape)
        self.conv2d_res.build(input_shape)

    def compute_output_shape(self, input_shape):
        return self.tfc.compute_output_shape(input_shape)

    def call(self, x):
        if self.remat:
            return keras.remat(self._forward)(x)
        return self._forward(x)

    def _forward(self, x):
        return self.tfc(x) + self.conv2d_res(x)

    def checkpoint_children(self):
        return {"tfc": self.tfc, "conv2d_res": self.conv2d_res}


class EncoderLevel(CheckpointLayer):
    """I-block (the skip) followed by a stride-2 4x4 ELU convolution."""

    def __init__(
        self, filters: int, out_filters: int, dense_layers: int, remat: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.i_block = IBlock(filters, dense_layers, remat, name="i_block", dtype=self.dtype_policy)
        self.conv2d_2 = PaddedConv2D(
            out_filters, 4, strides=2, name="conv2d_2", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.i_block.build(input_shape)
        self.conv2d_2.build(tuple(input_shape[:-1]) + (self.i_block.conv2d_res.conv.filters,))

    def compute_output_shape(self, input_shape):
        skip = self.i_block.compute_output_shape(input_shape)
        return self.conv2d_2.compute_output_shape(skip), skip

    def call(self, x):
        skip = self.i_block(x)
        return self.conv2d_2(skip), skip

    def checkpoint_children(self):
        return {"i_block": self.i_block, "conv2d_2": self.conv2d_2}


class Encoder(CheckpointLayer):
    """``depth`` encoder levels and the bottleneck I-block; returns (bottom, skips)."""

    def __init__(self, config: NetworkConfig, remat: bool = False, **kwargs):
        super().__init__(**kwargs)
        n = config.channels
        self.eblocks = [
            EncoderLevel(
                n[i],
                n[i + 1],
                config.dense_layers,
                remat,
                name=f"eblock_{i}",
                dtype=self.dtype_policy,
            )
            for i in range(config.depth)
        ]
        self.i_block = IBlock(
            n[-1], config.dense_layers, remat, name="i_block", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for level in self.eblocks:
            level.build(shape)
            shape = _down(shape[:-1]) + (level.conv2d_2.conv.filters,)
        self.i_block.build(shape)

    def compute_output_shape(self, input_shape):
        shape, skips = tuple(input_shape), []
        for level in self.eblocks:
            shape, skip = level.compute_output_shape(shape)
            skips.append(skip)
        return self.i_block.compute_output_shape(shape), skips

    def call(self, x):
        skips = []
        for level in self.eblocks:
            x, skip = level(x)
            skips.append(skip)
        return self.i_block(x), skips

    def checkpoint_children(self):
        children = {f"eblocks/{i}": b for i, b in enumerate(self.eblocks)}
        children["i_block"] = self.i_block
        return children


def _down(shape):
    """Spatial shape after a padded stride-2 4x4 convolution: ceil(n / 2)."""
    return (shape[0],) + tuple(None if s is None else math.ceil(s / 2) for s in shape[1:])


class DecoderLevel(CheckpointLayer):
    """Up-sampling (transposed conv + nearest neighbour), skip concatenation, I-block."""

    def __init__(
        self, filters: int, in_filters: int, dense_layers: int, remat: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.tconv_1 = keras.layers.Conv2DTranspose(
            filters,
            4,
            strides=2,
            padding="same",
            activation="elu",
            name="tconv_1",
            dtype=self.dtype_policy,
        )
        self.projection = None
        if in_filters != filters:
            self.projection = PaddedConv2D(filters, 1, name="projection", dtype=self.dtype_policy)
        self.i_block = IBlock(filters, dense_layers, remat, name="i_block", dtype=self.dtype_policy)
        self.filters = filters

    def build(self, h_shape, skip_shape):
        self.tconv_1.build(h_shape)
        if self.projection is not None:
            self.projection.build(h_shape)
        self.i_block.build(tuple(skip_shape[:-1]) + (self.filters + skip_shape[-1],))

    def compute_output_shape(self, h_shape, skip_shape):
        return tuple(skip_shape[:-1]) + (self.filters,)

    def call(self, h, skip):
        # The reference runs a VALID transposed convolution, (2 t + 2, 2 f + 2), and
        # centre-crops it to (2 t, 2 f); SAME padding (1 before and after for a 4x4
        # kernel at stride 2) is that crop without the copy.
        a = self.tconv_1(h)  # (batch, 2 t, 2 f, filters)
        # A 1x1 convolution and its activation commute with nearest-neighbour
        # up-sampling: project first, at a quarter of the pixels, then add the projection
        # to each 2x2 block of the transposed convolution by broadcasting, which is the
        # up-sampling without materialising it.
        b = h if self.projection is None else self.projection(h)
        t, f = ops.shape(h)[1], ops.shape(h)[2]
        a = ops.reshape(a, (-1, t, 2, f, 2, self.filters))
        c = ops.reshape(a + b[:, :, None, :, None, :], (-1, 2 * t, 2 * f, self.filters))
        x = ops.concatenate([center_crop(c, skip), skip], axis=-1)
        return self.i_block(x)

    def checkpoint_children(self):
        children = {"tconv_1": self.tconv_1, "i_block": self.i_block}
        if self.projection is not None:
            children["projection"] = self.projection
        return children


class Decoder(CheckpointLayer):
    """``depth`` decoder levels, deepest first; returns (batch, frames, bins, channels[0])."""

    def __init__(self, config: NetworkConfig, remat: bool = False, **kwargs):
        super().__init__(**kwargs)
        n = config.channels
        self.dblocks = [
            DecoderLevel(
                n[i],
                n[i + 1],
                config.dense_layers,
                remat,
                name=f"dblock_{i}",
                dtype=self.dtype_policy,
            )
            for i in range(config.depth)
        ]

    def build(self, h_shape, skips_shape):
        for level, skip_shape in zip(reversed(self.dblocks), reversed(skips_shape), strict=False):
            level.build(h_shape, skip_shape)
            h_shape = tuple(skip_shape[:-1]) + (level.filters,)

    def compute_output_shape(self, h_shape, skips_shape):
        return tuple(skips_shape[0][:-1]) + (self.dblocks[0].filters,)

    def call(self, h, skips):
        for level, skip in zip(reversed(self.dblocks), reversed(skips), strict=False):
            h = level(h, skip)
        return h

    def checkpoint_children(self):
        return {f"dblocks/{i}": b for i, b in enumerate(self.dblocks)}


class SupervisedAttention(CheckpointLayer):
    """Supervised attention module between the stages.

    Returns ``(F', stage1, mask)`` for decoder features F and the network input:
    ``stage1 = conv2(F) + input``, ``mask = sigmoid(conv3(stage1))``,
    ``F' = conv1(F) * mask + F``.
    """

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = PaddedConv2D(
            filters, 3, activation=None, name="conv1", dtype=self.dtype_policy
        )
        self.conv2 = PaddedConv2D(2, 3, activation=None, name="conv2", dtype=self.dtype_policy)
        self.conv3 = PaddedConv2D(
            filters, 3, activation="sigmoid", name="conv3", dtype=self.dtype_policy
        )

    def build(self, features_shape, x_shape):
        self.conv1.build(features_shape)
        self.conv2.build(features_shape)
        self.conv3.build(x_shape)

    def compute_output_shape(self, features_shape, x_shape):
        return tuple(features_shape), tuple(x_shape), tuple(features_shape)

    def call(self, features, x):
        stage1 = self.conv2(features) + x
        mask = self.conv3(stage1)
        return self.conv1(features) * mask + features, stage1, mask

    def checkpoint_children(self):
        return {"conv1": self.conv1, "conv2": self.conv2, "conv3": self.conv3}


class FinalBlock(CheckpointLayer):
    """3x3 linear convolution to the 2 output channels."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv2 = PaddedConv2D(2, 3, activation=None, name="conv2", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.conv2.build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)

    def call(self, x):
        return self.conv2(x)

    def checkpoint_children(self):
        return {"conv2": self.conv2}


# --------------------------------------------------------------------------- model
TOP_LEVEL = (
    "conv2d_1",
    "conv2d_2",
    "encoder_s1",
    "encoder_s2",
    "decoder_s1",
    "decoder_s2",
    "sam_1",
    "finalblock",
)
"""Names of the layers that hold weights, as in the reference checkpoint."""


def build_network(
    config: NetworkConfig | None = None,
    *,
    with_attention: bool = False,
    dtype: str | None = None,
    remat: bool = False,
    stage1_dtype: str | None = None,
) -> keras.Model:
    """Build the two-stage U-Net for input (batch, frames, bins, 2).

    Args:
        config: network shape; the paper's when omitted.
        with_attention: also output the attention mask (batch, frames, bins, channels[0]).
        dtype: a Keras dtype policy name such as ``"mixed_float16"``; the global one if None.
        stage1_dtype: a dtype policy for the first stage only (stem, U-Net and attention
            module), ``dtype`` if None. Reduced precision there and float32 in the second
            stage keeps the output within 40 dB of float32, which bfloat16 throughout
            does not (the second stage builds the output without a residual path).
        remat: recompute each I-block's activations in the backward pass (less memory
            for training, about a third more compute).

    Returns:
        A functional Keras model with outputs ``(stage2, stage1)`` (plus the mask), each
        (batch, frames, bins, 2). `network_config` reads the config back from it.
    """
    config = config or NetworkConfig.paper()
    n0 = config.channels[0]
    kw = {"dtype": dtype} if dtype else {}
    kw1 = {"dtype": stage1_dtype} if stage1_dtype else kw
    x = keras.Input((None, config.freq_bins, 2), name="spectrogram")
    stem = {"encodings": config.freq_encodings, "bins": config.freq_bins, **kw}

    f = PaddedConv2D(n0, 7, name="conv2d_1", **{**stem, **kw1})(x)
    bottom, skips = Encoder(config, remat, name="encoder_s1", **kw1)(f)
    f = Decoder(config, remat, name="decoder_s1", **kw1)(bottom, skips)
    f, stage1, mask = SupervisedAttention(n0, name="sam_1", **kw1)(f, x)

    g = PaddedConv2D(n0, 7, name="conv2d_2", **stem)(x)
    g = keras.layers.Concatenate(axis=-1, name="stage2_input", **kw)([g, f])
    bottom, skips = Encoder(config, remat, name="encoder_s2", **kw)(g)
    g = Decoder(config, remat, name="decoder_s2", **kw)(bottom, skips)
    stage2 = FinalBlock(name="finalblock", **kw)(g)

    outputs = [stage2, stage1] + ([mask] if with_attention else [])
    return keras.Model(x, outputs, name="two_stage_unet")


def checkpoint_layers(model: keras.Model) -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yield ``(path, layer)`` for every convolution, with reference checkpoint paths.

    Paths look like ``encoder_s1/eblocks/0/i_block/tfc/H/1``.
    """

    def walk(layer, path):
        if isinstance(layer, CheckpointLayer) and layer.checkpoint_children():
            for name, child in layer.checkpoint_children().items():
                yield from walk(child, f"{path}/{name}")
        else:
            yield path, layer

    for name in TOP_LEVEL:
        yield from walk(model.get_layer(name), name)


def checkpoint_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """Map reference checkpoint paths (``<path>/kernel`` and ``<path>/bias``) to variables."""
    out = {}
    for path, layer in checkpoint_layers(model):
        out[f"{path}/kernel"] = layer.kernel
        out[f"{path}/bias"] = layer.bias
    return out


def infer_config(weights: dict[str, np.ndarray], source: str | Path = "") -> NetworkConfig:
    """The network config whose variables these are (checked by `check_weights`)."""

    def shape(key):
        if key not in weights:
            raise CheckpointError(f"{source}: cannot infer the network config: missing {key}")
        return weights[key].shape

    levels = {int(m.group(1)) for k in weights if (m := re.match(r"encoder_s1/eblocks/(\d+)/", k))}
    depth = len(levels)
    if depth == 0 or levels != set(range(depth)):
        raise CheckpointError(f"{source}: cannot infer depth from encoder levels {sorted(levels)}")
    dense = {
        int(m.group(1))
        for k in weights
        if (m := re.match(r"encoder_s1/eblocks/0/i_block/tfc/H/(\d+)/", k))
    }
    channels = [
        shape(f"encoder_s1/eblocks/{i}/i_block/conv2d_res/kernel")[-1] for i in range(depth)
    ]
    channels.append(shape("encoder_s1/i_block/conv2d_res/kernel")[-1])
    stem = shape("conv2d_1/kernel")
    return NetworkConfig(
        channels=tuple(int(c) for c in channels),
        depth=depth,
        dense_layers=len(dense),
        freq_encodings=int(stem[2]) - 2,
    )


def network_config(model) -> NetworkConfig | None:
    """The config of a network `build_network` made, read from its layers' weights; None
    for any other model."""
    try:
        config = infer_config(checkpoint_variables(model), getattr(model, "name", ""))
        bins = int(model.input_shape[2])
    except (ValueError, CheckpointError, AttributeError, IndexError, TypeError):
        return None
    return replace(config, freq_bins=bins)


def expected_shapes(config: NetworkConfig) -> dict[str, tuple[int, ...]]:
    """Variable path -> shape for ``config``, without building the model.

    Conv kernels are HWIO; transposed-conv kernels are (h, w, out, in).
    """
    n, L = config.channels, config.dense_layers
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(path, k, cin, cout):
        shapes[f"{path}/kernel"] = (k, k, cin, cout)
        shapes[f"{path}/bias"] = (cout,)

    def iblock(path, cin, cout):
        for j in range(L):
            conv(f"{path}/tfc/H/{j}", 3, cin + j * cout, cout)
        conv(f"{path}/conv2d_res", 1, cin, cout)

    stem_in = 2 + config.freq_encodings
    for s, enc_in in ((1, n[0]), (2, 2 * n[0])):
        conv(f"conv2d_{s}", 7, stem_in, n[0])
        cin = enc_in
        for i in range(config.depth):
            iblock(f"encoder_s{s}/eblocks/{i}/i_block", cin, n[i])
            conv(f"encoder_s{s}/eblocks/{i}/conv2d_2", 4, n[i], n[i + 1])
            cin = n[i + 1]
        iblock(f"encoder_s{s}/i_block", cin, n[config.depth])
        for i in range(config.depth):
            p = f"decoder_s{s}/dblocks/{i}"
            shapes[f"{p}/tconv_1/kernel"] = (4, 4, n[i], n[i + 1])
            shapes[f"{p}/tconv_1/bias"] = (n[i],)
            if n[i] != n[i + 1]:
                conv(f"{p}/projection", 1, n[i + 1], n[i])
            iblock(f"{p}/i_block", 2 * n[i], n[i])
    conv("sam_1/conv1", 3, n[0], n[0])
    conv("sam_1/conv2", 3, n[0], 2)
    conv("sam_1/conv3", 3, 2, n[0])
    conv("finalblock/conv2", 3, n[0], 2)
    return shapes


def count_parameters(config: NetworkConfig) -> int:
    """Number of trainable parameters of ``config``."""
    return int(sum(np.prod(s) for s in expected_shapes(config).values()))


__all__ = [
    "FREQ_BINS",
    "NetworkConfig",
    "build_network",
    "checkpoint_layers",
    "checkpoint_variables",
    "count_flops",
    "count_parameters",
    "expected_shapes",
    "frequency_encoding",
]


def count_flops(config: NetworkConfig, frames: int) -> int:
    """Floating-point operations (2 per multiply-add) of one pass over ``frames`` frames.

    Counts the convolutions as `build_network` computes them (the stems convolve only the
    2 spectrogram channels in 2-D; projections run before up-sampling), which are all
    but a fraction of a percent of the work. The paper config needs about 760 GFLOP for
    a 431-frame (5 s) chunk.
    """
    n, L = config.channels, config.dense_layers
    sizes = [(frames, config.freq_bins)]
    for _ in range(config.depth):
        t, f = sizes[-1]
        sizes.append((-(-t // 2), -(-f // 2)))

    def conv(size, k, cin, cout):
        return 2 * size[0] * size[1] * k * k * cin * cout

    def iblock(size, cin, cout):
        return sum(conv(size, 3, cin + j * cout, cout) for j in range(L)) + conv(size, 1, cin, cout)

    total = 0
    for enc_in in (n[0], 2 * n[0]):
        # Stem: only the 2 spectrogram channels are convolved in 2-D (see PaddedConv2D).
        total += conv(sizes[0], 7, 2, n[0])
        cin = enc_in
        for i in range(config.depth):
            total += iblock(sizes[i], cin, n[i]) + conv(sizes[i + 1], 4, n[i], n[i + 1])
            cin = n[i + 1]
        total += iblock(sizes[config.depth], cin, n[config.depth])
        for i in range(config.depth):
            total += conv(sizes[i + 1], 4, n[i + 1], n[i])  # transposed: per input pixel
            if n[i] != n[i + 1]:  # projected before up-sampling
                total += conv(sizes[i + 1], 1, n[i + 1], n[i])
            total += iblock(sizes[i], 2 * n[i], n[i])
    total += conv(sizes[0], 3, n[0], n[0]) + conv(sizes[0], 3, n[0], 2)
    total += conv(sizes[0], 3, 2, n[0]) + conv(sizes[0], 3, n[0], 2)
    return int(total)
