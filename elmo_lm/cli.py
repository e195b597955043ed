"""The `elmo` command: a thin table of subcommands over the library's functions.

Every subcommand turns `ElmoError` (bad input: a file, a line, a key) into a one-line message on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

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
