"""Training configs: presets, JSON files (ours and bilm-tf's options.json), round trips, named errors."""

from __future__ import annotations

import json

import pytest

from elmo_lm.config import ModelConfig
from elmo_lm.errors import ElmoError
from elmo_lm.training.run_folder import parse_overrides
from elmo_lm.training.config import TrainConfig, preset, resolve_config


def test_json_config_changes_a_preset(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"preset": "tiny", "batch_size": 7, "optimizer": "adam", "epochs": None,
                                "max_steps": 100}))
    config = resolve_config(str(path))
    assert config.model == preset("tiny").model
    assert (config.batch_size, config.optimizer, config.lr, config.epochs, config.max_steps) == (7, "adam", 1e-3,
                                                                                                None, 100)


def test_bilm_tf_training_options_are_read():
    options = {
        "bidirectional": True, "batch_size": 128, "unroll_steps": 20, "n_epochs": 10, "n_train_tokens": 768648884,
        "n_tokens_vocab": 793471, "n_negative_samples_batch": 8192, "dropout": 0.1, "all_clip_norm_val": 10.0,
        "lstm": {"dim": 4096, "projection_dim": 512, "n_layers": 2, "cell_clip": 3, "proj_clip": 3,
                 "use_skip_connections": True},
        "char_cnn": {"embedding": {"dim": 16}, "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512],
                                                           [7, 1024]],
                     "n_highway": 2, "activation": "relu", "max_characters_per_token": 50, "n_characters": 261},
    }
    config = TrainConfig.from_dict(options)
    assert config.model == ModelConfig()
    assert (config.epochs, config.clip_norm, config.n_negative_samples, config.lr) == (10, 10.0, 8192, 0.2)
    assert config.use_sampled_softmax(793471) and not config.use_sampled_softmax(16384)


def test_round_trip():
    config = preset("tiny").replace(dropout=0.3, adam_betas=(0.8, 0.9), max_steps=5, softmax="full")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("change, message", [
    ({"learning_rat": 0.1}, "unknown training option 'learning_rat'"),
    ({"dropout": 1.5}, "dropout must be in [0, 1)"),
    ({"optimizer": "sgd"}, "optimizer must be one of adagrad, adam"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"epochs": None}, "set epochs or max_steps"),
    ({"lstm": {"dim": 8, "projection_dim": 4, "n_layers": 1}}, "give both 'lstm' and 'char_cnn'"),
    ({"preset": "huge"}, "unknown preset 'huge'"),
])
def test_bad_values_are_named(change, message):
    with pytest.raises(ElmoError, match="my.json") as error:
        TrainConfig.from_dict({"preset": "tiny", **change}, source="my.json")
    assert message in str(error.value)


def test_config_argument_errors(tmp_path):
    with pytest.raises(ElmoError, match="neither a preset"):
        resolve_config("smal")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ElmoError, match="bad.json: not a valid JSON config"):
        resolve_config(str(tmp_path / "bad.json"))


def test_set_overrides_parse_json_values():
    assert parse_overrides(["dropout=0.2", "epochs=null", "optimizer=adam", "tokenize=true"]) == {
        "dropout": 0.2, "epochs": None, "optimizer": "adam", "tokenize": True}
    with pytest.raises(ElmoError, match="KEY=VALUE"):
        parse_overrides(["dropout"])
