"""Domain fine-tuning through the real CLI (the ELMo paper's claim, small): a tiny model trained briefly on the
news fixture corpus, exported with its softmax, continued with `elmo train --init` on text of another domain,
ends with less than half of its earlier perplexity on held-out text of that domain, and the softmax it was trained
with is kept rather than re-initialised. (The domain here is tiny and regular, and 40 Adam steps at 3e-3 on it
make the model forget the news text: forgetting is not what this test is about.)"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from training_runs import TRAIN_GLOB, elmo, fixture_vocab

from elmo_lm.vocab import Vocabulary

BASE_STEPS = 30
FINETUNE_STEPS = 40


def domain_text(vocab: Vocabulary, seed: int, lines: int) -> str:
    """Sentences of a small, regular 'domain' over in-vocabulary words: `the NOUN is ADJ and ADJ .`, with the
    words drawn from two fixed lists of the vocabulary (the same lists for every seed: one domain)."""
    words = [token for token in vocab.tokens[3:] if token.isalpha() and token.islower()]
    nouns, adjectives = words[40:52], words[60:70]
    rng = random.Random(seed)
    return "".join(f"the {rng.choice(nouns)} is {rng.choice(adjectives)} and {rng.choice(adjectives)} .\n"
                   for _ in range(lines))


def perplexity(model: Path, data: Path) -> dict[str, dict[str, float]]:
    """`elmo evaluate --json` on `data`: {mode: {forward_ppl, backward_ppl, ppl, ...}}."""
    return json.loads(elmo("evaluate", "--model", model, "--data", data, "--batch-size", "8", "--json").stdout)


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    """A tiny model trained briefly on the news shards, exported with its softmax."""
    folder = tmp_path_factory.mktemp("finetune")
    elmo("train", "--train", TRAIN_GLOB, "--vocab", fixture_vocab(folder), "--config", "tiny", "--out", folder / "run",
         "--max-steps", BASE_STEPS, "--batch-size", "8", "--set", "optimizer=adam", "--set", "learning_rate=0.003",
         "--set", "plot=false", "-q")
    elmo("export", folder / "run", folder / "base")
    return folder / "base"


def test_finetuning_on_domain_text_lowers_its_held_out_perplexity(base_model, tmp_path):
    vocab = Vocabulary.load(base_model / "vocab.txt")
    train, held_out = tmp_path / "domain-train.txt", tmp_path / "domain-held-out.txt"
    train.write_text(domain_text(vocab, seed=1, lines=400), encoding="utf-8")
    held_out.write_text(domain_text(vocab, seed=2, lines=60), encoding="utf-8")
    before = perplexity(base_model, held_out)
    done = elmo("train", "--init", base_model, "--vocab", base_model / "vocab.txt", "--train", train,
                "--out", tmp_path / "run", "--max-steps", FINETUNE_STEPS, "--batch-size", "8",
                "--set", "optimizer=adam", "--set", "learning_rate=0.003", "--set", "plot=false", "-q")
    assert "kept the init model's softmax" in done.stderr
    elmo("export", tmp_path / "run", tmp_path / "tuned")
    after = perplexity(tmp_path / "tuned", held_out)
    for mode in ("stateless", "stateful"):
        for key in ("forward_ppl", "backward_ppl"):
            assert after[mode][key] < 0.5 * before[mode][key], (mode, key, before[mode], after[mode])
