"""One rule for unknown keys in every settings reader: a `HistdenoiseError` (still a
`ValueError`) naming the unknown keys and the known ones."""

from __future__ import annotations

import json

import pytest

from histdenoise.card import NetworkConfig, parse_card
from histdenoise.errors import HistdenoiseError
from histdenoise.stft import StftConfig
from histdenoise.training.data import DataConfig
from histdenoise.training.degradations import DegradationConfig, RecordingChain

READERS = [
    (NetworkConfig.from_dict, {"width": 3, "depth": 2},
     r"unknown network config fields: width \(known: channels, .*depth"),
    (StftConfig.from_dict, {"nfft": 1024},
     r"unknown STFT settings: nfft \(known: .*n_fft"),
    (RecordingChain.from_dict, {"acoustic": 0.5, "acustic": 0.2, "bands": 1},
     r"unknown RecordingChain settings: acustic, bands \(known: acoustic, "),
    (DegradationConfig.from_dict, {"hisss": None},
     r"unknown degradation settings: hisss \(known: hiss, clicks, .*level_db, probability\)"),
    (DegradationConfig.from_dict, {"hum": {"f0": 50}},
     r"unknown Hum settings: f0 \(known: .*mains_hz"),
    (DegradationConfig.from_dict, {"probability": {"hums": 0.5}},
     r"unknown noise types in probability: hums \(known: hiss, clicks, crackle, thumps, hum, "
     r"rumble\)"),
    (DataConfig.from_dict, {"corpus": ["x"], "segments": 3},
     r"unknown data settings: segments \(known: corpus, "),
    (DataConfig.from_dict, {"degradations": {"level_db": {"clik": [0, 1]}}},
     r"unknown noise types in level_db: clik \(known: hiss, "),
]


@pytest.mark.parametrize(("read", "settings", "message"), READERS)
def test_unknown_keys_are_one_error_naming_them_and_the_known_ones(read, settings, message):
    with pytest.raises(HistdenoiseError, match=message) as info:
        read(settings)
    assert isinstance(info.value, ValueError)  # what callers caught before
    assert "\n" not in str(info.value)


def test_a_card_with_an_unknown_stft_key_names_it():
    card = {"name": "m", "config": None, "stft": {"n_fft": 2048, "hop_length": 512}}
    with pytest.raises(HistdenoiseError, match=r"unknown STFT settings: hop_length \(known: "):
        parse_card(json.dumps(card))


def test_a_training_json_with_unknown_degradation_keys_names_the_file_and_key(tmp_path):
    from histdenoise.training import TrainConfig

    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": {"corpus": ["c"], "degradations": {"crackles": None}}}))
    with pytest.raises(HistdenoiseError,
                       match=r"train\.json: invalid training config \(unknown degradation "
                             r"settings: crackles \(known: hiss, "):
        TrainConfig.from_json(path)


def test_registry_entry_with_an_unknown_key_is_refused(tmp_path):
    """A misspelt key (here sha256 as sha265) would leave a download unverified."""
    from histdenoise.errors import RegistryError
    from histdenoise.registry import load_registry

    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"format_version": 1, "models": {"mine": {
        "urls": [{"url": "http://127.0.0.1/x.zip"}], "sha265": "ab" * 32}}}))
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid model registry (unknown key of model mine: sha265")
    assert "known: description, licence" in message and "\n" not in message
