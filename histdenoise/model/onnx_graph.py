"""Write the two-stage U-Net as an ONNX graph directly from its weights, in NCHW layout.

A converter (tf2onnx) translates the TensorFlow graph op by op: channels-last
convolutions wrapped in transposes, and the mirror padding as index arithmetic. ONNX
Runtime then spends a third of its time on transposes and layout reorders. This module
writes the network as ONNX's own convolutions see it, channels first, so the only
transposes are the two at the graph's input and output:

- convolutions take the Keras kernel (kh, kw, in, out) as ONNX (out, in, kh, kw); the
  transposed convolutions (kh, kw, out, in) as (in, out, kh, kw) with one pixel cropped
  on each side (Keras ``padding="same"`` at stride 2);
- symmetric padding of 1 (3x3 kernels, most of the work) is ``Pad`` in ``edge`` mode,
  which is the same thing; longer pads (the 4x4 and 7x7 kernels) gather the mirrored
  rows, with indices computed from the run-time frame count (exact for any count), and
  concatenate them: no ``If`` nodes;
- the stems' frequency-encoding channels are a constant (filters, 1, bins) term, as in
  `histdenoise.model.network.PaddedConv2D`.

Written for ONNX Runtime's CPU speed (measured with its profiler on the bundled model):

- convolutions with 2 or 4 output channels are 3-D convolutions over a singleton axis,
  so that ONNX Runtime runs its plain convolution rather than the blocked-layout (NCHWc)
  one, which would store 16-channel blocks for 4 channels and copy them back out; the
  narrow convolutions of one input (a dense block's parts that read its input, its 1 x 1
  residual conv, the two stems, the attention module's two) are one convolution, split;
- the decoder's nearest-neighbour up-sampling is a ``Resize`` (a broadcasting ``Add``
  over 6-D views took 10x longer);
- no intermediate shapes are stored: with symbolic frame counts on every tensor
  (onnxruntime's symbolic shape inference) ONNX Runtime fuses the dense blocks' sums
  into its convolutions, 3 % faster, but its peak memory for a 960-frame chunk grew
  from 0.3 to 1.3 GB.

Input ``spectrogram`` (batch, frames, bins, 2) float32 and output ``denoised`` (same
shape, stage 2) are those of the tf2onnx export, with batch and frames dynamic.
`histdenoise.model.export` checks the result against TensorFlow.

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

import numpy as np

from histdenoise.onnx_backend import INPUT_NAME, OUTPUT_NAME

_ACTIVATIONS = {"elu": "Elu", "sigmoid": "Sigmoid", "linear": None}
PLAIN_BELOW = 8
"""Convolutions whose output channels are not a multiple of this are written so that ONNX
Runtime runs its plain, not its blocked-layout (8 or 16 channel) convolution. (Making the
8-channel layers plain too measured 5 % slower for the bundled model.)"""


class _Graph:
    """Accumulates ONNX nodes and initialisers with unique names."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out


