"""Downstream heads on the tiny fixture model: they learn simple synthetic tasks, the mix penalty
enters the loss, heads round-trip through their folder, the readers name bad lines, and
`elmo task train` / `evaluate` work through the real entry point.

The fixture model's token vectors are nearly collinear, so the synthetic tasks use what it does
separate: word identity per token (tagging) and a punctuation mark in a sentence (classification).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from elmo_lm import Embedder, ElmoError, load_model
from elmo_lm.tasks import (HeadConfig, StaticVectors, TaskData, TrainSettings, build_head, elmo_layers,
                           encode_targets, evaluate_head, load_head, load_static_vectors, predict_ids,
                           read_classification, read_tagged, save_head, selection_metric, static_features,
                           train_head)
from elmo_lm.tasks.data import Example
from elmo_lm.tasks.run import ModelSource, evaluate_task, train_task

from conftest import ALLENNLP, PROJECT_ROOT

OPTIONS, WEIGHTS = ALLENNLP / "options.json", ALLENNLP / "lm_weights.hdf5"
NOUNS = "cat dog house river tree car bird city".split()
VERBS = "runs sees eats likes takes finds makes opens".split()
FAST = TrainSettings(epochs=10, batch_size=16, learning_rate=1e-2, patience=10)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(load_model(options_file=OPTIONS, weight_file=WEIGHTS))


def tagging_examples(n: int, rng: random.Random) -> list[Example]:
    """Sentences of nouns and verbs; the tag says which."""
    out = []
    for _ in range(n):
        tokens = [rng.choice(NOUNS + VERBS) for _ in range(rng.randint(3, 8))]
        out.append(Example(tokens, ["N" if token in NOUNS else "V" for token in tokens], 0))
    return out


def classification_examples(n: int, rng: random.Random) -> list[Example]:
    """Half the sentences contain "!" somewhere; the label says whether."""
    out = []
    for i in range(n):
        tokens = [rng.choice(NOUNS + VERBS) for _ in range(rng.randint(3, 8))]
        if i % 2:
            tokens[rng.randrange(len(tokens))] = "!"
        out.append(Example(tokens, ["yes" if i % 2 else "no"], 0))
    return out


def task_data(embedder: Embedder, config: HeadConfig, examples: list[Example],
              static: StaticVectors | None = None) -> TaskData:
    sentences = [example.tokens for example in examples]
    layers = elmo_layers(embedder, sentences) if config.elmo != "none" else None
    static_part = static_features(static, sentences) if static is not None else None
    return TaskData(layers, static_part, encode_targets([e.labels for e in examples], config.labels))


def head_config(task: str, labels: list[str], **options) -> HeadConfig:
    values = {"n_layers": 3, "elmo_dim": 32, "dropout": 0.1, "hidden_dim": 32, **options}
    return HeadConfig(task, labels, **values)


# --- learning -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["lstm", "none"])
def test_tagger_learns_word_classes(embedder, encoder):
    rng = random.Random(0)
    config = head_config("tagger", ["N", "V"], encoder=encoder)
    train, dev, test = (task_data(embedder, config, tagging_examples(n, rng)) for n in (160, 40, 100))
    torch.manual_seed(0)
    head = build_head(config)
    settings = FAST if encoder == "lstm" else TrainSettings(epochs=25, batch_size=16, learning_rate=3e-2, patience=25)
    summary = train_head(head, train, dev, settings)
    assert evaluate_head(head, test)["accuracy"] >= 0.9
    assert summary["dev"]["accuracy"] == max(record["dev"]["accuracy"] for record in summary["history"])
    assert len(summary["layer_weights"]) == 3 and abs(sum(summary["layer_weights"]) - 1) < 1e-6


@pytest.mark.parametrize("pooling, encoder", [("mean", "none"), ("max", "none"), ("max", "lstm"),
                                              ("attention", "lstm")])
def test_classifier_learns_marked_sentences(embedder, pooling, encoder):
    rng = random.Random(1)
    config = head_config("classifier", ["no", "yes"], encoder=encoder, pooling=pooling)
    train, dev, test = (task_data(embedder, config, classification_examples(n, rng)) for n in (160, 40, 100))
    torch.manual_seed(0)
    head = build_head(config)
    train_head(head, train, dev, FAST)
    metrics = evaluate_head(head, test)
    assert metrics["accuracy"] >= 0.95
    assert metrics["macro_f1"] >= 0.95


def test_attention_pooling_ignores_padding(embedder):
    """A sentence pools to the same vector alone and padded in a batch with a longer one."""
    config = head_config("classifier", ["no", "yes"], encoder="lstm", pooling="attention")
    data = task_data(embedder, config, [Example(["a", "cat"], ["no"], 0),
                                        Example(["the", "dog", "runs", "home", "!"], ["yes"], 0)])
    torch.manual_seed(0)
    head = build_head(config).eval()
    with torch.no_grad():
        alone = head.pool(head.encode(data.batch([0])), data.batch([0]).mask)  # (1, H)
        padded = head.pool(head.encode(data.batch([0, 1])), data.batch([0, 1]).mask)  # (2, H)
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)


def test_static_vectors_alone_and_concatenated(embedder):
    """A head on static vectors only learns from them; with ELMo they are concatenated."""
    rng = random.Random(2)
    words = NOUNS + VERBS
    vectors = np.eye(len(words), dtype=np.float32)  # one dimension per word
    static = StaticVectors(words, vectors)
    config = head_config("tagger", ["N", "V"], elmo="none", n_layers=0, elmo_dim=0, static_dim=len(words))
    train, test = (task_data(embedder, config, tagging_examples(n, rng), static) for n in (120, 60))
    torch.manual_seed(0)
    head = build_head(config)
    train_head(head, train, None, FAST)
    assert evaluate_head(head, test)["accuracy"] == 1.0
    both = head_config("tagger", ["N", "V"], static_dim=len(words))
    data = task_data(embedder, both, tagging_examples(4, rng), static)
    features = build_head(both).token_features(data.batch([0, 1, 2, 3]))  # (B, T, 32 + 16)
    assert features.shape[-1] == 32 + len(words)


# --- the scalar mix and its penalty ---------------------------------------------------------


def test_mix_penalty_is_l2_of_the_weights_and_holds_them_back(embedder):
    config = head_config("tagger", ["N", "V"], mix_l2=0.5)
    head = build_head(config)
    with torch.no_grad():
        head.mix.scalar_parameters.copy_(torch.tensor([1.0, -2.0, 0.5]))
    assert float(head.penalty().detach()) == pytest.approx(0.5 * (1 + 4 + 0.25))
    assert float(build_head(head_config("tagger", ["N", "V"], mix_l2=0.0)).penalty()) == 0.0

    rng = random.Random(3)
    examples = tagging_examples(120, rng)
    spread = {}
    for coefficient in (0.0, 100.0):
        config = head_config("tagger", ["N", "V"], mix_l2=coefficient)
        torch.manual_seed(0)
        head = build_head(config)
        train_head(head, task_data(embedder, config, examples), None, TrainSettings(epochs=4, learning_rate=3e-2))
        spread[coefficient] = float(head.mix.scalar_parameters.detach().abs().max())
    assert spread[0.0] > 0.05  # the weights move without the penalty...
    assert spread[100.0] < spread[0.0] / 5  # ...and stay near zero (an equal mix) with a large one


def test_top_and_average_inputs_have_no_learned_weights(embedder):
    data = task_data(embedder, head_config("tagger", ["N", "V"]), tagging_examples(3, random.Random(4)))
    batch = data.batch([0, 1, 2])
    top = build_head(head_config("tagger", ["N", "V"], elmo="top"))
    assert top.layer_weights() is None
    assert torch.equal(top.token_features(batch), batch.layers[:, -1] * batch.mask[..., None])
    average = build_head(head_config("tagger", ["N", "V"], elmo="average"))
    assert not average.mix.scalar_parameters.requires_grad
    assert torch.allclose(average.token_features(batch), batch.layers.mean(dim=1), atol=1e-6)


# --- features -------------------------------------------------------------------------------


def test_cached_layers_match_the_embedder_and_reload_from_disk(embedder, tmp_path):
    sentences = [["the", "cat", "runs"], ["a"], [], ["dogs", "bark", "at", "night", "."]]
    layers = elmo_layers(embedder, sentences, cache_dir=tmp_path, model_key="fixture")
    for i, tokens in enumerate(sentences):
        expected = embedder.embed_sentence(tokens).transpose(1, 0, 2)  # (n, L+1, 2P)
        np.testing.assert_allclose(layers[i].astype(np.float32), expected, rtol=1e-3, atol=1e-3)
    again = elmo_layers(embedder, sentences, cache_dir=tmp_path, model_key="fixture")
    assert isinstance(again.data, np.memmap)
    np.testing.assert_array_equal(np.asarray(again.data), np.asarray(layers.data))
    other = elmo_layers(embedder, sentences[:2], cache_dir=tmp_path, model_key="fixture")
    assert len(other) == 2  # different sentences: recomputed, not the stale copy
    np.testing.assert_array_equal(np.asarray(again.data), np.asarray(layers.data))  # the old mapping survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.json", "layers.npy"]


def test_model_key_changes_when_the_model_is_written_again(tmp_path):
    """The feature cache's model key follows the files, not just the path: a model exported again into
    the same folder must not get the layers cached for the old one."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes(b"1234")
    source = ModelSource(str(folder))
    key = source.key()
    assert source.key() == key
    (folder / "notes.txt").write_text("not part of the model")
    assert source.key() == key
    os.utime(folder / "model.safetensors", ns=(1, 1))
    assert source.key() != key
    assert ModelSource(options_file=str(OPTIONS), weight_file=str(WEIGHTS)).key() != key


