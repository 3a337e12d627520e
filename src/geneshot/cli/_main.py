"""The ``geneshot`` command group; each subcommand lives in its own module of this package."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from geneshot import __version__
from geneshot._constants import ENV_CACHE, ENV_DATA
from geneshot.cache import Cache
from geneshot.errors import GeneshotError, InputError


class _Group(click.Group):
    """Turns GeneshotError into one line on stderr and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except GeneshotError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geneshot")
def main() -> None:
    """geneshot: spatial gene expression from H&E, including genes never seen in training."""


def cache_option(f):
    """``--cache DIR`` (else $GENESHOT_CACHE, else the user cache directory)."""
    return click.option(
        "--cache",
        "cache_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Cache folder (default: $GENESHOT_CACHE, else the user cache directory).",
    )(f)


def make_cache(cache_dir: Path | None) -> Cache:
    """The cache for a command (also exported as $GENESHOT_CACHE so that readers share it)."""
    if cache_dir is not None:
        os.environ[ENV_CACHE] = str(cache_dir)
    return Cache(cache_dir)


def resolve_data_dir(data: Path | None, dataset: str) -> Path:
    """``--data`` if given, else ``$GENESHOT_DATA/<dataset>``; a clear error when neither exists."""
    if data is None:
        env = os.environ.get(ENV_DATA)
        if not env:
            raise InputError(
                None,
                "no data folder: --data is not given and $GENESHOT_DATA is not set",
                f"pass --data DIR (the {dataset} folder) or export GENESHOT_DATA=<folder holding {dataset}/>",
            )
        data = Path(env) / dataset
    if not data.exists():
        raise InputError(data, "data folder does not exist", f"check the path, or fetch it with `geneshot data fetch {dataset} --dest DIR`")
    return data
