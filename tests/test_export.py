"""Export to ONNX and SavedModel, and denoising with ONNX Runtime and no TensorFlow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from histdenoise.card import ModelCard
from histdenoise.errors import CheckpointError, ExportError
from histdenoise.model.export import export_model, read_export
from histdenoise.model.native import read_card
from histdenoise.onnx_backend import CARD_KEY, EXPORT_KEY, OnnxNetwork
from tests.conftest import REPO, SMALL_CKPT

TOLERANCE = 1e-4
"""Largest accepted difference, relative to the largest output magnitude."""


def rel_error(got, expected) -> float:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape
    return float(np.max(np.abs(got - expected)) / np.max(np.abs(expected)))


def leftovers(folder) -> list[str]:
    """What is in ``folder`` besides the test's cache."""
    return sorted(p.name for p in folder.iterdir() if p.name != "cache")


def spectrogram(batch, frames, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, frames, 1025, 2)).astype("float32")


@pytest.fixture(scope="module")
def small_onnx(reference, tmp_path_factory):
    return export_model(SMALL_CKPT, tmp_path_factory.mktemp("small") / "onnx", "onnx")


@pytest.fixture(scope="module")
def small_savedmodel(reference, tmp_path_factory):
    return export_model(SMALL_CKPT, tmp_path_factory.mktemp("small") / "sm", "savedmodel")


@pytest.fixture(scope="module")
def small_card(reference):
    from histdenoise import load_model

    return load_model(SMALL_CKPT).card


@pytest.fixture(scope="module")
def sentinel_model(sentinel):
    from histdenoise import load_network

    return load_network(sentinel)


# --------------------------------------------------------------------------- ONNX
def test_onnx_matches_reference_and_tensorflow(small_onnx, small_model, reference):
    ref = np.load(reference / "forward_small.npz")
    y = OnnxNetwork(small_onnx)(ref["x"])
    assert rel_error(y, ref["stage2"]) < TOLERANCE
    assert rel_error(y, small_model(ref["x"])[0]) < TOLERANCE
    assert read_export(small_onnx)["export"]["max_error"] < TOLERANCE  # the export's own check


@pytest.mark.parametrize(("batch", "frames"), [(1, 448), (2, 64), (3, 5), (1, 1)])
def test_onnx_batch_and_frames_are_dynamic(sentinel_onnx, sentinel_model, batch, frames):
    x = spectrogram(batch, frames, seed=frames)
    y = OnnxNetwork(sentinel_onnx)(x)
    assert y.shape == x.shape
    assert rel_error(y, sentinel_model(x)[0]) < TOLERANCE


def test_onnx_batches_split_over_worker_sessions_give_the_same_output(sentinel_onnx):
    from concurrent.futures import ThreadPoolExecutor

    split = OnnxNetwork(sentinel_onnx, parallel=2)
    whole = OnnxNetwork(sentinel_onnx, parallel=1)
    assert (split.parallel, whole.parallel) == (2, 1)
    x = spectrogram(3, 64, seed=5)
    expected = whole(x)
    assert whole._made == 0  # one session, never split
    np.testing.assert_array_equal(split(x), expected)  # parts of 2 and 1 on two sessions
    assert split._made == 2
    # calls made at once (files in flight) share the worker sessions, make no more
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(split, [x[i : i + 1] for i in range(3)] * 4))
    for i, y in enumerate(outs):
        np.testing.assert_array_equal(y, expected[i % 3 : i % 3 + 1])
    assert split._made == 2 and split._in_flight == 0