class _Builder:
    """Emits the network's layers into a `_Graph`; tensors are NCHW (H = frames)."""

    def __init__(self, graph: _Graph):
        self.g = graph
        self._frames = None

    # ------------------------------------------------------------------ padding
    def frames(self, x: str) -> str:
        """The run-time frame count of ``x`` as a 1-element int64 tensor."""
        shape = self.g.op("Shape", [x])
        return self.g.op("Slice", [shape, self.g.const(np.array([2])), self.g.const(np.array([3]))])

    def mirrored(self, i: str, n: str) -> str:
        """Symmetric-mirror int64 indices ``i`` (may be negative or >= n) onto an axis of
        run-time length ``n``: ``m = i mod 2n``, and ``2n - 1 - m`` where ``m >= n``."""
        g = self.g
        two_n = g.op("Add", [n, n])
        m = g.op("Mod", [i, two_n], fmod=0)
        flipped = g.op("Sub", [g.op("Sub", [two_n, g.const(np.array([1], np.int64))]), m])
        return g.op("Where", [g.op("Less", [m, n]), m, flipped])

    def pad(self, x: str, k: int, bins: int) -> str:
        """Symmetric padding of frames (axis 2, run-time length) and bins (axis 3, ``bins``)
        for a k x k VALID convolution, as `histdenoise.model.network.symmetric_pad` pads."""
        from histdenoise.model.network import pad_sizes

        before, after = pad_sizes(k)
        g = self.g
        if before == 0 and after == 0:
            return x
        if before == 1 and after == 1:  # mirroring one row is repeating the edge
            pads = g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
            return g.op("Pad", [x, pads], mode="edge")
        n = self.frames(x)
        head = self.mirrored(g.const(np.arange(-before, 0, dtype=np.int64)), n)
        parts = [g.op("Gather", [x, head], axis=2), x]
        if after:
            tail = g.op("Add", [g.const(np.arange(after, dtype=np.int64)), n])
            parts.append(g.op("Gather", [x, self.mirrored(tail, n)], axis=2))
        x = g.op("Concat", parts, axis=2)
        idx = np.pad(np.arange(bins, dtype=np.int64), (before, after), mode="symmetric")
        parts = [g.op("Gather", [x, g.const(idx[:before])], axis=3), x]
        if after:
            parts.append(g.op("Gather", [x, g.const(idx[before + bins :])], axis=3))
        return g.op("Concat", parts, axis=3)

    # ------------------------------------------------------------------ layers
    def conv_op(self, x: str, w: np.ndarray, b: np.ndarray | None, stride: int = 1,
                plain: bool | None = None) -> str:
        """VALID convolution of NCHW ``x`` with ``w`` (out, in, kh, kw) and bias ``b``.

        Where ``out`` is not a multiple of `PLAIN_BELOW` (the 2- and 4-channel layers), or
        ``plain`` says so (convolutions of several narrow layers at once), it
        is written as a 3-D convolution over a singleton axis: ONNX Runtime's blocked-layout
        (NCHWc) convolution, which it picks for every 2-D one with constant weights, would
        compute and store 8 or 16 channels per block for 4 real ones and copy them back out;
        its plain convolution, which runs the 3-D form, writes the channels there are."""
        g = self.g
        k = list(w.shape[2:])
        inputs = [g.const(np.asarray(b, np.float32), "b")] if b is not None else []
        if not (plain if plain is not None else _narrow(w.shape[0])):
            w_name = g.const(np.asarray(w, np.float32), "w")
            return g.op("Conv", [x, w_name, *inputs], kernel_shape=k, strides=[stride, stride])
        axis = g.const(np.array([2], np.int64))
        w_name = g.const(np.asarray(w, np.float32)[:, :, None], "w")
        y = g.op(
            "Conv", [g.op("Unsqueeze", [x, axis]), w_name, *inputs],
            kernel_shape=[1, *k], strides=[1, stride, stride],
        )
        return g.op("Squeeze", [y, axis])

    def split(self, y: str, sizes: list[int]) -> list[str]:
        """``y`` cut along channels into parts of ``sizes``."""
        outs = [self.g.name("split") for _ in sizes]
        self.g.nodes.append(self.g.helper.make_node(
            "Split", [y, self.g.const(np.array(sizes, np.int64))], outs, axis=1
        ))
        return outs

    def conv(self, x, kernel, bias, k: int, bins: int, stride: int = 1, act="linear"):
        """Mirror-padded VALID convolution of NCHW ``x``; Keras kernel (k, k, in, out)."""
        y = self.conv_op(self.pad(x, k, bins), _onnx_kernel(kernel), bias, stride)
        return self.act(y, act)

    def act(self, y: str, act: str) -> str:
        op = _ACTIVATIONS[act]
        return y if op is None else self.g.op(op, [y])

    def padded_conv(self, layer, x: str, bins: int) -> str:
        """A `PaddedConv2D` without frequency encodings."""
        conv = layer.conv
        return self.conv(
            x, conv.kernel.numpy(), conv.bias.numpy(), layer.kernel_size, bins,
            conv.strides[0], _act_name(conv.activation),
        )

    def sibling_convs(self, layers, x: str, bins: int) -> list[str]:
        """Stride-1 `PaddedConv2D` ``layers`` of one input ``x``, each with its activation.

        Narrow layers (see `conv_op`) are one plain convolution whose output is split: the
        input is then read and unfolded once. The kernels are centred in the largest one,
        which is exact for symmetric padding of odd kernels."""
        sizes = [layer.conv.filters for layer in layers]
        if not all(_narrow(n) for n in sizes) or len(layers) == 1:
            return [self.padded_conv(layer, x, bins) for layer in layers]
        k = max(layer.kernel_size for layer in layers)
        parts = [
            _centred(_onnx_kernel(layer.conv.kernel.numpy()), k) for layer in layers
        ]
        bias = np.concatenate([layer.conv.bias.numpy() for layer in layers])
        y = self.conv_op(self.pad(x, k, bins), np.concatenate(parts), bias, plain=True)
        return [
            self.act(part, _act_name(layer.conv.activation))
            for part, layer in zip(self.split(y, sizes), layers, strict=True)
        ]

    def stems(self, layers, x: str, bins: int) -> list[str]:
        """The stems: 2-D convolutions of the 2 spectrogram channels plus the constant
        per-bin response of the frequency encodings, bias, ELU; the two stems are one
        convolution where they are narrow (see `sibling_convs`)."""
        kernels, consts = [], []
        for layer in layers:
            n = layer.encodings
            kernels.append(_onnx_kernel(layer.conv.kernel.numpy()[:, :, :-n, :]))
            enc = np.asarray(layer.encoding_response("float32"))  # (bins, filters)
            consts.append(enc.T[:, None, :] + layer.conv.bias.numpy()[:, None, None])
        k = layers[0].kernel_size
        sizes = [w.shape[0] for w in kernels]
        if all(_narrow(n) for n in sizes) and all(layer.kernel_size == k for layer in layers):
            y = self.conv_op(self.pad(x, k, bins), np.concatenate(kernels), None, plain=True)
            ys = self.split(y, sizes)
        else:
            ys = [
                self.conv_op(self.pad(x, layer.kernel_size, bins), w, None)
                for layer, w in zip(layers, kernels, strict=True)
            ]
        return [
            self.act(self.g.op("Add", [y, self.g.const(c.astype(np.float32), "enc")]),
                     _act_name(layer.conv.activation))
            for y, c, layer in zip(ys, consts, layers, strict=True)
        ]

    def dense_block(self, block, x: str, bins: int, residual=None):
        """Conv j sees concat([y_{j-1}, ..., y_0, x]) (the checkpoint's channel order).

        Written without the concatenations: conv j is the sum of one convolution per
        source with that source's block of kernel j (ONNX Runtime fuses such sums into
        its blocked-layout convolutions), each source padded once. Where the block is
        narrow (see `conv_op`), the parts of all convs that read ``x``, and the 1 x 1
        ``residual`` conv of ``x`` if given, are one convolution, split.

        Returns:
            The block's output, and the residual conv's output (None without one).
        """
        g = self.g
        c = block.convs[0].conv.filters
        x_padded = self.pad(x, 3, bins)
        x_parts = [
            (_onnx_kernel(layer.conv.kernel.numpy()[:, :, j * c:, :]), layer.conv.bias.numpy())
            for j, layer in enumerate(block.convs)
        ]
        res_out = None
        if _narrow(c):
            if residual is not None:
                x_parts.append((_centred(_onnx_kernel(residual.conv.kernel.numpy()), 3),
                                residual.conv.bias.numpy()))
            merged = self.conv_op(
                x_padded, np.concatenate([w for w, _ in x_parts]),
                np.concatenate([b for _, b in x_parts]), plain=True,
            )
            x_outs = self.split(merged, [w.shape[0] for w, _ in x_parts])
            if residual is not None:
                res_out = x_outs.pop()
        else:
            x_outs = None
            if residual is not None:
                res_out = self.padded_conv(residual, x, bins)
        sources = [x_padded]
        y = None
        for j, layer in enumerate(block.convs):
            kernel = layer.conv.kernel.numpy()
            if x_outs is not None:
                pre = x_outs[j]
            else:
                pre = self.conv_op(x_padded, x_parts[j][0], x_parts[j][1])
            # source s >= 1 is y_{s-1}: kernel channels (j - s) * c to (j - s + 1) * c
            for s_idx in range(1, len(sources)):
                lo = (j - s_idx) * c
                out = self.conv_op(sources[s_idx], _onnx_kernel(kernel[:, :, lo:lo + c, :]), None)
                pre = g.op("Add", [pre, out])
            y = self.act(pre, _act_name(layer.conv.activation))
            if j + 1 < len(block.convs):
                sources.append(self.pad(y, 3, bins))
        return y, res_out

    def i_block(self, block, x: str, bins: int) -> str:
        res = block.conv2d_res
        a, r = self.dense_block(block.tfc, x, bins, residual=res if res.kernel_size == 1 else None)
        if r is None:
            r = self.padded_conv(res, x, bins)
        return self.g.op("Add", [a, r])

    def encoder(self, enc, x: str, bins: int):
        skips = []
        for level in enc.eblocks:
            skip = self.i_block(level.i_block, x, bins)
            skips.append((skip, bins))
            x = self.padded_conv(level.conv2d_2, skip, bins)
            bins = -(-bins // 2)
        return self.i_block(enc.i_block, x, bins), bins, skips

    def decoder(self, dec, h: str, bins: int, skips) -> str:
        g = self.g
        for level, (skip, skip_bins) in zip(reversed(dec.dblocks), reversed(skips), strict=True):
            t = level.tconv_1
            w = np.transpose(t.kernel.numpy(), (3, 2, 0, 1)).copy()  # (in, out, kh, kw)
            a = g.op(
                "ConvTranspose",
                [h, g.const(w.astype(np.float32), "wt"), g.const(t.bias.numpy(), "b")],
                kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1],
            )
            a = self.act(a, _act_name(t.activation))
            b = h if level.projection is None else self.padded_conv(level.projection, h, bins)
            # nearest-neighbour up-sampling of b (a Resize, which ONNX Runtime runs in its
            # blocked layout; a broadcasting Add over 6-D views is 10x slower), added to a
            up = g.op("Add", [a, g.op(
                "Resize", [b, "", g.const(np.array([1, 1, 2, 2], np.float32))],
                mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor",
            )])
            # centre crop to the skip (the offset is always 0: 2 ceil(n/2) - n <= 1)
            n = self.frames(skip)
            up = g.op(
                "Slice",
                [up, g.const(np.array([0, 0], np.int64)),
                 g.op("Concat", [n, g.const(np.array([skip_bins], np.int64))], axis=0),
                 g.const(np.array([2, 3], np.int64))],
            )
            h = self.i_block(level.i_block, g.op("Concat", [up, skip], axis=1), skip_bins)
            bins = skip_bins
        return h


