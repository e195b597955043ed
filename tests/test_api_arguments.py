"""The Python API checks its arguments once, at the entry, as the CLI does: a bad value is one
ElmoError naming the argument, never a silently wrong result (batch_size=-1 used to return Nones
and write no vectors) or an error from deep inside (batch_size=0: range())."""

from __future__ import annotations

import pytest

from conftest import ALLENNLP
from elmo_lm import Elmo, ElmoError, Embedder
from elmo_lm.tasks import TrainSettings, evaluate_task, train_task

OPTIONS, WEIGHTS = ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5"


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": -1}, "batch_size must be a positive integer, not -1"),
    ({"batch_size": 0}, "batch_size must be a positive integer, not 0"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer, not 2.5"),
    ({"batch_size": True}, "batch_size must be a positive integer, not True"),
    ({"stateful": "yes"}, "stateful must be True or False"),
    ({"precision": "half"}, "precision must be one of 'float32', .*, not 'half'"),
    ({"token_cache": -5}, "token_cache must be a positive integer"),
    ({"device": "gpu7"}, "device must be a torch device"),
])
def test_embedder_refuses_bad_arguments(changes, message):
    with pytest.raises(ElmoError, match=message):
        Embedder(options_file=OPTIONS, weight_file=WEIGHTS, **changes)


@pytest.mark.parametrize("batch_size", [-1, 0, "8"])
def test_encode_refuses_a_bad_batch_size_instead_of_returning_nones(fixture_embedder, batch_size):
    with pytest.raises(ElmoError, match="batch_size must be a positive integer"):
        fixture_embedder.encode([["a", "b"], ["c"], []], batch_size=batch_size)
    with pytest.raises(ElmoError, match="batch_size must be a positive integer"):
        list(fixture_embedder.embed_sentences([["a"]], batch_size=batch_size))


@pytest.mark.parametrize("kwargs, message", [
    ({"layers": "middle"}, "layers must be one of 'all', 'top', 'average', not 'middle'"),
    ({"output": "word"}, "output must be one of 'token', 'sentence'"),
    ({"show_progress_bar": "no"}, "show_progress_bar must be True or False"),
])
def test_encode_refuses_bad_choices(fixture_embedder, kwargs, message):
    with pytest.raises(ElmoError, match=message):
        fixture_embedder.encode([["a"]], **kwargs)


@pytest.mark.parametrize("sentences", [[["a", 3]], [42], [None]])
def test_encode_refuses_sentences_that_are_not_strings_or_token_lists(fixture_embedder, sentences):
    with pytest.raises(ElmoError, match="a sentence must be a string or a list of token strings"):
        fixture_embedder.encode(sentences)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": -1}, "batch_size must be a positive integer, not -1"),
    ({"batch_size": 0}, "batch_size must be a positive integer, not 0"),
    ({"layers": "first"}, "layers must be one of"),
    ({"overwrite": "yes"}, "overwrite must be True or False"),
])
def test_embed_file_refuses_bad_arguments_and_writes_nothing(fixture_embedder, tmp_path, kwargs, message):
    (tmp_path / "in.txt").write_text("a b\nc\n")
    with pytest.raises(ElmoError, match=message):
        fixture_embedder.embed_file(tmp_path / "in.txt", tmp_path / "out.hdf5", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


@pytest.mark.parametrize("changes, message", [
    ({"num_output_representations": 0}, "num_output_representations must be a positive integer, not 0"),
    ({"dropout": 1.5}, "dropout must be a number in \\[0, 1\\), not 1.5"),
    ({"dropout": "0.1"}, "dropout must be a number in \\[0, 1\\), not '0.1'"),
    ({"requires_grad": "no"}, "requires_grad must be True or False"),
    ({"precision": "half"}, "precision must be one of 'float32', .*, not 'half'"),
    ({"vocab_to_cache": "words"}, "vocab_to_cache must be a list of word strings"),
])
def test_elmo_refuses_bad_arguments(changes, message):
    arguments = {"num_output_representations": 1, **changes}
    with pytest.raises(ElmoError, match=message):
        Elmo(OPTIONS, WEIGHTS, **arguments)


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs must be a positive integer, not 0"),
    ({"batch_size": -1}, "batch_size must be a positive integer, not -1"),
    ({"learning_rate": -1}, "learning_rate must be a number >= 0, not -1"),
    ({"seed": "zero"}, "seed must be an integer"),
])
def test_task_settings_refuse_bad_values(changes, message):
    with pytest.raises(ElmoError, match=message):
        TrainSettings(**changes)


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "parser"}, "task must be one of 'tagger', 'classifier', not 'parser'"),
    ({"head_options": {"dropout": 2}}, "dropout must be a number in \\[0, 1\\), not 2"),
    ({"head_options": {"hidden_dim": 0}}, "hidden_dim must be a positive integer, not 0"),
    ({"tokenize": 1}, "tokenize must be True or False"),
])
def test_train_task_refuses_bad_arguments_before_reading_anything(tmp_path, kwargs, message):
    arguments = {"task": "tagger", "train_file": tmp_path / "missing.txt", "out_dir": tmp_path / "head", **kwargs}
    with pytest.raises(ElmoError, match=message):
        train_task(**arguments)
    assert not (tmp_path / "head").exists()


def test_evaluate_task_checks_its_output_paths_before_the_work(tmp_path):
    with pytest.raises(ElmoError, match="folder .*missing does not exist"):
        evaluate_task(tmp_path / "no-head", tmp_path / "test.txt", predictions_file=tmp_path / "missing" / "p.txt")