def test_onnx_shared_by_several_callers_runs_lone_calls_on_worker_sessions(sentinel_onnx):
    net = OnnxNetwork(sentinel_onnx, parallel=2)
    x = spectrogram(1, 64, seed=6)
    expected = net(x)
    assert net._made == 0  # a lone one-spectrogram call: the main session
    with net.shared(2), net.shared(1):  # files in flight: a worker session (1 thread)
        np.testing.assert_array_equal(net(x), expected)
        assert net._made == 1 and net._worker_threads == max(1, (os.cpu_count() or 1) // 2)
    assert net._callers == 0
    net(x)
    assert net._made == 1  # back on the main session
    alone = OnnxNetwork(sentinel_onnx, parallel=1)
    with alone.shared(3):  # nothing to share: one session
        alone(x)
    assert alone._made == 0


def test_files_in_flight_share_the_denoisers_network(sentinel_onnx, tmp_path):
    import soundfile as sf

    from histdenoise.denoiser import DenoiseConfig, Denoiser
    from histdenoise.runner import RunSummary, collect, plan_run, run_files

    d = Denoiser(sentinel_onnx, backend="onnxruntime", batch_size=1)
    d.model.parallel = 2  # as on a 2-core CPU, whatever this one has
    d.model._worker_threads = 1
    main_calls = []
    main_run = d.model.session.run
    d.model.session.run = lambda *a: main_calls.append(1) or main_run(*a)  # counts calls
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(tmp_path / f"f{i}.wav", 0.1 * rng.standard_normal(4000), 16000)
    jobs, _ = collect([tmp_path])
    plan = plan_run(jobs, tmp_path / "out")
    assert len(plan.files) == 3
    summary = run_files(d, plan.files, DenoiseConfig(dehum="off", dethump="off"), RunSummary(),
                        workers=2)
    assert len(summary.results) == 3 and not summary.errors
    # every call went to the 1-thread worker sessions, none to the all-core main one
    assert not main_calls and d.model._made >= 1 and d.model._callers == 0


def test_denoiser_batch_size_defaults_to_the_onnx_worker_count(sentinel):
    from histdenoise.denoiser import Denoiser
    from histdenoise.onnx_backend import default_parallel

    assert Denoiser(backend="onnxruntime").batch_size == default_parallel()
    assert Denoiser(backend="onnxruntime", batch_size=1).batch_size == 1
    assert Denoiser(sentinel, backend="tensorflow").batch_size == 1


def test_onnx_other_frame_counts_of_the_reference_model(small_onnx, small_model):
    net = OnnxNetwork(small_onnx)
    for batch, frames in ((1, 64), (3, 6)):
        x = spectrogram(batch, frames)
        assert rel_error(net(x), small_model(x)[0]) < TOLERANCE


def test_onnx_graph_signature_and_card_round_trip(small_onnx, small_card):
    import onnx

    proto = onnx.load(str(small_onnx / "model.onnx"))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    for value, name in ((inp, "spectrogram"), (out, "denoised")):
        dims = value.type.tensor_type.shape.dim
        assert value.name == name
        assert [d.dim_param or d.dim_value for d in dims] == ["batch", "frames", 1025, 2]
    meta = {p.key: p.value for p in proto.metadata_props}
    expected = small_card.to_dict()
    assert json.loads(meta[CARD_KEY]) == expected
    on_disk = json.loads((small_onnx / "model.json").read_text())
    assert on_disk["export"] == json.loads(meta[EXPORT_KEY])
    assert on_disk["export"]["opset"] == 17 and on_disk["export"]["checked_frames"] == [4, 7]
    assert {k: v for k, v in on_disk.items() if k != "export"} == expected
    assert read_card(small_onnx) == small_card  # model.json is a card
    card = OnnxNetwork(small_onnx).card
    assert card == small_card
    assert (card.name, card.stft.bins, card.weights_sha256) == (
        "small_checkpoint",
        1025,
        small_card.weights_sha256,
    )


def test_a_bare_onnx_file_reads_its_card_from_metadata(sentinel_onnx, tmp_path):
    lone = tmp_path / "elsewhere" / "sentinel.onnx"
    lone.parent.mkdir()
    lone.write_bytes((sentinel_onnx / "model.onnx").read_bytes())
    net = OnnxNetwork(lone)
    assert net.path == lone and net.card.name == "sentinel" and net.card.licence == "MIT"
    assert net.export_info["format"] == "onnx"


def test_model_card_ignores_the_export_record():
    card = ModelCard.from_dict({"name": "x", "stft": {"sample_rate": 22050}, "export": {}})
    assert card.stft.sample_rate == 22050 and card.config is None
    assert "export" not in card.to_dict()
    with pytest.raises(ValueError):
        ModelCard.from_dict({"stft": {}})


# --------------------------------------------------------------------------- SavedModel
def test_savedmodel_loads_back_and_matches_tensorflow(
    small_savedmodel, small_model, small_card, reference
):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(small_savedmodel))
    ref = np.load(reference / "forward_small.npz")
    y = loaded.serve(tf.constant(ref["x"]))["denoised"].numpy()
    assert rel_error(y, ref["stage2"]) < TOLERANCE
    assert rel_error(y, small_model(ref["x"])[0]) < TOLERANCE
    x = spectrogram(2, 9)
    y = loaded.signatures["serving_default"](spectrogram=tf.constant(x))["denoised"].numpy()
    assert rel_error(y, small_model(x)[0]) < TOLERANCE
    card = json.loads((small_savedmodel / "model.json").read_text())
    assert card["export"]["format"] == "savedmodel" and card["export"]["max_error"] < TOLERANCE
    assert read_card(small_savedmodel) == small_card


