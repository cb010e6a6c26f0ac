"""The streaming engine: exact reconstruction, seamless chunks, constant memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from histdenoise.engine import ChunkConfig, StreamingEngine, total_frames
from histdenoise.stft import StftConfig, istft, stft, to_channels

SMALL_CHUNK = ChunkConfig(frames=64, margin=4, crossfade=8, align=16)


def run(network, x, chunk=SMALL_CHUNK, block=7919, batch_size=3):
    engine = StreamingEngine(network, x.shape[0], chunk=chunk, batch_size=batch_size)
    blocks = (x[:, i : i + block] for i in range(0, x.shape[1], block))
    parts = list(engine.process(blocks))
    return np.concatenate(parts, axis=1) if parts else np.zeros_like(x)


@pytest.mark.parametrize("n", [1, 2, 511, 1536, 1537, 2047, 2048, 44100, 44100 * 3 + 17])
def test_identity_network_reconstructs_every_sample(n):
    x = (np.random.default_rng(n).standard_normal((2, n)) * 0.5).astype(np.float32)
    y = run(lambda z: z, x)
    assert y.shape == x.shape
    assert np.max(np.abs(y - x)) < 1e-5  # start, seams and end included


@pytest.mark.parametrize("block", [1, 100, 512, 100_000])
def test_block_size_does_not_matter(block):
    x = (np.random.default_rng(0).standard_normal((1, 30_000)) * 0.5).astype(np.float32)
    y = run(lambda z: 0.5 * z, x, block=block)
    ref = run(lambda z: 0.5 * z, x, block=30_000)
    np.testing.assert_array_equal(y, ref)
    assert np.max(np.abs(y - 0.5 * x)) < 1e-5


@pytest.mark.parametrize("frames", [1, 64, 65, 100, 1000, 12345])
def test_crossfade_weights_sum_to_exactly_one(frames):
    c = ChunkConfig(frames=64, margin=4, crossfade=8)
    k = c.num_chunks(frames)
    total = np.zeros((k - 1) * c.stride + c.frames)
    for i in range(k):
        total[i * c.stride : i * c.stride + c.frames] += c.weights(i == 0, i == k - 1)
    assert np.all(total[:frames] == 1.0)
    assert k == 1 or (k - 1) * c.stride < frames <= (k - 1) * c.stride + c.frames


@pytest.mark.parametrize(
    ("seconds", "calls"),
    [
        (0.5, [(1, 64)]),  # 48 frames: one chunk cut to 64 instead of 448
        (2.0, [(1, 192)]),  # 176 frames
        (10.0, [(2, 448), (1, 128)]),  # 865 frames: 2 x 384 + 97 left
    ],
)
def test_last_chunk_runs_only_the_frames_it_needs(seconds, calls):
    seen = []

    def network(z):
        seen.append(z.shape[:2])
        return z

    x = (np.random.default_rng(1).standard_normal((1, int(seconds * 44100))) * 0.5)
    y = run(network, x.astype(np.float32), chunk=ChunkConfig(frames=448), batch_size=4)
    assert seen == calls
    assert np.max(np.abs(y - x)) < 1e-5


@pytest.mark.parametrize(("channels", "batch_size", "calls"), [(2, 1, 4), (2, 2, 2), (3, 2, 4)])
def test_no_call_holds_more_than_batch_size_spectrograms(channels, batch_size, calls):
    seen = []

    def network(z):
        seen.append(z.shape[0])
        return z

    x = np.random.default_rng(2).standard_normal((channels, 8 * 44100)).astype(np.float32)
    y = run(network, x, chunk=ChunkConfig(frames=448), batch_size=batch_size)
    assert len(seen) == calls and max(seen) <= batch_size  # 2 chunks of every channel
    assert np.max(np.abs(y - x)) < 1e-5


def test_default_chunk_is_aligned_to_the_network_depth():
    c = ChunkConfig()
    assert c.stride % 64 == 0 and c.frames % 64 == 0  # depth 6: 2**6 frames


def test_reference_defect_is_gone(reference):
    """The reference loses the first 1536 samples of a chunk; the engine does not."""
    ref = np.load(reference / "pipeline_small.npz")
    wave = ref["wave"]
    cfg = StftConfig()
    roundtrip = istft(stft(wave, cfg), cfg)
    assert np.max(np.abs(roundtrip[:1536] - wave[:1536])) > 0.1  # the defect, reproduced
    inner = slice(1536, len(roundtrip) - 1536)
    assert np.max(np.abs(roundtrip[inner] - wave[inner])) < 1e-5
    np.testing.assert_allclose(
        to_channels(
            stft(
                np.concatenate([wave, np.zeros(220500 - wave.size, np.float32)]), cfg, pad_end=True
            )
        ),
        ref["stft"],
        atol=1e-6 * np.abs(ref["stft"]).max(),
    )
    y = run(lambda z: z, wave[None], chunk=ChunkConfig())
    assert np.max(np.abs(y[0] - wave)) < 1e-5


def test_chunked_agrees_with_single_pass_for_a_real_network():
    import keras

    from histdenoise.model.network import NetworkConfig, build_network, checkpoint_variables

    model = build_network(NetworkConfig(channels=(8, 16, 16, 32), depth=3, dense_layers=2))
    rng = np.random.default_rng(7)
    for var in checkpoint_variables(model).values():  # random weights, non-zero biases
        fan_in = np.prod(var.shape[:-1]) if len(var.shape) > 1 else 1
        var.assign(rng.standard_normal(var.shape).astype("float32") / np.sqrt(fan_in))
    keras.utils.set_random_seed(0)
    fn = lambda z: np.asarray(model(z)[0])  # noqa: E731
    n = 44100 * 6
    t = np.arange(n) / 44100
    rng = np.random.default_rng(3)
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    full = run(fn, x[None], chunk=ChunkConfig(frames=640, margin=0, crossfade=1))
    chunked = run(fn, x[None], chunk=ChunkConfig(frames=128, margin=16, crossfade=32))
    assert ChunkConfig(frames=128, margin=16, crossfade=32).stride % 8 == 0  # 2**depth
    inner = slice(22050, n - 22050)
    err = full[0, inner] - chunked[0, inner]
    snr = 10 * np.log10(np.sum(full[0, inner] ** 2) / np.sum(err**2))
    assert snr > 40, snr


def _peak_bytes(minutes: float) -> int:
    sr = 44100
    block = sr * 5
    n = int(minutes * 60 * sr)
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((1, block)) * 0.1).astype(np.float32)
    engine = StreamingEngine(lambda z: z, 1, chunk=ChunkConfig(), batch_size=2)
    tracemalloc.start()
    count = 0
    for out in engine.process(noise[:, : min(block, n - i)] for i in range(0, n, block)):
        count += out.shape[1]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    return peak


def test_memory_does_not_grow_with_duration():
    short, long = _peak_bytes(1), _peak_bytes(10)
    assert long < 1.15 * short, (short, long)


def test_total_frames_cover_every_sample():
    cfg = StftConfig()
    for n in (1, 511, 512, 513, 100_000):
        t = total_frames(n, cfg)
        last = 1536 + n - 1  # padded index of the last sample
        assert (t - 1) * 512 <= last < (t - 1) * 512 + 2048
        assert last < t * 512  # no frame past the end is needed