def _narrow(channels: int) -> bool:
    """Whether a convolution with this many output channels runs as a plain one (see
    `_Builder.conv_op`)."""
    return channels % PLAIN_BELOW != 0


def _onnx_kernel(kernel) -> np.ndarray:
    """A Keras kernel (kh, kw, in, out) as ONNX's (out, in, kh, kw) float32."""
    return np.ascontiguousarray(np.transpose(np.asarray(kernel, np.float32), (3, 2, 0, 1)))


def _centred(w: np.ndarray, k: int) -> np.ndarray:
    """An (out, in, kh, kw) kernel zero-padded to (out, in, k, k) around its centre."""
    before = (k - w.shape[2]) // 2
    after = k - w.shape[2] - before
    return np.pad(w, ((0, 0), (0, 0), (before, after), (before, after)))


def _act_name(fn) -> str:
    name = getattr(fn, "__name__", str(fn))
    if name not in _ACTIVATIONS:
        raise NotImplementedError(f"activation {name!r} has no ONNX form here")
    return name


def build_onnx(model, config, opset: int = 17):
    """An ONNX ModelProto computing ``model``'s stage 2, NCHW inside.

    Args:
        model: a network from `histdenoise.model.network.build_network` (float32 weights).
        config: its `histdenoise.card.NetworkConfig`.
        opset: ONNX opset.

    Returns:
        ``onnx.ModelProto``: input ``spectrogram`` (batch, frames, bins, 2) float32,
        output ``denoised`` of the same shape; batch and frames dynamic.
    """
    from onnx import TensorProto, helper

    bins = int(config.freq_bins)
    g = _Graph()
    b = _Builder(g)
    x = g.op("Transpose", [INPUT_NAME], perm=[0, 3, 1, 2])  # (N, 2, T, F)
    layer = model.get_layer

    f, s = b.stems([layer("conv2d_1"), layer("conv2d_2")], x, bins)
    bottom, bb, skips = b.encoder(layer("encoder_s1"), f, bins)
    f = b.decoder(layer("decoder_s1"), bottom, bb, skips)
    sam = layer("sam_1")
    sam_f, sam_x = b.sibling_convs([sam.conv1, sam.conv2], f, bins)
    stage1 = g.op("Add", [sam_x, x])
    mask = b.padded_conv(sam.conv3, stage1, bins)
    f = g.op("Add", [g.op("Mul", [sam_f, mask]), f])

    s = g.op("Concat", [s, f], axis=1)
    bottom, bb, skips = b.encoder(layer("encoder_s2"), s, bins)
    s = b.decoder(layer("decoder_s2"), bottom, bb, skips)
    y = b.padded_conv(layer("finalblock").conv2, s, bins)
    g.nodes.append(helper.make_node("Transpose", [y], [OUTPUT_NAME], perm=[0, 2, 3, 1]))

    dims = ["batch", "frames", bins, 2]
    graph = helper.make_graph(
        g.nodes,
        "histdenoise_two_stage_unet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, dims)],
        initializer=g.inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    proto.producer_name = "histdenoise"
    return proto


__all__ = ["build_onnx"]
