"""`elmo task train` / `elmo task evaluate` as functions: from labelled files to a head folder and metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ElmoError
from ..model import ElmoBiLM
from .data import Example, read_examples
from .features import elmo_layers, static_features
from .folder import METRICS, load_head, save_head, write_json
from .heads import HeadConfig, TaskHead, build_head
from .spans import SPAN_SCHEMES, detect_scheme
from .static import StaticVectors, load_static_vectors
from .train import TaskData, TrainSettings, encode_targets, predict_ids, score, train_head

MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".hdf5")
"""Files of a model folder that `ModelSource.key` describes (config, weights)."""

DEV_SHARE = 0.1
"""Without a dev file, this share of the training examples (at least one) is held out for early stopping."""


@dataclass
class ModelSource:
    """Which ELMo model to run: a model folder, AllenNLP/bilm-tf files, or the bundled model."""

    model_dir: str | None = None
    options_file: str | None = None
    weight_file: str | None = None

    def is_given(self) -> bool:
        """True if any of the three was set."""
        return any((self.model_dir, self.options_file, self.weight_file))

    def to_dict(self) -> dict[str, str]:
        """Absolute paths for a head config (empty for the bundled model)."""
        values = {"model_dir": self.model_dir, "options_file": self.options_file, "weight_file": self.weight_file}
        return {key: str(Path(value).resolve()) for key, value in values.items() if value}

    def load(self) -> ElmoBiLM:
        """Open the model (the bundled one when nothing is given)."""
        from ..bundled import open_model

        return open_model(self.model_dir or None, self.options_file or None, self.weight_file or None)

    def key(self) -> str:
        """Identifies the model for feature caches: its files' paths, sizes and modification times,
        so a model written again into the same folder (a re-bundled or re-exported model) does not
        reuse the layers cached for the old one."""
        from .. import bundled

        paths = [Path(value) for value in (self.model_dir, self.options_file, self.weight_file) if value]
        files = []
        for path in paths or [bundled.BUNDLED_MODEL]:
            if path.is_dir():
                files += sorted(p for p in path.iterdir() if p.suffix in MODEL_FILE_SUFFIXES and p.is_file())
            else:
                files.append(path)
        described = []
        for file in files:
            stat = file.stat() if file.is_file() else None
            described.append((str(file.resolve()), stat.st_size if stat else None, stat.st_mtime_ns if stat else None))
        return repr(described)


@dataclass
class StaticSource:
    """Where static word vectors come from (a text file, or `.npy` with a vocabulary)."""

    path: str
    vocab: str | None = None

    def to_dict(self) -> dict[str, str]:
        """Absolute paths for a head config."""
        values = {"path": str(Path(self.path).resolve())}
        if self.vocab:
            values["vocab"] = str(Path(self.vocab).resolve())
        return values

    def load(self) -> StaticVectors:
        """Read the vectors."""
        return load_static_vectors(self.path, self.vocab)


@dataclass
class Inputs:
    """The loaded inputs of a head: the ELMo model (None for elmo="none") and static vectors."""

    model: ElmoBiLM | None = None
    model_key: str = ""
    static: StaticVectors | None = None
    cache_dir: Path | None = None
    show_progress_bar: bool = False
    _embedder: Any = field(default=None, repr=False)

    def features(self, config: HeadConfig, examples: Sequence[Example], name: str) -> TaskData:
        """Precompute a head's inputs for `examples`, with targets over `config.labels`."""
        sentences = [example.tokens for example in examples]
        layers = static = None
        if config.elmo != "none":
            assert self.model is not None
            if self._embedder is None:
                from ..embed import Embedder

                self._embedder = Embedder(self.model)
            cache = self.cache_dir / name if self.cache_dir is not None else None
            layers = elmo_layers(self._embedder, sentences, cache, self.model_key,
                                 show_progress_bar=self.show_progress_bar)
        if config.static_dim:
            assert self.static is not None
            static = static_features(self.static, sentences)
        return TaskData(layers, static, encode_targets([example.labels for example in examples], config.labels))