# --------------------------------------------------------------------------- export errors
def test_export_refuses_to_overwrite_unless_asked(sentinel, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match=f"^{re.escape(str(out))}: already exists"):
        export_model(sentinel, out, "savedmodel")
    assert (out / "keep.txt").read_text() == "mine"
    assert export_model(sentinel, out, "savedmodel", overwrite=True) == out
    assert (out / "saved_model.pb").is_file() and not (out / "keep.txt").exists()
    assert leftovers(tmp_path) == ["export"]  # no temporary folder left


def test_export_errors_are_one_line_and_leave_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="unknown export format"):
        export_model("bundled", out, "tflite")
    with pytest.raises(ExportError, match=r"give a name without \.onnx"):
        export_model("bundled", tmp_path / "model.onnx")
    with pytest.raises(CheckpointError, match="no such file or folder"):
        export_model(tmp_path / "missing" / "checkpoint", out)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is not a folder"):
        export_model("bundled", tmp_path / "file", overwrite=True)
    assert leftovers(tmp_path) == ["file"]


def test_a_failed_check_leaves_no_output(sentinel, tmp_path, monkeypatch):
    import histdenoise.model.export as export

    monkeypatch.setattr(export, "_check", lambda *a, **k: 0.5)
    with pytest.raises(ExportError, match=r"differs from TensorFlow by 5\.00e-01"):
        export_model(sentinel, tmp_path / "bad", "savedmodel")
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- ONNX errors
def test_onnx_backend_refuses_what_is_not_an_onnx_export(sentinel, tmp_path):
    with pytest.raises(CheckpointError, match="not a registry name"):
        OnnxNetwork("moliner2022")  # registered, no ONNX shipped
    with pytest.raises(
        CheckpointError, match=f"^{re.escape(str(sentinel))}: not an exported ONNX model"
    ):
        OnnxNetwork(sentinel)
    with pytest.raises(CheckpointError, match="not an ONNX model"):
        OnnxNetwork(sentinel / "model.weights.h5")
    with pytest.raises(CheckpointError, match="no such file or folder"):
        OnnxNetwork(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(
        CheckpointError, match=f"^{re.escape(str(broken))}: not a readable ONNX model"
    ):
        OnnxNetwork(broken)


def test_onnx_without_a_card_is_refused(sentinel_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(sentinel_onnx / "model.onnx"))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(CheckpointError, match="no model card"):
        OnnxNetwork(bare)
    (tmp_path / "model.json").write_text((sentinel_onnx / "model.json").read_text())
    assert OnnxNetwork(bare).card.name == "sentinel"  # model.json beside it is enough


def test_denoiser_backend_arguments(sentinel):
    from histdenoise.denoiser import Denoiser

    with pytest.raises(ValueError, match="backend must be one of"):
        Denoiser(sentinel, backend="torch")
    with pytest.raises(CheckpointError, match="needs an exported ONNX model"):
        Denoiser("moliner2022", backend="onnxruntime")  # a registry name with no ONNX


def test_the_bundled_model_ships_as_onnx_too(tmp_path):
    """`--backend onnxruntime` works out of the box: checkpoints/bundled/model.onnx is the
    export of the shipped weights (same card and sha256) and computes what they compute."""
    from histdenoise.denoiser import Denoiser
    from histdenoise.model.loading import load_network

    d = Denoiser(backend="onnxruntime")  # the default model
    native = read_card(REPO / "checkpoints" / "bundled")
    assert d.model.path == REPO / "checkpoints" / "bundled" / "model.onnx"
    assert d.card.name == "bundled"
    assert d.card.weights_sha256 == native.weights_sha256
    x = np.random.default_rng(3).standard_normal((1, 100, 1025, 2)).astype(np.float32)
    expected = np.asarray(load_network("bundled")(x, training=False)[0])
    assert rel_error(d.model(x), expected) < TOLERANCE


# --------------------------------------------------------------------------- no TensorFlow
NO_TF_SCRIPT = """
import sys
from histdenoise.cli import main
code = main({argv!r})
heavy = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx")]
assert "tensorflow" not in sys.modules and not heavy, heavy
sys.exit(code)
"""


def test_onnxruntime_denoise_runs_without_tensorflow_and_matches_it(
    sentinel, sentinel_onnx, tmp_path
):
    from histdenoise.denoiser import DenoiseConfig, Denoiser

    rng = np.random.default_rng(5)
    t = np.arange(int(2.5 * 48000)) / 48000
    x = 0.4 * np.sin(2 * np.pi * 220 * t)[:, None] * [1.0, 0.6] + 0.05 * rng.standard_normal(
        (t.size, 2)
    )
    src = tmp_path / "in.wav"
    sf.write(src, x, 48000, subtype="FLOAT")
    argv = ["denoise", str(src), "-o", str(tmp_path / "ort"), "--quiet"]
    argv += ["--backend", "onnxruntime", "--model", str(sentinel_onnx)]
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_TF_SCRIPT.format(argv=argv))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "ort" / "in_report.json").read_text())
    assert report["settings"]["backend"] == "onnxruntime"
    assert report["model"]["name"] == "sentinel"
    Denoiser(sentinel).denoise_file(src, tmp_path / "tf", settings=DenoiseConfig())
    for name in ("in_denoised.wav", "in_residual.wav"):
        got, sr = sf.read(tmp_path / "ort" / name, dtype="float32")
        expected, _ = sf.read(tmp_path / "tf" / name, dtype="float32")
        assert sr == 48000 and got.shape == expected.shape == x.shape
        assert rel_error(got, expected) < TOLERANCE, name


