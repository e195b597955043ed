"""Continued training: start from an existing model and fit its softmax to the new vocabulary.

`elmo train --init MODEL` accepts a model folder (this project's, or one holding `options.json` +
`weights.hdf5`) or a released `weights.hdf5` (with `options.json` beside it or named by
`--init-options`). The released models carry no softmax; one is added. A softmax over another
vocabulary keeps the rows of the words both vocabularies share when the model's folder has its
`vocab.txt`; without that file it is re-initialised (or kept, when its size matches).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import ElmoError
from ..io import load_model
from ..io.folder import VOCAB_NAME
from ..model import ElmoBiLM
from ..vocab import Vocabulary


def load_init_model(
    init: str | Path, vocab: Vocabulary, options_file: str | Path | None = None, log: Callable[[str], None] = print
) -> ElmoBiLM:
    """Open the model to continue training from, with a softmax over `vocab`.

    Args:
        init: a model folder or a weights `.hdf5` file.
        vocab: the vocabulary the training run uses.
        options_file: the `options.json` of an `.hdf5` init (default: the one beside it).
        log: receives one line per decision about the softmax.
    """
    path = Path(init)
    if path.is_file():
        options = Path(options_file) if options_file is not None else path.parent / "options.json"
        if not options.is_file():
            raise ElmoError(f"--init {path}: no options.json beside it; name one with --init-options")
        model = load_model(options_file=options, weight_file=path)
        folder = path.parent
    elif path.is_dir():
        model = load_model(path)
        folder = path
    else:
        raise ElmoError(f"--init {path}: no such model folder or weight file")
    old_vocab = _read_vocab(folder / VOCAB_NAME, log)
    fit_softmax(model, vocab, old_vocab, log)
    model.train()
    return model


def _read_vocab(path: Path, log: Callable[[str], None]) -> Vocabulary | None:
    if not path.is_file():
        return None
    try:
        return Vocabulary.load(path)
    except ElmoError as error:
        log(f"ignoring the init model's vocabulary: {error}")
        return None


def fit_softmax(
    model: ElmoBiLM, vocab: Vocabulary, old_vocab: Vocabulary | None, log: Callable[[str], None] = print
) -> None:
    """Give `model` a softmax over `vocab`, reusing what its current softmax knows where possible.

    - no softmax: a new one is initialised;
    - a softmax with `old_vocab` known: rows are mapped by word (same vocabulary: kept as is), new
      words get freshly initialised rows;
    - a softmax without its vocabulary: kept if it has `len(vocab)` rows, else re-initialised.
    """
    V = len(vocab)
    old = model.softmax
    if old is None:
        model.add_softmax(V)
        log(f"the init model has no softmax: initialised a new one over {V:,} words")
        return
    if old_vocab is not None and len(old_vocab) != old.out_features:
        log(f"the init model's vocab.txt has {len(old_vocab):,} tokens but its softmax {old.out_features:,} rows: "
            "ignoring the vocabulary file")
        old_vocab = None
    if old_vocab is None:
        if old.out_features == V:
            log(f"the init model's softmax has {V:,} rows like --vocab but no vocab.txt to check the words: "
                "keeping it, assuming the same vocabulary")
            return
        model.add_softmax(V)
        log(f"the init model's softmax has {old.out_features:,} rows, --vocab has {V:,} words, and there is no "
            "vocab.txt to map them: re-initialised the softmax")
        return
    if old_vocab == vocab:
        log(f"kept the init model's softmax ({V:,} words, the same vocabulary)")
        return
    old_weight, old_bias = old.weight.detach(), old.bias.detach()
    model.add_softmax(V)
    assert model.softmax is not None
    pairs = [(i, old_vocab.id(token)) for i, token in enumerate(vocab) if token in old_vocab]
    new_rows = torch.tensor([i for i, _ in pairs], dtype=torch.long)
    old_rows = torch.tensor([j for _, j in pairs], dtype=torch.long)
    with torch.no_grad():
        model.softmax.weight[new_rows] = old_weight[old_rows]  # (k, P)
        model.softmax.bias[new_rows] = old_bias[old_rows]  # (k,)
    log(f"mapped the init model's softmax by word: {len(pairs):,} of {V:,} words kept their rows, "
        f"{V - len(pairs):,} new rows initialised")
