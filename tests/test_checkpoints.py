"""Reading the authors' TF checkpoints, the native format, and `load_network`."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from histdenoise import load_model, load_network
from histdenoise.card import ModelCard
from histdenoise.errors import CheckpointError, RegistryError
from histdenoise.model.native import load_native, read_card, save_native
from histdenoise.model.network import NetworkConfig, build_network, checkpoint_variables
from histdenoise.model.tf_checkpoint import (
    find_prefix,
    infer_config,
    read_weights,
    save_tf_checkpoint,
)
from tests.conftest import SMALL_CKPT

TINY = NetworkConfig(channels=(4, 8, 8, 16), depth=3, dense_layers=2)
X = np.random.default_rng(1).standard_normal((1, 9, 1025, 2)).astype("float32")


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for var in checkpoint_variables(model).values():
        var.assign(rng.standard_normal(var.shape).astype("float32") * 0.1)
    return model


@pytest.fixture(scope="module")
def tiny():
    return randomize(build_network(TINY))


def test_infer_config_from_reference_checkpoint(reference):
    weights = read_weights(SMALL_CKPT / "checkpoint")
    assert len(weights) == 92
    assert infer_config(weights) == NetworkConfig.small()


@pytest.mark.parametrize("where", ["prefix", "index", "folder", "folder_without_state_file", "zip"])
def test_load_network_accepts_every_form(where, tmp_path, small_model, small_zip_bytes):
    folder = tmp_path / "ckpt dir ü"  # spaces and non-ASCII in the path
    shutil.copytree(SMALL_CKPT, folder)
    source = {
        "prefix": folder / "checkpoint",
        "index": folder / "checkpoint.index",
        "folder": folder,
        "folder_without_state_file": folder,
        "zip": tmp_path / "checkpoint.zip",
    }[where]
    if where == "folder_without_state_file":
        (folder / "checkpoint").unlink()
    if where == "zip":
        source.write_bytes(small_zip_bytes)
    model, card = load_model(source)
    expected = np.asarray(small_model(X)[0])
    np.testing.assert_array_equal(np.asarray(model(X)[0]), expected)
    assert card.config == NetworkConfig.small()
    assert len(card.weights_sha256) == 64


def test_zip_is_unpacked_once(tmp_path, small_zip_bytes, isolated_cache):
    archive = tmp_path / "checkpoint.zip"
    archive.write_bytes(small_zip_bytes)
    load_network(archive)
    load_network(archive)
    assert len(list((isolated_cache / "archives").iterdir())) == 1


def test_paper_keyed_prefix_loads_with_71m_parameters(tmp_path):
    """Issue 2's done-when: a TF checkpoint written with the paper keys loads by prefix."""
    model = build_network(NetworkConfig.paper())
    prefix = save_tf_checkpoint(model, tmp_path / "paper" / "checkpoint")
    del model
    loaded, card = load_model(str(prefix))
    assert loaded.count_params() == 71_408_196
    assert card.config == NetworkConfig.paper()


def test_tf_checkpoint_round_trip_without_object_graph(tiny, tmp_path):
    prefix = save_tf_checkpoint(tiny, tmp_path / "x" / "ckpt")
    assert find_prefix(tmp_path / "x") == prefix
    loaded = load_network(prefix)
    np.testing.assert_array_equal(np.asarray(loaded(X)[0]), np.asarray(tiny(X)[0]))


def _write_weights(tmp_path, weights):
    import tensorflow as tf

    from histdenoise.model.tf_checkpoint import KEY_PREFIX, KEY_SUFFIX

    prefix = tmp_path / "bad" / "checkpoint"
    prefix.parent.mkdir()
    names = sorted(weights)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=[f"{KEY_PREFIX}{n}{KEY_SUFFIX}" for n in names],
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(weights[n]) for n in names],
    )
    return prefix


def test_errors_name_file_and_list_missing_unexpected_misshaped(tmp_path):
    weights = read_weights(SMALL_CKPT / "checkpoint")
    del weights["sam_1/conv3/bias"]
    weights["sam_1/conv4/bias"] = np.zeros(3, "float32")
    weights["finalblock/conv2/kernel"] = np.zeros((3, 3, 32, 3), "float32")
    prefix = _write_weights(tmp_path, weights)
    with pytest.raises(CheckpointError) as err:
        load_network(prefix)
    msg = str(err.value)
    assert str(prefix) in msg and "\n" not in msg
    assert "missing: sam_1/conv3/bias" in msg
    assert "unexpected: sam_1/conv4/bias" in msg
    assert "mis-shaped: finalblock/conv2/kernel (3, 3, 32, 3) != (3, 3, 32, 2)" in msg


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="junk: not a checkpoint"):
        load_network(junk)
    (junk / "checkpoint.index").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable TensorFlow checkpoint"):
        load_network(junk)
    with pytest.raises(CheckpointError, match="no such file"):
        load_network(tmp_path / "nowhere" / "checkpoint")
    bad_zip = tmp_path / "checkpoint.zip"
    bad_zip.write_bytes(b"PK not really")
    with pytest.raises(CheckpointError, match=r"checkpoint\.zip: not a readable zip"):
        load_network(bad_zip)


def test_unknown_registry_name_lists_known_models():
    with pytest.raises(RegistryError, match=r"nosuchmodel: no such model.*moliner2022"):
        load_network("nosuchmodel")


def test_native_round_trip(tiny, tmp_path):
    card = ModelCard(
        name="tiny",
        config=TINY,
        licence="MIT",
        training={"steps": 3},
        metrics={"si_sdr_improvement_db": 1.5},
    )
    folder = save_native(tiny, tmp_path / "tiny model", card)
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.weights.h5"]
    loaded, loaded_card = load_native(folder)
    np.testing.assert_array_equal(np.asarray(loaded(X)[0]), np.asarray(tiny(X)[0]))
    assert loaded_card.config == TINY
    assert loaded_card.training == {"steps": 3}
    assert loaded_card.stft.n_fft == 2048 and loaded_card.stft.hop == 512
    assert set(loaded_card.software) >= {"histdenoise", "tensorflow", "keras", "numpy", "python"}
    assert loaded_card.created.endswith("+00:00")
    raw = json.loads((folder / "model.json").read_text())
    assert raw["format_version"] == 1 and raw["config"]["channels"] == [4, 8, 8, 16]
    # load_network takes the folder or its card
    for src in (folder, folder / "model.json"):
        np.testing.assert_array_equal(np.asarray(load_network(src)(X)[0]), np.asarray(tiny(X)[0]))
    # native folders also load from a zip
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in folder.iterdir():
            zf.write(p, f"tiny/{p.name}")
    assert load_model(archive).card.name == "tiny"


def test_native_refuses_tampered_weights_and_existing_folder(tiny, tmp_path):
    folder = save_native(tiny, tmp_path / "m", ModelCard(name="m", config=TINY))
    with pytest.raises(CheckpointError, match="already exists"):
        save_native(tiny, folder, ModelCard(name="m", config=TINY))
    data = bytearray((folder / "model.weights.h5").read_bytes())
    data[-100] ^= 0xFF
    (folder / "model.weights.h5").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.weights.h5: sha256 .* does not match"):
        load_native(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid model card"):
        read_card(folder)
    assert not list(tmp_path.glob(".m.*")), "no temporary folders left behind"