def denoise_without_tensorflow(src, *flags: str) -> subprocess.CompletedProcess:
    """``histdenoise denoise SRC FLAGS`` in a process where TensorFlow and Keras cannot be
    imported (as if not installed)."""
    script = (
        "import sys\n"
        "sys.modules['tensorflow'] = sys.modules['keras'] = None  # as if not installed\n"
        "from histdenoise.cli import main\n"
        f"sys.exit(main(['denoise', {str(src)!r}, *{list(flags)!r}]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_tensorflow_backend_without_tensorflow_is_one_line(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, np.zeros(4410), 44100)
    out = denoise_without_tensorflow(src, "--quiet", "--backend", "tensorflow")
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "histdenoise: error: the tensorflow backend needs TensorFlow (keras is not installed: "
        "pip install tensorflow), or use --backend onnxruntime with an ONNX export"
    ]
    assert leftovers(tmp_path) == ["in.wav"]


def test_the_default_command_runs_the_shipped_model_without_tensorflow(tmp_path):
    """`histdenoise denoise FILE` (backend auto) runs the bundled model's ONNX graph: it
    works where TensorFlow is not installed, and says so in the report."""
    src = tmp_path / "in.wav"
    sf.write(src, 0.1 * np.sin(np.arange(22050) / 7.0), 44100)
    out = denoise_without_tensorflow(src, "--quiet")
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "in_report.json").read_text())
    assert report["settings"]["backend"] == "onnxruntime"
    assert report["model"]["name"] == "bundled"
    assert leftovers(tmp_path) == ["in.wav", "in_denoised.wav", "in_report.json", "in_residual.wav"]


