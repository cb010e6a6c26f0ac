"""The network reproduces the reference implementation and its checkpoint layout."""

from __future__ import annotations

import numpy as np
import pytest

from histdenoise.model.network import (
    DenseBlock,
    NetworkConfig,
    PaddedConv2D,
    build_network,
    checkpoint_variables,
    count_parameters,
    expected_shapes,
    frequency_encoding,
    symmetric_pad,
)
from histdenoise.model.tf_checkpoint import KEY_PREFIX, KEY_SUFFIX


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def read_tsv(path) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")
        assert key.startswith(KEY_PREFIX) and key.endswith(KEY_SUFFIX)
        out[key[len(KEY_PREFIX) : -len(KEY_SUFFIX)]] = tuple(int(s) for s in shape.split("x"))
    return out


def test_reproduces_reference_outputs(small_model, reference):
    ref = np.load(reference / "forward_small.npz")
    stage2, stage1 = small_model(ref["x"])
    assert stage2.shape == ref["stage2"].shape == (1, 37, 1025, 2)
    assert rel_err(stage2, ref["stage2"]) < 1e-4
    assert rel_err(stage1, ref["stage1"]) < 1e-4


@pytest.mark.parametrize(
    ("config", "tsv"),
    [
        (NetworkConfig.paper(), "checkpoint_keys_paper.tsv"),
        (NetworkConfig.small(), "checkpoint_keys_small.tsv"),
    ],
)
def test_variables_match_reference_keys(config, tsv, reference):
    assert expected_shapes(config) == read_tsv(reference / tsv)


def test_paper_config_parameter_count():
    assert count_parameters(NetworkConfig.paper()) == 71_408_196
    assert count_parameters(NetworkConfig.small()) == 1_464_900


def test_built_model_variables_are_the_expected_ones():
    config = NetworkConfig(channels=(4, 8, 8, 16), depth=3, dense_layers=2)
    model = build_network(config)
    variables = checkpoint_variables(model)
    assert {k: tuple(v.shape) for k, v in variables.items()} == expected_shapes(config)
    assert model.count_params() == count_parameters(config)


@pytest.fixture(scope="module")
def tiny_with_attention():
    config = NetworkConfig(channels=(4, 8, 8, 16), depth=3, dense_layers=1)
    return build_network(config, with_attention=True)


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 9, 38])
def test_any_number_of_frames(frames, tiny_with_attention):
    x = np.random.default_rng(frames).standard_normal((2, frames, 1025, 2)).astype("float32")
    stage2, stage1, mask = tiny_with_attention(x)
    assert stage2.shape == stage1.shape == (2, frames, 1025, 2)
    assert mask.shape == (2, frames, 1025, 4)
    assert np.all(np.isfinite(stage2))
    m = np.asarray(mask)
    assert m.min() >= 0.0 and m.max() <= 1.0


def test_frames_are_independent_of_batch_neighbours():
    model = build_network(NetworkConfig(channels=(4, 8, 8), depth=2, dense_layers=1))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 12, 1025, 2)).astype("float32")
    b = rng.standard_normal((1, 12, 1025, 2)).astype("float32")
    both = np.asarray(model(np.concatenate([a, b]))[0])
    np.testing.assert_allclose(both[:1], np.asarray(model(a)[0]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("size", "k"), [(1, 7), (2, 7), (3, 4), (5, 3), (1, 4), (6, 7)])
def test_symmetric_pad_matches_numpy_for_any_size(size, k):
    x = np.arange(2 * size * 5 * 3, dtype="float32").reshape(2, size, 5, 3)
    before, after = k // 2, k // 2 - (1 - k % 2)
    expected = np.pad(x, [(0, 0), (before, after), (before, after), (0, 0)], mode="symmetric")
    np.testing.assert_array_equal(np.asarray(symmetric_pad(x, k)), expected)


def test_symmetric_pad_with_frames_known_only_at_run_time():
    import tensorflow as tf

    for k in (3, 4, 7):
        before, after = k // 2, k // 2 - (1 - k % 2)
        pad = tf.function(lambda x, k=k: symmetric_pad(x, k),
                          input_signature=[tf.TensorSpec([None, None, 9, 2], tf.float32)])
        for size in (1, 2, 3, 4, 8):  # both branches: shorter and longer than the padding
            x = np.arange(size * 9 * 2, dtype="float32").reshape(1, size, 9, 2)
            expected = np.pad(x, [(0, 0), (before, after), (before, after), (0, 0)],
                              mode="symmetric")
            np.testing.assert_array_equal(pad(x).numpy(), expected)
        ops = {n.op for n in pad.get_concrete_function().graph.as_graph_def().node}
        assert not ops & {"If", "StatelessIf"}, (k, sorted(ops))  # no run-time choice
        if k == 3:  # a padding of 1: the edge row is its own mirror, nothing to reverse
            assert "ReverseV2" not in ops, sorted(ops)


def test_frequency_encoding_values():
    enc = frequency_encoding(10)
    assert enc.shape == (1025, 10)
    np.testing.assert_allclose(enc[0], 1.0)
    np.testing.assert_allclose(enc[1024], np.cos(2.0 ** np.arange(10) * np.pi), atol=1e-6)
    np.testing.assert_allclose(enc[512, 0], 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{"depth": 0}, {"depth": 7}, {"dense_layers": 0}, {"channels": (8, 0, 8), "depth": 2}],
)
def test_invalid_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        NetworkConfig(**kwargs)


def test_config_dict_round_trip():
    config = NetworkConfig(channels=(8, 16, 16), depth=2, dense_layers=2)
    assert NetworkConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        NetworkConfig.from_dict({**config.to_dict(), "width": 3})


def conv_same(x, kernel, bias, k, activation):
    """The reference form: mirror pad, VALID convolution, bias, activation (TensorFlow)."""
    import tensorflow as tf

    y = tf.nn.conv2d(symmetric_pad(x, k), kernel, 1, "VALID") + bias
    return np.asarray(tf.nn.elu(y) if activation else y)


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 50])
def test_stem_equals_convolving_the_concatenated_frequency_encoding(frames):
    rng = np.random.default_rng(frames)
    layer = PaddedConv2D(5, 7, encodings=10, bins=1025)
    x = rng.standard_normal((2, frames, 1025, 2)).astype("float32")
    layer.build(x.shape)
    layer.conv.bias.assign(rng.standard_normal(5).astype("float32"))
    enc = np.broadcast_to(frequency_encoding(10)[None, None], (2, frames, 1025, 10))
    full = np.concatenate([x, enc], axis=-1)
    expected = conv_same(full, layer.kernel, layer.bias, 7, activation=True)
    got = np.asarray(layer(x))
    assert got.shape == (2, frames, 1025, 5)
    assert rel_err(got, expected) < 2e-6


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_dense_block_equals_concatenating_form(layers):
    rng = np.random.default_rng(layers)
    block = DenseBlock(6, layers)
    x = rng.standard_normal((2, 9, 33, 5)).astype("float32")
    block.build(x.shape)
    for conv in block.convs:
        conv.conv.bias.assign(rng.standard_normal(6).astype("float32"))
    # y_0 = conv_0(x); x <- concat([y, x]); y = conv_j(x): the paper's definition.
    h, y = x, None
    for j, conv in enumerate(block.convs):
        if j:
            h = np.concatenate([y, h], axis=-1)
        y = conv_same(h, conv.kernel, conv.bias, 3, activation=True)
    assert rel_err(np.asarray(block(x)), y) < 2e-6