def _check_model(config: HeadConfig, model: ElmoBiLM, source: str) -> None:
    """The head's ELMo shape must be the model's."""
    if (config.n_layers, config.elmo_dim) != (model.config.n_output_layers, model.config.output_dim):
        raise ElmoError(f"{source}: the head was trained on {config.n_layers} ELMo layers of width "
                        f"{config.elmo_dim}, this model gives {model.config.n_output_layers} of width "
                        f"{model.config.output_dim}")


def _split_dev(examples: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out `DEV_SHARE` of the examples (at least one, when there are two or more)."""
    if len(examples) < 2:
        return examples, []
    order = np.random.default_rng(seed).permutation(len(examples))
    n_dev = max(1, int(round(len(examples) * DEV_SHARE)))
    dev = {int(i) for i in order[:n_dev]}
    return [e for i, e in enumerate(examples) if i not in dev], [e for i, e in enumerate(examples) if i in dev]


def train_task(
    task: str,
    train_file: str | Path,
    out_dir: str | Path,
    dev_file: str | Path | None = None,
    model: ModelSource | None = None,
    static: StaticSource | None = None,
    head_options: dict[str, Any] | None = None,
    settings: TrainSettings | None = None,
    tokenize: bool = False,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a head on a labelled file and save it (with `metrics.json`) to `out_dir`.

    Args:
        task: "tagger" or "classifier".
        train_file, dev_file: labelled files (without a dev file, 10% of train is held out).
        out_dir: the head folder to write.
        model: the ELMo model (bundled by default; unused with `head_options["elmo"] == "none"`).
        static: static word vectors to concatenate (or use alone).
        head_options: `HeadConfig` fields: elmo, do_layer_norm, dropout, encoder, hidden_dim,
            pooling, mix_l2, standardize (default on with ELMo), crf (None or absent: on for a
            tagger whose tags follow a span scheme, BIO / IOB1 / BIOES, detected from the
            training file).
        settings: training settings.
        tokenize: classification text is raw: split it with the built-in tokenizer.
        cache_dir: keep the precomputed ELMo layers here (float16) and reuse them.
        log: progress lines.

    Returns:
        The metrics written to `metrics.json`.
    """
    settings = settings or TrainSettings()
    head_options = dict(head_options or {})
    model = model or ModelSource()
    train = read_examples(train_file, task, tokenize)
    dev = read_examples(dev_file, task, tokenize) if dev_file is not None else None
    if dev is None:
        train, dev = _split_dev(train, settings.seed)
    labels = sorted({label for example in train for label in example.labels})
    head_options.setdefault("standardize", head_options.get("elmo", "mix") != "none")
    if task == "tagger":
        head_options["tag_scheme"] = detect_scheme(labels, [example.labels for example in train])
        if head_options.get("crf") is None:
            head_options["crf"] = head_options["tag_scheme"] in SPAN_SCHEMES
    else:
        head_options["crf"] = bool(head_options.get("crf"))
        if head_options["crf"]:
            raise ElmoError("--crf is for taggers only")
    inputs = Inputs(cache_dir=Path(cache_dir) if cache_dir else None, show_progress_bar=log is not None)
    n_layers = elmo_dim = static_dim = 0
    recorded: dict[str, Any] = {"tokenize": tokenize}
    if head_options.get("elmo", "mix") != "none":
        inputs.model, inputs.model_key = model.load(), model.key()
        n_layers, elmo_dim = inputs.model.config.n_output_layers, inputs.model.config.output_dim
        recorded["elmo_model"] = model.to_dict()
    if static is not None:
        inputs.static = static.load()
        static_dim = inputs.static.dim
        recorded["static_vectors"] = static.to_dict()
    config = HeadConfig(task=task, labels=labels, n_layers=n_layers, elmo_dim=elmo_dim, static_dim=static_dim,
                        inputs=recorded, **head_options)  # type: ignore[arg-type]
    torch.manual_seed(settings.seed)
    head = build_head(config)
    train_data = inputs.features(config, train, "train")
    dev_data = inputs.features(config, dev, "dev") if dev else None
    summary = train_head(head, train_data, dev_data, settings, log)
    metrics = {"task": task, "train_file": str(train_file), "dev_file": str(dev_file) if dev_file else None,
               "train_examples": len(train), "dev_examples": len(dev or []), "labels": len(labels),
               "settings": settings.__dict__, **summary}
    if inputs.static is not None:
        metrics["static_coverage_train"] = inputs.static.coverage([e.tokens for e in train])
    save_head(head, out_dir, metrics)
    return metrics


def evaluate_task(
    head_dir: str | Path,
    test_file: str | Path,
    model: ModelSource | None = None,
    static: StaticSource | None = None,
    predictions_file: str | Path | None = None,
    metrics_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score a saved head on a labelled file; optionally write its predictions and the metrics.

    Args:
        head_dir: a folder written by `train_task`.
        test_file: labelled file in the head's task format.
        model: the ELMo model (default: the one the head was trained with).
        static: static vectors (default: the ones the head was trained with).
        predictions_file: write predictions here, in the input format.
        metrics_file: write the metrics here as JSON.
        cache_dir: keep the precomputed ELMo layers here.
        log: progress lines (enables the progress bar).
    """
    head = load_head(head_dir)
    config = head.config
    examples = read_examples(test_file, config.task, bool(config.inputs.get("tokenize", False)))
    inputs = Inputs(cache_dir=Path(cache_dir) if cache_dir else None, show_progress_bar=log is not None)
    if config.elmo != "none":
        if model is None or not model.is_given():
            model = ModelSource(**config.inputs.get("elmo_model", {}))
        inputs.model, inputs.model_key = model.load(), model.key()
        _check_model(config, inputs.model, str(head_dir))
    if config.static_dim:
        if static is None:
            recorded = config.inputs.get("static_vectors")
            if not recorded:
                raise ElmoError(f"{head_dir}: the head uses static vectors; pass --static FILE")
            static = StaticSource(recorded["path"], recorded.get("vocab"))
        inputs.static = static.load()
        if inputs.static.dim != config.static_dim:
            raise ElmoError(f"{static.path}: vectors of width {inputs.static.dim}, the head expects {config.static_dim}")
    data = inputs.features(config, examples, "evaluate")
    predicted = predict_ids(head, data)
    metrics = {"head": str(head_dir), "test_file": str(test_file),
               **score(config.task, data.targets, predicted, config.labels, config.tag_scheme,
                       gold_tags=[example.labels for example in examples])}
    metrics["unknown_labels"] = int(sum((targets < 0).sum() for targets in data.targets))
    if predictions_file is not None:
        write_predictions(predictions_file, config, examples, predicted)
    if metrics_file is not None:
        write_json(metrics_file, metrics)
    return metrics


def write_predictions(path: str | Path, config: HeadConfig, examples: Sequence[Example],
                      predicted: Sequence[np.ndarray]) -> None:
    """Predictions in the input format: `token<TAB>tag` lines, or `text<TAB>label` lines."""
    lines = []
    for example, ids in zip(examples, predicted):
        if config.task == "tagger":
            lines.extend(f"{token}\t{config.labels[i]}" for token, i in zip(example.tokens, ids))
            lines.append("")
        else:
            lines.append(f"{' '.join(example.tokens)}\t{config.labels[int(ids[0])]}")
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def head_summary(head: TaskHead) -> str:
    """One line: the layer weights and gamma of a head's mix (or what it uses instead)."""
    weights = head.layer_weights()
    if weights is None:
        return f"ELMo input: {head.config.elmo}"
    return f"layer weights {' '.join(f'{w:.3f}' for w in weights)}, gamma {head.gamma():.3f}"


__all__ = ["ModelSource", "StaticSource", "train_task", "evaluate_task", "write_predictions", "head_summary",
           "METRICS"]