# --- head folders ---------------------------------------------------------------------------


def test_saved_head_predicts_identically(embedder, tmp_path):
    rng = random.Random(5)
    config = head_config("tagger", ["N", "V"], do_layer_norm=True, inputs={"note": "test"})
    train, test = (task_data(embedder, config, tagging_examples(n, rng)) for n in (60, 30))
    torch.manual_seed(0)
    head = build_head(config)
    train_head(head, train, None, TrainSettings(epochs=2, learning_rate=1e-2))
    save_head(head, tmp_path / "head", {"note": "metrics"})
    loaded = load_head(tmp_path / "head")
    assert loaded.config == head.config
    batch = test.batch(list(range(len(test))))
    assert torch.equal(head.eval()(batch), loaded(batch))
    assert all(np.array_equal(a, b) for a, b in zip(predict_ids(head, test), predict_ids(loaded, test)))
    assert json.loads((tmp_path / "head" / "metrics.json").read_text()) == {"note": "metrics"}


def test_load_head_names_a_broken_folder(tmp_path):
    with pytest.raises(ElmoError, match="not a head folder"):
        load_head(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ElmoError, match="config.json: not valid JSON"):
        load_head(tmp_path)


# --- readers --------------------------------------------------------------------------------


def test_read_tagged_accepts_tabs_and_spaces(tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text("The\tDT\ncat NN\n\n\n\nNew York\tNNP\nruns\tVBZ\n", encoding="utf-8")
    examples = read_tagged(path)
    assert [e.tokens for e in examples] == [["The", "cat"], ["New York", "runs"]]
    assert [e.labels for e in examples] == [["DT", "NN"], ["NNP", "VBZ"]]
    assert [e.line for e in examples] == [1, 6]


@pytest.mark.parametrize("text, line", [("a DT\nb c NN\n", 2), ("a DT\n\nlonely\n", 3), ("x\tDT\ny\t\n", 2)])
def test_read_tagged_names_the_bad_line(tmp_path, text, line):
    path = tmp_path / "tags.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ElmoError, match=rf"tags.txt, line {line}:"):
        read_tagged(path)


def test_read_classification(tmp_path):
    path = tmp_path / "cls.txt"
    path.write_text("a fine film\tpos\n\nwith a\ttab inside\tneg\n", encoding="utf-8")
    examples = read_classification(path)
    assert [(e.tokens, e.labels, e.line) for e in examples] == [
        (["a", "fine", "film"], ["pos"], 1), (["with", "a", "tab", "inside"], ["neg"], 3)]
    path.write_text("ok\tpos\nno tab here\n", encoding="utf-8")
    with pytest.raises(ElmoError, match=r"cls.txt, line 2: expected 'text<TAB>label'"):
        read_classification(path)
    path.write_text("ok\t\n", encoding="utf-8")
    with pytest.raises(ElmoError, match=r"line 1: empty label"):
        read_classification(path)


# --- static vectors -------------------------------------------------------------------------


def test_static_vectors_formats_and_lookup(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("the 1 0\nParis 0 1\n", encoding="utf-8")
    word2vec = tmp_path / "w2v.txt"
    word2vec.write_text("2 2\nthe 1 0\nParis 0 1\n", encoding="utf-8")
    for path in (glove, word2vec):
        vectors = load_static_vectors(path)
        assert vectors.dim == 2 and len(vectors) == 2
        np.testing.assert_array_equal(vectors.lookup(["The", "Paris", "paris", "zzz"]),
                                      [[1, 0], [0, 1], [0, 0], [0, 0]])  # lowercase fallback, then zeros
    vectors.save(tmp_path / "v.npy", tmp_path / "v.vocab")
    loaded = load_static_vectors(tmp_path / "v.npy")
    np.testing.assert_array_equal(loaded.lookup(["THE"]), [[1, 0]])
    glove.write_text("the 1 0\nParis 0 x\n", encoding="utf-8")
    with pytest.raises(ElmoError, match=r"glove.txt, line 2: the last 2 fields are not all numbers"):
        load_static_vectors(glove)
    np.save(tmp_path / "novocab.npy", np.zeros((1, 2)))
    with pytest.raises(ElmoError, match=r"vocabulary of .*novocab.npy not found"):
        load_static_vectors(tmp_path / "novocab.npy")


# --- the command line -----------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "elmo_lm", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def write_tagged(path, examples: list[Example]) -> None:
    path.write_text("".join("".join(f"{t}\t{g}\n" for t, g in zip(e.tokens, e.labels)) + "\n" for e in examples),
                    encoding="utf-8")


def test_cli_train_and_evaluate_a_tagger(tmp_path):
    rng = random.Random(6)
    write_tagged(tmp_path / "train.txt", tagging_examples(160, rng))
    write_tagged(tmp_path / "test.txt", tagging_examples(60, rng))
    head = tmp_path / "head"
    trained = run_cli("task", "train", "tagger", str(tmp_path / "train.txt"), "--out", str(head),
                      "--options", str(OPTIONS), "--weights", str(WEIGHTS), "--dropout", "0.1", "--lr", "0.01",
                      "--batch-size", "16", "--epochs", "8", "--hidden", "32", "--quiet")
    assert trained.returncode == 0, trained.stderr
    assert "layer weights" in trained.stdout
    metrics = json.loads((head / "metrics.json").read_text())
    assert len(metrics["layer_weights"]) == 3 and metrics["dev_examples"] == 16
    assert json.loads((head / "config.json").read_text())["labels"] == ["N", "V"]

    evaluated = run_cli("task", "evaluate", str(head), str(tmp_path / "test.txt"), "--predictions",
                        str(tmp_path / "predicted.txt"), "--quiet")  # the model comes from the head's config
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = json.loads((head / "evaluation.json").read_text())["accuracy"]
    assert accuracy >= 0.9
    assert f"accuracy        {accuracy:.4f}" in evaluated.stdout
    predicted = read_tagged(tmp_path / "predicted.txt")
    assert [e.tokens for e in predicted] == [e.tokens for e in read_tagged(tmp_path / "test.txt")]

    again = run_cli("task", "train", "tagger", str(tmp_path / "train.txt"), "--out", str(head),
                    "--options", str(OPTIONS), "--weights", str(WEIGHTS))
    assert again.returncode == 2 and "pass --overwrite" in again.stderr


def test_cli_classifier_with_static_vectors(tmp_path):
    rng = random.Random(7)
    examples = classification_examples(100, rng)
    (tmp_path / "train.txt").write_text("".join(f"{' '.join(e.tokens)}\t{e.labels[0]}\n" for e in examples))
    (tmp_path / "vectors.txt").write_text("".join(f"{w} {i % 3} {i % 5}\n" for i, w in enumerate(NOUNS + VERBS)))
    result = run_cli("task", "train", "classifier", str(tmp_path / "train.txt"), "--out", str(tmp_path / "head"),
                     "--options", str(OPTIONS), "--weights", str(WEIGHTS), "--static", str(tmp_path / "vectors.txt"),
                     "--pooling", "max", "--epochs", "3", "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "head" / "config.json").read_text())
    assert config["static_dim"] == 2 and config["pooling"] == "max"
    assert config["inputs"]["static_vectors"]["path"] == str((tmp_path / "vectors.txt").resolve())
    evaluated = run_cli("task", "evaluate", str(tmp_path / "head"), str(tmp_path / "train.txt"), "--metrics",
                        str(tmp_path / "m.json"), "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "macro_f1" in json.loads((tmp_path / "m.json").read_text())


def test_cli_bad_input_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("The\tDT\ncat\tNN\n\nthis line has four fields\n", encoding="utf-8")
    result = run_cli("task", "train", "tagger", str(bad), "--out", str(tmp_path / "head"),
                     "--options", str(OPTIONS), "--weights", str(WEIGHTS))
    assert result.returncode == 2
    assert f"{bad}, line 4:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "head").exists()


# --- a skewed entity set under the default settings ---------------------------------------

FILLER = "the a of in on at big small old new cat dog house river tree car bird city runs sees eats likes".split()
PEOPLE = "alice bob carol dave".split()
PLACES = ["paris", "london", "new york", "rome"]


def entity_examples(n: int, rng: random.Random) -> list[Example]:
    """Ten-token sentences, every other one holding one entity (a one-word person or a one- or
    two-word place, BIO tags): about 95% of the tokens are `O`."""
    out = []
    for i in range(n):
        tokens = [rng.choice(FILLER) for _ in range(10)]
        tags = ["O"] * 10
        if i % 2:
            at = rng.randrange(9)
            if rng.random() < 0.5:
                tokens[at], tags[at] = rng.choice(PEOPLE), "B-PER"
            else:
                for k, word in enumerate(rng.choice(PLACES).split()):
                    tokens[at + k], tags[at + k] = word, "I-LOC" if k else "B-LOC"
        out.append(Example(tokens, tags, 0))
    return out


def test_default_settings_find_entities_in_a_skewed_set(tmp_path):
    """The issue's failure: on a set of mostly `O` tags, the old defaults (accuracy selection,
    patience 3, learning rate 1e-3, softmax) stopped on the all-`O` prediction. The defaults now
    (CRF, standardized inputs, selection on span F1, minimum epochs) find the entities."""
    rng = random.Random(8)
    train, test = entity_examples(600, rng), entity_examples(100, rng)
    share = sum(tag == "O" for e in train for tag in e.labels) / sum(len(e.labels) for e in train)
    assert share > 0.94
    write_tagged(tmp_path / "train.txt", train)
    write_tagged(tmp_path / "test.txt", test)
    source = ModelSource(options_file=str(OPTIONS), weight_file=str(WEIGHTS))
    torch.set_num_threads(1)
    metrics = train_task("tagger", tmp_path / "train.txt", tmp_path / "head", model=source)
    assert metrics["selection_metric"] == "span_f1"
    config = json.loads((tmp_path / "head" / "config.json").read_text())
    assert config["crf"] and config["tag_scheme"] == "BIO" and config["standardize"]
    evaluated = evaluate_task(tmp_path / "head", tmp_path / "test.txt")
    assert evaluated["span_f1"] > 0.5, evaluated
    assert set(evaluated["per_type"]) == {"LOC", "PER"}
    printed = run_cli("task", "evaluate", str(tmp_path / "head"), str(tmp_path / "test.txt"), "--quiet")
    assert printed.returncode == 0, printed.stderr
    assert f"span_f1         {evaluated['span_f1']:.4f}" in printed.stdout
    assert any(line.startswith("PER ") for line in printed.stdout.splitlines())
    saved = json.loads((tmp_path / "head" / "evaluation.json").read_text())
    assert saved["per_type"]["PER"]["gold"] == evaluated["per_type"]["PER"]["gold"] > 0


def test_selection_metric_and_patience_after_min_epochs(embedder):
    tagger = head_config("tagger", ["B-X", "I-X", "O"], tag_scheme="BIO")
    assert selection_metric(tagger, []) == "span_f1"
    assert selection_metric(head_config("tagger", ["N", "V"]), []) == "accuracy"
    classifier = head_config("classifier", ["no", "yes"])
    assert selection_metric(classifier, [np.array([0])] * 9 + [np.array([1])]) == "macro_f1"
    assert selection_metric(classifier, [np.array([0]), np.array([1])]) == "accuracy"
    with pytest.raises(ElmoError, match="does not apply"):
        selection_metric(head_config("tagger", ["N", "V"]), [], "span_f1")
    # A dev set the head cannot get better on (learning rate 0: nothing changes):
    # it runs the minimum number of epochs plus the patience, then stops.
    rng = random.Random(9)
    config = head_config("tagger", ["N", "V"])
    train, dev = (task_data(embedder, config, tagging_examples(n, rng)) for n in (40, 20))
    summary = train_head(build_head(config), train, dev,
                         TrainSettings(epochs=30, learning_rate=0.0, min_epochs=4, patience=2))
    assert summary["epochs_run"] == 6 and summary["selection_metric"] == "accuracy"


def test_cli_defaults_are_the_library_defaults():
    from elmo_lm.cli import task_train_command

    defaults = {param.name: param.default for param in task_train_command.params}
    settings = TrainSettings()
    for name in ("epochs", "batch_size", "learning_rate", "patience", "min_epochs", "metric", "seed"):
        assert defaults[name] == getattr(settings, name), name
