"""The `elmo` command: a thin table of subcommands, each its options parsed and one library call.

A model named by --model / --options / --weights is opened by `bundled.open_model` (the bundled
model when none is given). Every subcommand turns `ElmoError` (bad input: a file, a line, a key) into a one-line message on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from .batching import DEFAULT_BATCH_TOKENS, MAX_BATCH_ROWS
from .errors import ElmoError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="elmo-lm")
def cli() -> None:
    """ELMo contextual word embeddings: embed text, train and inspect language models.

    \b
    Start here:
      elmo embed input.txt vectors.hdf5 --options options.json --weights weights.hdf5
      elmo info MODEL
    Run `elmo COMMAND --help` for the options of each command.
    """


def _model_options(command):
    """--model / --options / --weights, shared by the commands that read a model."""
    command = click.option("--weights", "weight_file", type=click.Path(dir_okay=False),
                           help="AllenNLP/bilm-tf weights.hdf5 (with --options).")(command)
    command = click.option("--options", "options_file", type=click.Path(dir_okay=False),
                           help="AllenNLP/bilm-tf options.json (with --weights).")(command)
    command = click.option("--model", "model_dir", type=click.Path(file_okay=False),
                           help="A model folder (config.json + model.safetensors, or options.json + weights.hdf5). "
                                "Default: the bundled model.")(command)
    return command


@cli.command("embed")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@click.argument("output_file", metavar="OUTPUT", type=click.Path(dir_okay=False))
@_model_options
@click.option("--layers", type=click.Choice(["all", "top", "average"]), default="all", show_default=True,
              help="all: (L+1, n, 2P) per line; top / average: (n, 2P).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Sentences per batch (alone: batches by sentence count; with --batch-tokens: at most this many).")
@click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
              help=f"Padded tokens per batch: fewer sentences where they are long (default {DEFAULT_BATCH_TOKENS:,} "
                   "unless --batch-size is given; not with --stateful, which batches by --batch-size, default 64).")
@click.option("--stateful", is_flag=True,
              help="Reference behaviour: batches in file order, each row carrying its LSTM state to the next batch.")
@click.option("--tokenize", is_flag=True, help="Input is raw text: split each line with the built-in tokenizer.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to run: cuda embeds on the GPU (see docs/GPU.md).")
@click.option("--precision", type=click.Choice(["float32", "bfloat16", "float16", "int8"]), default="float32",
              show_default=True,
              help="bfloat16: matmuls in bfloat16 (cell state and clips in float32), up to twice as fast on "
                   "CPUs with AMX or AMD's AVX-512 BF16 (`elmo info` tells), no faster elsewhere; agrees with "
                   "float32 to about 3 significant digits. int8: int8 weights and matmuls (inputs quantised per "
                   "call) on any x86 CPU, a quarter of the weights' memory; approximate (see the README). "
                   "float16: GPUs only.")
@click.option("--token-cache", is_flag=True,
              help="Keep each word's context-free vector across batches (up to 50,000 words): exact, faster on "
                   "real text.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads (default: PyTorch's choice, one per core). Use 1 when other jobs share the cores.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def embed_command(input_file, output_file, model_dir, options_file, weight_file, layers, batch_size, batch_tokens,
                  stateful, tokenize, device, precision, token_cache, threads, overwrite, quiet):
    """Embed INPUT (UTF-8 text, one sentence per line) into OUTPUT (HDF5).

    OUTPUT gets one float32 dataset per input line, named by its 0-based line number ("0", "1",
    ...), of shape (L+1, n, 2P) for --layers all and (n, 2P) otherwise, plus `sentence_to_index`
    (JSON: sentence -> line number). Empty lines give (L+1, 0, 2P). Stateless by default: each
    sentence gets the same vectors whatever its neighbours. OUTPUT appears only when complete:
    until then it is written to .OUTPUT.PID-XXXXXXXX.tmp beside it (PID: the writing process),
    which a failure removes and which the next run over OUTPUT removes if its process was killed.
    """
    import torch

    from .embed import Embedder
    from .io.output_path import check_output_file

    check_output_file(output_file, overwrite)  # before loading the model
    if threads is not None:
        torch.set_num_threads(threads)
    # The embedder opens the model itself, so it keeps the weights only as the kernels read them (and
    # runs float32 where the CPU has no bfloat16 instructions: embedder.precision tells).
    if stateful and batch_tokens is not None:
        raise ElmoError("--batch-tokens needs stateless batches; with --stateful use --batch-size")
    if batch_tokens is None and batch_size is None and not stateful:
        batch_tokens = DEFAULT_BATCH_TOKENS
    embedder = Embedder(model_dir, options_file=options_file, weight_file=weight_file,
                        batch_size=batch_size or (MAX_BATCH_ROWS if batch_tokens else 64), batch_tokens=batch_tokens,
                        stateful=stateful, device=device, precision=precision, token_cache=token_cache,
                        tune_allocator=True)
    count = embedder.embed_file(input_file, output_file, layers=layers, overwrite=overwrite, tokenize=tokenize,
                                show_progress_bar=not quiet)
    click.echo(f"wrote {count} lines to {output_file}", err=True)


@cli.command("tune")
@_model_options
def tune_command(model_dir, options_file, weight_file):
    """Measure the inference kernels' choices for a model's shapes on this CPU and keep them.

    Times the per-step matmul paths (MKL packed, oneDNN packed, plain), tanh (direct or via
    sigmoid) and the input projection's chunk size at the model's shapes, and stores the fastest in
    the user's cache folder ($XDG_CACHE_HOME/elmo-lm/kernels.json) under this CPU's model, flags and
    torch version; later runs on this kind of CPU use them. `elmo embed` measures briefly by itself
    at a model's first use on a CPU (ELMO_LM_AUTOTUNE=0 turns that off); this measures longer.
    """
    from .bundled import open_model
    from .kernel_tuning import tune_kernels

    report = tune_kernels(open_model(model_dir, options_file, weight_file).config)
    click.echo(report.cpu_key)
    for shape, choice in report.entry["packing"].items():
        timings = ", ".join(f"{name} {seconds * 1e3:.3f} ms"
                            for name, seconds in report.entry["seconds"][shape].items())
        click.echo(f"packing {shape}: {choice} ({timings})")
    for size, via in report.entry["tanh_via_sigmoid"].items():
        click.echo(f"tanh of {int(size):,} values: {'via sigmoid' if via else 'direct'}")
    for shape, rows in report.entry["chunk_rows"].items():
        click.echo(f"input projection {shape}: chunks of {rows} rows")
    click.echo(f"kept in {report.cache_file}", err=True)


@cli.command("dump-token-embeddings")
@click.argument("vocab_file", metavar="VOCAB", type=click.Path(dir_okay=False))
@click.argument("output_file", metavar="OUTPUT", type=click.Path(dir_okay=False))
@_model_options
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def dump_token_embeddings_command(vocab_file, output_file, model_dir, options_file, weight_file, overwrite):
    """Write the context-free token vector of each VOCAB line to OUTPUT (HDF5 dataset `embedding`, (V, P))."""
    from .bundled import open_model
    from .embed import dump_token_embeddings
    from .io.output_path import check_output_file

    check_output_file(output_file, overwrite)  # before loading the model
    count = dump_token_embeddings(vocab_file, output_file, open_model(model_dir, options_file, weight_file), overwrite)
    click.echo(f"wrote {count} token vectors to {output_file}", err=True)


@cli.command("convert")
@click.argument("paths", metavar="[SOURCE] [OUT]", nargs=-1, type=click.Path(file_okay=False))
@click.option("--from", "source_format", type=click.Choice(["elmoformanylangs"]),
              help="SOURCE is another project's model folder: elmoformanylangs (an ELMoForManyLangs model).")
@_model_options
@click.option("--to", "target", type=click.Choice(["folder", "allennlp"]), required=True,
              help="folder: config.json + model.safetensors; allennlp: options.json + weights.hdf5.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (or OUT).")
@click.option("--overwrite", is_flag=True, help="Replace files in --out.")
def convert_command(paths, source_format, model_dir, options_file, weight_file, target, out_dir, overwrite):
    """Convert a model between the AllenNLP/bilm-tf files and this project's model folder, or an
    ELMoForManyLangs model into a model folder (`elmo convert --from elmoformanylangs DIR --to folder --out OUT`)."""
    from .bundled import open_model
    from .io.convert import convert_model

    if len(paths) > 2 or (len(paths) == 2 and out_dir is not None):
        raise ElmoError("give at most SOURCE and OUT (or --out)")
    source, out_dir = (paths[0] if paths else None), out_dir or (paths[1] if len(paths) == 2 else None)
    if out_dir is None:
        raise ElmoError("name the output folder: --out DIR")
    if source_format == "elmoformanylangs":
        if source is None:
            raise ElmoError("--from elmoformanylangs needs the model folder: elmo convert --from elmoformanylangs "
                            "DIR --to folder --out OUT")
        from .io.elmoformanylangs import load_elmoformanylangs

        model = load_elmoformanylangs(source)
    else:
        model = open_model(model_dir or source, options_file, weight_file)
    files = convert_model(model, target, out_dir, overwrite)
    click.echo(f"wrote {', '.join(str(path) for path in files)}", err=True)


@cli.command("info")
@click.argument("model_dir", metavar="MODEL", required=False, type=click.Path(file_okay=False))
@click.option("--options", "options_file", type=click.Path(dir_okay=False), help="AllenNLP/bilm-tf options.json.")
@click.option("--weights", "weight_file", type=click.Path(dir_okay=False), help="AllenNLP/bilm-tf weights.hdf5.")
def info_command(model_dir, options_file, weight_file):
    """Describe a model: sizes, parameter count, output layers (the bundled model by default)."""
    from .info import model_info

    rows = model_info(model_dir, options_file, weight_file)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


@cli.command("vocab")
@click.argument("corpus", metavar="CORPUS...", nargs=-1, required=True)
@click.option("-o", "--output", "output_file", type=click.Path(dir_okay=False), required=True,
              help="Vocabulary file to write (bilm-tf format).")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Keep words seen at least this often.")
@click.option("--max-size", type=click.IntRange(min=3),
              help="At most this many tokens, the three specials <S> </S> <UNK> included.")
@click.option("--tokenize", is_flag=True, help="Corpus is raw text: split each line with the built-in tokenizer.")
@click.option("--overwrite", is_flag=True, help="Replace the output file if it exists.")
def vocab_command(corpus, output_file, min_count, max_size, tokenize, overwrite):
    """Count the words of CORPUS (files or globs, one sentence per line) and write the vocabulary.

    The file lists <S>, </S>, <UNK>, then the words by descending count (ties in code point
    order). Counting streams in bounded memory, spilling to temporary files for large corpora.
    """
    from .io.output_path import check_output_file
    from .vocab import build_vocabulary

    check_output_file(output_file, overwrite)  # fail before the long count, not after
    vocab = build_vocabulary(corpus, min_count=min_count, max_size=max_size, tokenize=tokenize)
    vocab.save(output_file)
    assert vocab.counts is not None
    click.echo(f"read {vocab.corpus_tokens:,} tokens in {vocab.counts[0]:,} sentences; "
               f"kept {len(vocab) - 3:,} words; {vocab.counts[2]:,} tokens are out of vocabulary")
    click.echo(f"wrote {len(vocab):,} tokens (3 specials + words) to {output_file}")


@cli.group("task")
def task_group() -> None:
    """Downstream heads over ELMo: train a tagger or classifier, evaluate it.

    \b
    Tagging files: one `token<TAB>tag` (or `token tag`) per line, a blank line between sentences.
    Classification files: one `text<TAB>label` per line.
    """


def _static_source(static_file, static_vocab):
    from .tasks import StaticSource

    if static_file is None:
        if static_vocab is not None:
            raise ElmoError("--static-vocab needs --static")
        return None
    return StaticSource(static_file, static_vocab)


def _static_options(command):
    """--static / --static-vocab, shared by task train and task evaluate."""
    command = click.option("--static-vocab", "static_vocab", type=click.Path(dir_okay=False),
                           help="Words of a .npy --static file, one per line (default: its name with .vocab).")(command)
    command = click.option("--static", "static_file", type=click.Path(dir_okay=False),
                           help="Static word vectors to concatenate: word2vec/GloVe text format, or .npy.")(command)
    return command


def _echo_metrics(metrics, prefix: str = "") -> None:
    for key in ("accuracy", "error_rate", "macro_f1", "span_precision", "span_recall", "span_f1", "tokens",
                "examples", "gold_spans", "predicted_spans", "correct_spans", "unknown_labels"):
        if key in metrics:
            value, name = metrics[key], prefix + key
            click.echo(f"{name:<15} {value:.4f}" if isinstance(value, float) else f"{name:<15} {value}")
    if metrics.get("per_type"):
        click.echo(f"{prefix}{'type':<11} {'precision':>9} {'recall':>9} {'f1':>9} {'gold':>7} {'predicted':>9}")
        for kind, values in metrics["per_type"].items():
            click.echo(f"{prefix}{kind:<11} {values['precision']:9.4f} {values['recall']:9.4f} {values['f1']:9.4f} "
                       f"{values['gold']:7d} {values['predicted']:9d}")


@task_group.command("train")
@click.argument("task", type=click.Choice(["tagger", "classifier"]))
@click.argument("train_file", metavar="TRAIN", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Head folder to write.")
@click.option("--dev", "dev_file", type=click.Path(dir_okay=False),
              help="Dev file for early stopping (default: 10% of TRAIN held out).")
@_model_options
@_static_options
@click.option("--elmo", "elmo_input", type=click.Choice(["mix", "top", "average", "none"]), default="mix",
              show_default=True, help="ELMo input: learned scalar mix of all layers, top layer, average, or none.")
@click.option("--layer-norm", is_flag=True, help="Layer-normalise each ELMo layer before mixing.")
@click.option("--standardize/--no-standardize", default=True, show_default=True,
              help="Shift and scale each ELMo dimension by its training-set mean and deviation.")
@click.option("--mix-l2", type=click.FloatRange(min=0), default=0.001, show_default=True,
              help="L2 penalty coefficient on the mix weights.")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True)
@click.option("--encoder", type=click.Choice(["lstm", "none"]),
              help="BiLSTM over the token features, or none (default: lstm for tagger, none for classifier).")
@click.option("--hidden", "hidden_dim", type=click.IntRange(min=1), default=128, show_default=True,
              help="BiLSTM size per direction and classifier MLP size.")
@click.option("--pooling", type=click.Choice(["mean", "max", "attention"]), default="mean", show_default=True,
              help="Classifier: how token vectors become a sentence vector (attention: learned weights over tokens).")
@click.option("--crf/--no-crf", default=None,
              help="Tagger: CRF output with the tag scheme's transition constraints (default: on for BIO, IOB1 "
                   "and BIOES tag sets, off for plain tags).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=5e-3,
              show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True,
              help="Stop after this many epochs without a better dev score (counted after --min-epochs).")
@click.option("--min-epochs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Never stop before this many epochs.")
@click.option("--metric", type=click.Choice(["auto", "span_f1", "accuracy", "macro_f1"]), default="auto",
              show_default=True, help="Dev score that selects the epoch (auto: span_f1 for span tag sets, accuracy "
                                      "for other tags, macro_f1 for imbalanced classes, else accuracy).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--tokenize", is_flag=True, help="Classification text is raw: split it with the built-in tokenizer.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Keep the precomputed ELMo layers here (float16) and reuse them.")
@click.option("--overwrite", is_flag=True, help="Replace a head already in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def task_train_command(task, train_file, out_dir, dev_file, model_dir, options_file, weight_file, static_file,
                       static_vocab, elmo_input, layer_norm, standardize, mix_l2, dropout, encoder, hidden_dim, pooling, crf, epochs,
                       batch_size, learning_rate, patience, min_epochs, metric, seed, tokenize, cache_dir, overwrite,
                       quiet):
    """Train a TASK head (tagger or classifier) on TRAIN and save it to --out.

    The language model stays frozen: its layers are computed once per sentence, then only the
    scalar mix and the head learn. The folder gets config.json (settings, label set, inputs),
    head.safetensors and metrics.json (per-epoch history, dev scores, learned layer weights).
    """
    from .tasks import ModelSource, TrainSettings, train_task

    if (Path(out_dir) / "config.json").exists() and not overwrite:
        raise ElmoError(f"{out_dir}: already holds a head; pass --overwrite to replace it")
    if elmo_input == "none" and static_file is None:
        raise ElmoError("--elmo none needs --static vectors")
    head_options = {"elmo": elmo_input, "do_layer_norm": layer_norm, "mix_l2": mix_l2, "dropout": dropout,
                    "standardize": standardize and elmo_input != "none",
                    "encoder": encoder or ("lstm" if task == "tagger" else "none"), "hidden_dim": hidden_dim,
                    "pooling": pooling, "crf": crf}
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                             min_epochs=min_epochs, metric=metric, seed=seed)
    log = None if quiet else (lambda line: click.echo(line, err=True))
    metrics = train_task(task, train_file, out_dir, dev_file=dev_file,
                         model=ModelSource(model_dir, options_file, weight_file),
                         static=_static_source(static_file, static_vocab), head_options=head_options,
                         settings=settings, tokenize=tokenize, cache_dir=cache_dir, log=log)
    click.echo(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} (selected on dev "
               f"{metrics['selection_metric']})")
    if "dev" in metrics:
        _echo_metrics(metrics["dev"], prefix="dev ")
    if metrics["layer_weights"] is not None:
        click.echo(f"layer weights   {' '.join(f'{w:.3f}' for w in metrics['layer_weights'])}"
                   f" (gamma {metrics['gamma']:.3f})")
    click.echo(f"wrote {Path(out_dir) / 'config.json'}, head.safetensors, metrics.json", err=True)


@task_group.command("evaluate")
@click.argument("head_dir", metavar="HEAD", type=click.Path(file_okay=False))
@click.argument("test_file", metavar="TEST", type=click.Path(dir_okay=False))
@_model_options
@_static_options
@click.option("--predictions", "predictions_file", type=click.Path(dir_okay=False),
              help="Write the predictions here, in the input format.")
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False),
              help="Where to save the metrics as JSON (default: HEAD/evaluation.json).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Keep the precomputed ELMo layers here (float16) and reuse them.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def task_evaluate_command(head_dir, test_file, model_dir, options_file, weight_file, static_file, static_vocab,
                          predictions_file, metrics_file, cache_dir, quiet):
    """Score the head in HEAD on the labelled file TEST; print and save the metrics.

    The ELMo model and static vectors default to the ones the head was trained with. Gold labels
    the head never saw in training count as errors.
    """
    from .tasks import ModelSource, evaluate_task

    metrics_file = metrics_file or str(Path(head_dir) / "evaluation.json")
    metrics = evaluate_task(head_dir, test_file, model=ModelSource(model_dir, options_file, weight_file),
                            static=_static_source(static_file, static_vocab), predictions_file=predictions_file,
                            metrics_file=metrics_file, cache_dir=cache_dir,
                            log=None if quiet else (lambda line: click.echo(line, err=True)))
    _echo_metrics(metrics)
    click.echo(f"wrote {metrics_file}" + (f" and {predictions_file}" if predictions_file else ""), err=True)


@cli.command("neighbors")
@click.option("--sentence", required=True, help="The query sentence (tokens separated by spaces).")
@click.option("--word", required=True, help="The word of the sentence to look up (its first occurrence).")
@click.option("--reference", "reference_file", type=click.Path(dir_okay=False), required=True,
              help="Reference sentences, one per line, whose tokens are searched.")
@_model_options
@click.option("--top", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours per layer.")
@click.option("--layer", "layers", type=click.IntRange(min=0), multiple=True,
              help="Only this layer (repeatable; default: all, 0 = token encoder).")
@click.option("--same-word", is_flag=True, help="Only occurrences of the same word: its senses across sentences.")
@click.option("--tokenize", is_flag=True, help="Split the sentence and the reference lines with the built-in tokenizer.")
@click.option("--export-projector", "projector_dir", type=click.Path(file_okay=False),
              help="Also write TensorBoard projector files (tensors.tsv, metadata.tsv) of every reference token "
                   "and the query word, at the first --layer (default: the top layer).")
def neighbors_command(sentence, word, reference_file, model_dir, options_file, weight_file, k, layers, same_word,
                      tokenize, projector_dir):
    """Nearest tokens in context to WORD of SENTENCE, among the tokens of --reference, per layer.

    Cosine similarity of the contextual vectors. Layer 0 (the token encoder) ignores context;
    higher layers show which uses of a word the model finds alike.
    """
    from .bundled import open_model
    from .embed import Embedder
    from .neighbors import neighbors_in_file

    report = neighbors_in_file(Embedder(open_model(model_dir, options_file, weight_file)), sentence, word,
                               reference_file, k=k, layers=layers, same_word=same_word, tokenize=tokenize)
    tokens, position, results = report.tokens, report.position, report.results
    click.echo(f"query: {' '.join(tokens[:position] + [f'[{tokens[position]}]'] + tokens[position + 1:])}")
    for neighbours in results:
        layer = neighbours[0].layer if neighbours else None
        if layer is None:
            continue
        name = "token encoder, no context" if layer == 0 else f"LSTM layer {layer}"
        click.echo(f"\nlayer {layer} ({name}):")
        for rank, neighbour in enumerate(neighbours, start=1):
            click.echo(f"  {rank}. {neighbour.score:.3f}  line {report.line_numbers[neighbour.sentence]}: "
                       f"{neighbour.context()}")
    if not any(results):
        click.echo("no candidate tokens in the reference set" + (" (none is the same word)" if same_word else ""))
    if projector_dir is not None:
        from .projector import export_projector

        layer = layers[0] if layers else report.index.n_layers - 1
        rows = export_projector(report.index, projector_dir, layer, lines=report.line_numbers,
                                query=(report.query_layers, tokens, position))
        click.echo(f"wrote {rows} rows (layer {layer}) to {Path(projector_dir) / 'tensors.tsv'} and metadata.tsv",
                   err=True)


@cli.command("similar")
@click.argument("query")
@click.option("--in", "input_file", type=click.Path(dir_okay=False), required=True,
              help="Candidate sentences, one per line.")
@_model_options
@click.option("--top", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Sentences to show.")
@click.option("--layers", type=click.Choice(["average", "top", "all"]), default="average", show_default=True,
              help="Pooling: mean over the tokens of the average of all layers, of the top layer, or of each "
                   "layer (concatenated).")
@click.option("--tokenize", is_flag=True, help="Split the query and the lines with the built-in tokenizer.")
def similar_command(query, input_file, model_dir, options_file, weight_file, k, layers, tokenize):
    """The sentences of --in closest in meaning to QUERY: cosine of mean-pooled ELMo vectors."""
    from .bundled import open_model
    from .embed import Embedder
    from .similarity import similar_in_file

    embedder = Embedder(open_model(model_dir, options_file, weight_file))
    for rank, (number, line, score) in enumerate(similar_in_file(embedder, query, input_file, k, layers, tokenize),
                                                 start=1):
        click.echo(f"{rank}. {score:.3f}  line {number}: {line}")


def _require_extra(module: str, extra: str, command: str) -> None:
    """`ElmoError` naming the extra to install when `module` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ElmoError(f"{command} needs {module}: pip install 'elmo-lm[{extra}]'")


