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

Input ``spectrogram`` (batch, frames, bins, 2) float32 and output ``denoised`` (same
shape, stage 2) are those of the tf2onnx export, with batch and frames dynamic.
`histdenoise.model.export` checks the result against TensorFlow.

Model layer (imports Keras): must not import histdenoise.training or .notebook.
"""

from __future__ import annotations

import numpy as np

from histdenoise.onnx_backend import INPUT_NAME, OUTPUT_NAME

_ACTIVATIONS = {"elu": "Elu", "sigmoid": "Sigmoid", "linear": None}


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
    def conv(self, x, kernel, bias, k: int, bins: int, stride: int = 1, act="linear"):
        """Mirror-padded VALID convolution of NCHW ``x``; Keras kernel (k, k, in, out)."""
        g = self.g
        x = self.pad(x, k, bins)
        w = g.const(np.transpose(np.asarray(kernel, np.float32), (3, 2, 0, 1)).copy(), "w")
        inputs = [x, w] + ([g.const(np.asarray(bias, np.float32), "b")] if bias is not None else [])
        y = g.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride])
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

    def stem(self, layer, x: str, bins: int) -> str:
        """A stem: 2-D convolution of the 2 spectrogram channels plus the constant
        per-bin response of the frequency encodings, bias, ELU."""
        n = layer.encodings
        kernel = layer.conv.kernel.numpy()[:, :, :-n, :]
        enc = np.asarray(layer.encoding_response("float32"))  # (bins, filters)
        const = enc.T[:, None, :] + layer.conv.bias.numpy()[:, None, None]  # (filters, 1, bins)
        y = self.conv(x, kernel, None, layer.kernel_size, bins)
        y = self.g.op("Add", [y, self.g.const(const.astype(np.float32), "enc")])
        return self.act(y, _act_name(layer.conv.activation))

    def dense_block(self, block, x: str, bins: int) -> str:
        """Conv j sees concat([y_{j-1}, ..., y_0, x]) (the checkpoint's channel order).

        Written without the concatenations: conv j is the sum of one convolution per
        source with that source's block of kernel j (ONNX Runtime fuses such sums into
        the convolutions), each source padded once."""
        g = self.g
        c = block.convs[0].conv.filters
        sources = [self.pad(x, 3, bins)]
        y = None
        for j, layer in enumerate(block.convs):
            kernel = layer.conv.kernel.numpy()
            # source 0 is x (kernel channels from j*c), source s >= 1 is y_{s-1}
            # (channels (j - s) * c to (j - s + 1) * c)
            pre = None
            for s_idx, src in enumerate(sources):
                lo = j * c if s_idx == 0 else (j - s_idx) * c
                hi = kernel.shape[2] if s_idx == 0 else lo + c
                w = np.transpose(kernel[:, :, lo:hi, :], (3, 2, 0, 1)).copy()
                inputs = [src, g.const(w.astype(np.float32), "w")]
                if pre is None:
                    inputs.append(g.const(layer.conv.bias.numpy().astype(np.float32), "b"))
                out = g.op("Conv", inputs, kernel_shape=[3, 3])
                pre = out if pre is None else g.op("Add", [pre, out])
            y = self.act(pre, _act_name(layer.conv.activation))
            if j + 1 < len(block.convs):
                sources.append(self.pad(y, 3, bins))
        return y

    def i_block(self, block, x: str, bins: int) -> str:
        a = self.dense_block(block.tfc, x, bins)
        return self.g.op("Add", [a, self.padded_conv(block.conv2d_res, x, bins)])

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
            c = level.filters
            # nearest-neighbour up-sampling of b, added to a, by broadcasting
            a6 = g.op("Reshape", [a, g.const(np.array([0, c, -1, 2, bins, 2], np.int64))])
            b6 = g.op("Unsqueeze", [b, g.const(np.array([3, 5], np.int64))])
            up = g.op("Reshape", [g.op("Add", [a6, b6]),
                                  g.const(np.array([0, c, -1, 2 * bins], np.int64))])
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

    f = b.stem(layer("conv2d_1"), x, bins)
    bottom, bb, skips = b.encoder(layer("encoder_s1"), f, bins)
    f = b.decoder(layer("decoder_s1"), bottom, bb, skips)
    sam = layer("sam_1")
    stage1 = g.op("Add", [b.padded_conv(sam.conv2, f, bins), x])
    mask = b.padded_conv(sam.conv3, stage1, bins)
    f = g.op("Add", [g.op("Mul", [b.padded_conv(sam.conv1, f, bins), mask]), f])

    s = b.stem(layer("conv2d_2"), x, bins)
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