def test_auto_backend_choice(sentinel, sentinel_onnx, tmp_path, caplog):
    """auto: ONNX Runtime for a model whose ONNX graph records the weights beside it,
    TensorFlow for TensorFlow-only options, bare checkpoints and stale graphs."""
    import shutil

    from histdenoise.denoiser import Denoiser, resolve_backend

    assert resolve_backend(None) == ("onnxruntime", REPO / "checkpoints/bundled/model.onnx")
    assert resolve_backend("bundled", precision="bfloat16") == ("tensorflow", "bundled")
    assert resolve_backend("bundled", jit=True) == ("tensorflow", "bundled")
    assert resolve_backend(sentinel) == ("tensorflow", sentinel)  # no model.onnx beside it
    assert resolve_backend(sentinel_onnx)[0] == "onnxruntime"  # an export folder
    paired = tmp_path / "paired"
    shutil.copytree(sentinel, paired)
    shutil.copy(sentinel_onnx / "model.onnx", paired / "model.onnx")
    assert Denoiser(paired).backend == "onnxruntime"
    import onnx

    proto = onnx.load(str(paired / "model.onnx"))  # as if exported from earlier weights
    meta = {p.key: p.value for p in proto.metadata_props}
    stale = {**json.loads(meta[CARD_KEY]), "weights_sha256": "0" * 64}
    onnx.helper.set_model_props(proto, {**meta, CARD_KEY: json.dumps(stale)})
    onnx.save(proto, str(paired / "model.onnx"))
    with caplog.at_level("WARNING", logger="histdenoise"):
        d = Denoiser(paired)  # the graph was exported from other weights: not used
    assert d.backend == "tensorflow"
    assert "not exported from the model.weights.h5 beside it" in caplog.text


def test_onnx_graph_is_channels_first_without_conditionals():
    """The shipped graph (histdenoise.model.onnx_graph): no `If` nodes, and no transposes but
    the two at its input and output; it loads in well under a second."""
    import onnx

    proto = onnx.load(str(REPO / "checkpoints" / "bundled" / "model.onnx"))
    ops = [node.op_type for node in proto.graph.node]
    assert "If" not in ops and ops.count("Transpose") == 2
    assert ops.count("Conv") + ops.count("ConvTranspose") >= 100


def test_onnx_graph_speed_rewrites_compute_what_tensorflow_computes():
    """The rewrites of histdenoise.onnx_graph for ONNX Runtime's speed: narrow (4- and
    2-channel) convolutions as merged 3-D ones, Resize up-sampling; on a seeded network
    with 2 layers per dense block (sums of several sources), odd frame counts."""
    import keras
    import onnxruntime as ort

    from histdenoise.card import NetworkConfig
    from histdenoise.model.network import build_network
    from histdenoise.model.onnx_graph import build_onnx

    keras.utils.set_random_seed(7)
    config = NetworkConfig(channels=(4, 8, 16), depth=2, dense_layers=2)
    model = build_network(config)
    proto = build_onnx(model, config)
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    kernel_ranks = {n.output[0]: len(n.attribute[0].ints) for n in convs}  # kernel_shape
    assert sorted(set(kernel_ranks.values())) == [2, 3]  # narrow ones 3-D, the rest 2-D
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Split") >= 5 and ops.count("Resize") == 4 and "Reshape" not in ops
    assert not proto.graph.value_info  # shapes of every tensor: 4x ONNX Runtime's memory

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch, frames in ((2, 37), (1, 8)):
        x = spectrogram(batch, frames, seed=frames)
        got = session.run(["denoised"], {"spectrogram": x})[0]
        assert rel_error(got, model(x, training=False)[0]) < TOLERANCE


def test_package_exports_the_api():
    import histdenoise

    assert histdenoise.Denoiser.__name__ == "Denoiser"
    assert histdenoise.export_model is export_model and histdenoise.OnnxNetwork is OnnxNetwork