@cli.command("serve")
@_model_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--max-batch-tokens", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Flush a micro-batch once the waiting requests hold this many tokens.")
@click.option("--max-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="... or this long after its first request arrived.")
@click.option("--max-request-tokens", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Refuse (413) requests with more tokens.")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True,
              help="Refuse (413) larger request bodies.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of the model.")
@click.option("--token-cache", is_flag=True,
              help="Keep each word's context-free vector across requests (up to 50,000 words): the character CNN "
                   "runs once per word for the server's life. Vectors then agree with `encode` to ~1e-6, not bit "
                   "for bit.")
@click.option("--reference", "reference_file", type=click.Path(dir_okay=False),
              help="Serve the exploration page at / over these sentences (one per line, tokens separated by "
                   "spaces; an optional TAB and label colours the plot).")
@click.option("--head", "head_dir", type=click.Path(file_okay=False),
              help="A trained task head (elmo task train) whose layer weights the page shows.")
def serve_command(model_dir, options_file, weight_file, host, port, max_batch_tokens, max_wait_ms,
                  max_request_tokens, max_request_bytes, threads, token_cache, reference_file, head_dir):
    """Serve the model over HTTP: POST /v1/embeddings (OpenAI-compatible sentence vectors), POST /embed
    (token vectors), GET /healthz, GET /info; with --reference, an exploration page at /. Concurrent
    requests are micro-batched; SIGTERM stops the service after answering the requests in flight."""
    _require_extra("fastapi", "serve", "elmo serve")
    _require_extra("uvicorn", "serve", "elmo serve")
    import torch

    from .bundled import open_model
    from .embed import Embedder
    from .serve import Explorer, ServeSettings, serve

    if threads is not None:
        torch.set_num_threads(threads)
    name = Path(model_dir).name if model_dir else ("elmo" if options_file else "elmo-en-small")
    settings = ServeSettings(max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
                             max_request_tokens=max_request_tokens, max_request_bytes=max_request_bytes,
                             model_name=name)
    embedder = Embedder(open_model(model_dir, options_file, weight_file), token_cache=token_cache)
    if head_dir is not None and reference_file is None:
        raise ElmoError("--head is shown on the exploration page: give --reference too")
    explorer = Explorer(embedder, reference_file, head_dir) if reference_file else None
    serve(embedder, host=host, port=port, settings=settings, explorer=explorer)


@cli.command("export-onnx")
@click.argument("model_dir", metavar="MODEL", type=click.Path())
@click.argument("output_file", metavar="OUT.onnx", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT.onnx if it exists.")
def export_onnx_command(model_dir, output_file, overwrite):
    """Export MODEL (a model folder, or `bundled`) to ONNX: input `char_ids` (batch, tokens, 50) int64 from
    `batch_to_ids`, outputs `layers` (batch, L+1, tokens, 2P) float32 and `mask` (batch, tokens). Batch and
    length are dynamic; each LSTM layer's time loop is an ONNX Scan."""
    _require_extra("onnx", "onnx", "elmo export-onnx")
    from .bundled import open_model
    from .io.output_path import check_output_file
    from .onnx_export import export_onnx

    check_output_file(output_file, overwrite)
    model = open_model(None if model_dir == "bundled" else model_dir)
    export_onnx(model, output_file)
    click.echo(f"wrote {output_file}", err=True)


@cli.command("embed-corpus")
@click.argument("inputs", metavar="INPUT_GLOB", nargs=-1, required=True)
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(file_okay=False))
@_model_options
@click.option("--layers", type=click.Choice(["all", "top", "average"]), default="top", show_default=True,
              help="all: (L+1, n, 2P) per sentence; top / average: (n, 2P).")
@click.option("--output", type=click.Choice(["token", "sentence"]), default="token", show_default=True,
              help="sentence: the mean over the tokens instead of token vectors.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True)
@click.option("--shard-size", type=click.IntRange(min=1), default=10_000, show_default=True, help="Lines per shard.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Sentences per batch.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local processes (or Ray actors) embedding shards at once.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: Ray Data on the cluster at --ray-address (or RAY_ADDRESS, else a local one).")
@click.option("--ray-address", default=None, help="Ray cluster address, e.g. auto or ray://head:10001.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads per worker (default: the cores divided among the workers).")
@click.option("--tokenize", is_flag=True, help="Split lines with the built-in tokenizer (raw text).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
def embed_corpus_command(inputs, out_dir, model_dir, options_file, weight_file, layers, output, dtype, shard_size,
                         batch_size, workers, engine, ray_address, threads, tokenize, quiet):
    """Embed every line of the files matching INPUT_GLOB into Parquet shards in OUT_DIR, resumably.

    Each shard-NNNNN.parquet holds id, file, line, text, tokens and vectors; manifest.json the
    model's hash, the settings and each finished shard's rows and SHA-256. Run it again after an
    interruption: finished shards are kept, the others embedded again.
    """
    from .corpus_embed import CorpusSettings, ModelSpec, embed_corpus

    if engine == "ray":
        _require_extra("ray", "ray", "elmo embed-corpus --engine ray")
    _require_extra("pyarrow", "corpus", "elmo embed-corpus")
    settings = CorpusSettings(layers=layers, output=output, dtype=dtype, tokenize=tokenize, shard_size=shard_size)
    manifest = embed_corpus(list(inputs), out_dir, ModelSpec(model_dir, options_file, weight_file), settings,
                            batch_size=batch_size, workers=workers, engine=engine, ray_address=ray_address,
                            threads=threads, log=None if quiet else (lambda line: click.echo(line, err=True)))
    rows = sum(entry["rows"] for entry in manifest["shards"].values())
    click.echo(f"wrote {len(manifest['shards'])} shards, {rows:,} sentences, to {out_dir}", err=True)


@cli.command("train")
@click.option("--train", "train_data", multiple=True, metavar="GLOB",
              help="Training corpus: files or globs, one sentence per line (repeatable).")
@click.option("--vocab", "vocab_file", type=click.Path(dir_okay=False), help="Vocabulary file (from `elmo vocab`).")
@click.option("--config", "config_name", metavar="PRESET|FILE",
              help="tiny, small, medium, original, or a JSON file (fields: elmo_lm.training.config.TrainConfig).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Run folder.")
@click.option("--valid", "valid_data", multiple=True, metavar="GLOB", help="Validation corpus (repeatable).")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option("--epochs", type=click.IntRange(min=1), help="Stop after this many epochs.")
@click.option("--seed", type=int, help="Seed of the weights, data order, dropout and sampler.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Rows per batch and process.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Any other training option, e.g. --set dropout=0.2 (repeatable).")
@click.option("--init", "init", type=click.Path(),
              help="Continue training this model: a model folder or a weights .hdf5.")
@click.option("--init-options", type=click.Path(dir_okay=False), help="options.json of an --init .hdf5 file.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint, exactly.")
@click.option("--tokenize", is_flag=True, help="Corpus is raw text: split each line with the built-in tokenizer.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train_command(train_data, vocab_file, config_name, out_dir, valid_data, max_steps, epochs, seed, batch_size,
                  overrides, init, init_options, resume, tokenize, device, quiet):
    """Train a bidirectional language model (or continue one) into the run folder --out.

    \b
    elmo train --train 'corpus/*.txt' --vocab vocab.txt --config small --out run/ --valid dev.txt
    elmo train --out run/ --resume
    torchrun --nproc_per_node=4 -m elmo_lm train --train ... (the same options; data parallel)

    The run folder gets run.json, vocab.txt, checkpoint.pt, metrics.jsonl and learning_curves.png;
    `elmo export` turns it into a model folder.
    """
    from .training.loop import train
    from .training.run_folder import parse_overrides, run_arguments

    options = parse_overrides(overrides)
    if tokenize:
        options["tokenize"] = True
    for key, value in (("max_steps", max_steps), ("epochs", epochs), ("seed", seed), ("batch_size", batch_size)):
        if value is not None:
            options[key] = value
    arguments = run_arguments(out_dir, resume, config_name, train_data, vocab_file, valid_data, init, init_options,
                              options)
    if resume and (train_data or valid_data):  # used, not ignored: say so
        given = " and ".join(option for option, value in (("--train", train_data), ("--valid", valid_data)) if value)
        click.echo(f"elmo: note: --resume reads {given} instead of the paths in {Path(out_dir) / 'run.json'}; "
                   "it must be the same data (moved), or the run does not continue exactly", err=True)
    train(out_dir=out_dir, device=None if device == "auto" else device, quiet=quiet, tune_allocator=True, **arguments)


@cli.command("evaluate")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), required=True,
              help="A model folder with a softmax (from `elmo export`), or a training run folder.")
@click.option("--data", "data", multiple=True, required=True, metavar="GLOB", help="Corpus files or globs.")
@click.option("--vocab", "vocab_file", type=click.Path(dir_okay=False),
              help="The softmax's vocabulary (default: vocab.txt in --model).")
@click.option("--mode", type=click.Choice(["both", "stateless", "stateful"]), default="both", show_default=True,
              help="stateless: each sentence from a zero state; stateful: bilm-tf streams with carried state.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--unroll-steps", type=click.IntRange(min=1), default=20, show_default=True,
              help="Window of the stateful streams.")
@click.option("--tokenize", is_flag=True, help="Corpus is raw text: split it with the built-in tokenizer.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def evaluate_command(model_dir, data, vocab_file, mode, batch_size, unroll_steps, tokenize, as_json):
    """Forward, backward and average perplexity of a model on a corpus (full softmax)."""
    import json

    from .training.evaluate import evaluate_folder

    modes = ("stateless", "stateful") if mode == "both" else (mode,)
    results = evaluate_folder(model_dir, data, vocab_file, modes, batch_size, unroll_steps, tokenize)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(f"{'mode':<10} {'forward':>10} {'backward':>10} {'average':>10} {'tokens':>10}")
    for name, record in results.items():
        click.echo(f"{name:<10} {record['forward_ppl']:>10.2f} {record['backward_ppl']:>10.2f} "
                   f"{record['ppl']:>10.2f} {record['tokens']:>10,}")


@cli.command("export")
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False))
@click.argument("out_dir", metavar="OUT_DIR", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace files in OUT_DIR.")
def export_command(run_dir, out_dir, overwrite):
    """Turn a training run into a model folder (config.json, model.safetensors, vocab.txt) plus the
    bilm-tf files (options.json, weights.hdf5); the softmax is kept, so training can continue."""
    from .training.export import export_run

    files = export_run(run_dir, out_dir, overwrite=overwrite)
    click.echo(f"wrote {', '.join(str(path) for path in files)}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `elmo` command; returns the exit code."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"elmo: warning: {message}\n"
    try:
        cli.main(args=argv, prog_name="elmo", standalone_mode=False)
    except ElmoError as error:
        click.echo(f"elmo: error: {error}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("elmo: interrupted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except KeyboardInterrupt:
        click.echo("elmo: interrupted", err=True)
        return 130
    except OSError as error:  # a file the command could not read or write, not caught where it was opened
        from .io.atomic import full_disk_error

        full = full_disk_error(error, error.filename or "output")
        click.echo(f"elmo: error: {full or _os_error_line(error)}", err=True)
        return 2
    return 0


def _os_error_line(error: OSError) -> str:
    """`PATH: reason` for an OSError (its text where it names no file)."""
    return f"{error.filename}: {error.strerror}" if error.filename and error.strerror else str(error)


def run() -> None:
    """Console-script wrapper: exit with `main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
