"""The `elmo` command: a thin table of subcommands over the library's functions.

Every subcommand turns `ElmoError` (bad input: a file, a line, a key) into a one-line message on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

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


def _open_model(model_dir, options_file, weight_file):
    from .bundled import bundled_model_path
    from .io import load_model

    if model_dir is None and options_file is None and weight_file is None:
        model_dir = bundled_model_path()
    return load_model(model_dir, options_file, weight_file)


@cli.command("embed")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@click.argument("output_file", metavar="OUTPUT", type=click.Path(dir_okay=False))
@_model_options
@click.option("--layers", type=click.Choice(["all", "top", "average"]), default="all", show_default=True,
              help="all: (L+1, n, 2P) per line; top / average: (n, 2P).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Sentences per batch.")
@click.option("--stateful", is_flag=True,
              help="Reference behaviour: batches in file order, each row carrying its LSTM state to the next batch.")
@click.option("--tokenize", is_flag=True, help="Input is raw text: split each line with the built-in tokenizer.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def embed_command(input_file, output_file, model_dir, options_file, weight_file, layers, batch_size, stateful,
                  tokenize, overwrite, quiet):
    """Embed INPUT (UTF-8 text, one sentence per line) into OUTPUT (HDF5).

    OUTPUT gets one float32 dataset per input line, named by its 0-based line number ("0", "1",
    ...), of shape (L+1, n, 2P) for --layers all and (n, 2P) otherwise, plus `sentence_to_index`
    (JSON: sentence -> line number). Empty lines give (L+1, 0, 2P). Stateless by default: each
    sentence gets the same vectors whatever its neighbours. OUTPUT appears only when complete.
    """
    from .embed import Embedder

    if Path(output_file).exists() and not overwrite:
        raise ElmoError(f"{output_file}: output exists; pass --overwrite to replace it")
    model = _open_model(model_dir, options_file, weight_file)
    embedder = Embedder(model, batch_size=batch_size, stateful=stateful)
    count = embedder.embed_file(input_file, output_file, layers=layers, overwrite=overwrite, tokenize=tokenize,
                                show_progress_bar=not quiet)
    click.echo(f"wrote {count} lines to {output_file}", err=True)


@cli.command("dump-token-embeddings")
@click.argument("vocab_file", metavar="VOCAB", type=click.Path(dir_okay=False))
@click.argument("output_file", metavar="OUTPUT", type=click.Path(dir_okay=False))
@_model_options
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def dump_token_embeddings_command(vocab_file, output_file, model_dir, options_file, weight_file, overwrite):
    """Write the context-free token vector of each VOCAB line to OUTPUT (HDF5 dataset `embedding`, (V, P))."""
    import h5py
    import torch

    from .chars import batch_to_ids
    from .io.atomic import atomic_path
    from .textfile import read_lines

    if Path(output_file).exists() and not overwrite:
        raise ElmoError(f"{output_file}: output exists; pass --overwrite to replace it")
    words = read_lines(vocab_file)
    model = _open_model(model_dir, options_file, weight_file)
    with torch.inference_mode():
        vectors = model.token_encoder(batch_to_ids([words])[0]) if words else torch.zeros(0, model.config.projection_dim)
    with atomic_path(output_file) as temporary, h5py.File(temporary, "w") as h5:
        h5.create_dataset("embedding", data=vectors.float().numpy())
    click.echo(f"wrote {len(words)} token vectors to {output_file}", err=True)


@cli.command("convert")
@_model_options
@click.option("--to", "target", type=click.Choice(["folder", "allennlp"]), required=True,
              help="folder: config.json + model.safetensors; allennlp: options.json + weights.hdf5.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace files in --out.")
def convert_command(model_dir, options_file, weight_file, target, out_dir, overwrite):
    """Convert a model between the AllenNLP/bilm-tf files and this project's model folder."""
    from .io import save_allennlp_weights, save_pretrained

    model = _open_model(model_dir, options_file, weight_file)
    out = Path(out_dir)
    names = ["config.json", "model.safetensors"] if target == "folder" else ["options.json", "weights.hdf5"]
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise ElmoError(f"{out / existing[0]}: exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    if target == "folder":
        save_pretrained(model, out)
    else:
        save_allennlp_weights(model.config, model.state_dict(), out / "options.json", out / "weights.hdf5")
    click.echo(f"wrote {', '.join(str(out / name) for name in names)}", err=True)


@cli.command("info")
@click.argument("model_dir", metavar="MODEL", required=False, type=click.Path(file_okay=False))
@click.option("--options", "options_file", type=click.Path(dir_okay=False), help="AllenNLP/bilm-tf options.json.")
@click.option("--weights", "weight_file", type=click.Path(dir_okay=False), help="AllenNLP/bilm-tf weights.hdf5.")
def info_command(model_dir, options_file, weight_file):
    """Describe a model: sizes, parameter count, output layers (the bundled model by default)."""
    model = _open_model(model_dir, options_file, weight_file)
    config = model.config
    encoder = sum(p.numel() for p in model.token_encoder.parameters())
    lstm = sum(p.numel() for p in model.lstm.parameters())
    softmax = sum(p.numel() for p in model.softmax.parameters()) if model.softmax is not None else 0
    rows = [
        ("model", str(model_dir or weight_file)),
        ("character CNN", f"char dim {config.char_embed_dim}, {len(config.filters)} filters, "
                          f"{config.n_filters} features, {config.activation}"),
        ("highway layers", str(config.n_highway)),
        ("LSTM", f"{config.n_layers} layers x 2 directions, cell {config.lstm_dim}, projection "
                 f"{config.projection_dim}, skip connections {'yes' if config.use_skip_connections else 'no'}"),
        ("clips", f"cell {config.cell_clip or 'none'}, projection {config.proj_clip or 'none'}"),
        ("output", f"{config.n_output_layers} layers of width {config.output_dim}"),
        ("parameters", f"{encoder + lstm:,} (token encoder {encoder:,}, LSTMs {lstm:,})"),
        ("softmax", f"{model.softmax.out_features:,} words, {softmax:,} parameters" if softmax else "none"),
    ]
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
def vocab_command(corpus, output_file, min_count, max_size, tokenize):
    """Count the words of CORPUS (files or globs, one sentence per line) and write the vocabulary.

    The file lists <S>, </S>, <UNK>, then the words by descending count (ties in code point
    order). Counting streams in bounded memory, spilling to temporary files for large corpora.
    """
    from .vocab import build_vocabulary

    if not Path(output_file).parent.is_dir():  # fail before the long count, not after
        raise ElmoError(f"{output_file}: folder {Path(output_file).parent} does not exist")
    vocab = build_vocabulary(corpus, min_count=min_count, max_size=max_size, tokenize=tokenize)
    vocab.save(output_file)
    assert vocab.counts is not None
    click.echo(f"read {vocab.corpus_tokens:,} tokens in {vocab.counts[0]:,} sentences; "
               f"kept {len(vocab) - 3:,} words; {vocab.counts[2]:,} tokens are out of vocabulary")
    click.echo(f"wrote {len(vocab):,} tokens (3 specials + words) to {output_file}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `elmo` command; returns the exit code."""
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
    return 0


def run() -> None:
    """Console-script wrapper: exit with `main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
