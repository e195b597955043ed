"""Train -> export -> load -> embed: the exported model folder and bilm-tf files hold the trained weights
(softmax included), embed identically, evaluate to the run's validation perplexity, and continue training."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from training_runs import HELD_OUT, elmo, read_jsonl, trained_run

from conftest import ALLENNLP
from elmo_lm.cli import main as cli_main
from elmo_lm.embed import Embedder
from elmo_lm.training.run_folder import load_run_model
from elmo_lm.training.init_model import fit_softmax
from elmo_lm.io import load_allennlp_weights, load_model
from elmo_lm.vocab import Vocabulary

SENTENCES = ALLENNLP / "sentences.txt"


@pytest.fixture(scope="session")
def learning_run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(learning_run, tmp_path_factory):
    run, _ = learning_run
    out = tmp_path_factory.mktemp("export") / "model"
    assert cli_main(["export", str(run), str(out)]) == 0
    return run, out


def test_export_writes_both_formats_with_the_trained_weights(exported):
    run, out = exported
    trained = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    folder_model = load_model(out)
    config, hdf5_state = load_allennlp_weights(out / "options.json", out / "weights.hdf5")
    assert "softmax.weight" in trained
    for key, value in trained.items():
        assert torch.equal(folder_model.state_dict()[key], value), key
        assert torch.equal(hdf5_state[key], value), key
    assert config == folder_model.config
    options = json.loads((out / "options.json").read_text())
    assert options["char_cnn"]["n_characters"] == 262
    assert options["n_tokens_vocab"] == trained["softmax.weight"].shape[0] == len(Vocabulary.load(out / "vocab.txt"))
    assert options["lstm"]["projection_dim"] == 64 and options["unroll_steps"] == 20
    with h5py.File(out / "weights.hdf5") as h5:
        assert h5["softmax/W"].shape == tuple(trained["softmax.weight"].shape)
        assert h5["char_embed"].shape[0] == 261
    assert cli_main(["export", str(run), str(out)]) == 2  # no silent overwrite


def test_exported_model_embeds_the_same_through_both_formats(exported, tmp_path):
    run, out = exported
    assert cli_main(["embed", str(SENTENCES), str(tmp_path / "folder.hdf5"), "--model", str(out)]) == 0
    assert cli_main(["embed", str(SENTENCES), str(tmp_path / "bilm.hdf5"), "--options", str(out / "options.json"),
                     "--weights", str(out / "weights.hdf5")]) == 0
    first_line = SENTENCES.read_text(encoding="utf-8").splitlines()[0].split()
    direct = Embedder(load_run_model(run)).embed_sentence(first_line)
    with h5py.File(tmp_path / "folder.hdf5") as a, h5py.File(tmp_path / "bilm.hdf5") as b:
        assert a["0"].shape == (3, len(first_line), 128)
        assert len(a.keys()) == len(b.keys()) > 10
        for name in a:
            if name != "sentence_to_index":
                np.testing.assert_array_equal(a[name][...], b[name][...])
        np.testing.assert_allclose(a["0"][...], direct, atol=1e-6)


def test_evaluate_reproduces_the_validation_perplexity(exported, capsys):
    run, out = exported
    capsys.readouterr()
    assert cli_main(["evaluate", "--model", str(out), "--data", str(HELD_OUT), "--batch-size", "16", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    last_valid = [r for r in read_jsonl(run / "metrics.jsonl") if r["split"] == "valid"][-1]
    # The validation during training read the same streams (batch 16, window 20, carried state).
    for key in ("forward_ppl", "backward_ppl", "ppl"):
        assert results["stateful"][key] == pytest.approx(last_valid[key], rel=1e-4)
    stateless = results["stateless"]
    assert stateless["tokens"] == last_valid["tokens"]
    assert stateless["ppl"] == pytest.approx((stateless["forward_ppl"] * stateless["backward_ppl"]) ** 0.5, rel=1e-6)
    assert 0.7 * last_valid["ppl"] < stateless["ppl"] < 1.5 * last_valid["ppl"]
    assert cli_main(["evaluate", "--model", str(run), "--data", str(HELD_OUT), "--mode", "stateless", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stateless"]["ppl"] == pytest.approx(stateless["ppl"], rel=1e-6)


def test_evaluate_refuses_a_model_without_softmax(tmp_path, capsys):
    Vocabulary(["<S>", "</S>", "<UNK>", "the"]).save(tmp_path / "vocab.txt")
    code = cli_main(["evaluate", "--model", str(ALLENNLP), "--data", str(HELD_OUT), "--vocab", str(tmp_path / "vocab.txt")])
    assert code == 2 and "no softmax" in capsys.readouterr().err


def test_softmax_rows_are_mapped_by_word(exported):
    _, out = exported
    model = load_model(out)
    old_vocab = Vocabulary.load(out / "vocab.txt")
    old_weight = model.softmax.weight.detach().clone()
    shared = old_vocab.tokens[3:40]
    new_vocab = Vocabulary(["<S>", "</S>", "<UNK>", "brand-new-word", *reversed(shared)])
    lines = []
    fit_softmax(model, new_vocab, old_vocab, log=lines.append)
    assert model.softmax.out_features == len(new_vocab)
    for token in [*shared, "<S>", "<UNK>"]:
        assert torch.equal(model.softmax.weight[new_vocab.id(token)], old_weight[old_vocab.id(token)]), token
    assert not torch.equal(model.softmax.weight[3], old_weight[3])
    assert "mapped" in lines[0] and f"{len(shared) + 3:,} of {len(new_vocab):,}" in lines[0]


def test_continue_training_from_the_export_and_from_a_released_hdf5(exported, tmp_path, capsys):
    run, out = exported
    common = ["--train", str(HELD_OUT), "--max-steps", "2", "--batch-size", "2", "--set", "plot=false", "-q"]
    # From the exported folder, with a vocabulary of other words: rows mapped by word.
    vocab = tmp_path / "vocab.txt"
    assert cli_main(["vocab", str(HELD_OUT), "-o", str(vocab)]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--init", str(out), "--vocab", str(vocab), "--out", str(tmp_path / "a"), *common]) == 0
    err = capsys.readouterr().err
    assert "mapped the init model's softmax by word" in err
    # From the exported hdf5 (vocab.txt beside it): the same vocabulary, the softmax kept.
    assert cli_main(["train", "--init", str(out / "weights.hdf5"), "--vocab", str(out / "vocab.txt"),
                     "--out", str(tmp_path / "b"), *common]) == 0
    assert "kept the init model's softmax" in capsys.readouterr().err
    # From a released model without a softmax: one is added, the shape comes from the model.
    assert cli_main(["train", "--init", str(ALLENNLP / "lm_weights.hdf5"), "--vocab", str(vocab), "--config", "tiny",
                     "--out", str(tmp_path / "c"), *common]) == 0
    err = capsys.readouterr().err
    assert "has no softmax: initialised a new one" in err and "the model shape comes from --init" in err
    continued = load_run_model(tmp_path / "c")
    assert continued.config.projection_dim == 16 and continued.softmax.out_features == len(Vocabulary.load(vocab))
    released = load_model(ALLENNLP)
    assert continued.lstm.input_weight[0].shape == released.lstm.input_weight[0].shape
    assert not torch.equal(continued.lstm.input_weight[0], released.lstm.input_weight[0])  # it trained


def test_export_of_a_folder_that_is_not_a_run(tmp_path):
    done = elmo("export", tmp_path, tmp_path / "out", check=False)
    assert done.returncode == 2 and "not a training run" in done.stderr and "Traceback" not in done.stderr
