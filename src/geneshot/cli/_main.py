"""The ``geneshot`` command group and the options every command shares.

One grammar for all commands: ``--data`` is always the dataset's own folder, ``--dataset`` a
registered dataset, ``--cache`` the cache folder, ``--out`` what the command writes (its
help says whether a file or a folder); ``-q``/``-v`` sit on the group and set logging and
progress bars for every command. Options also read ``GENESHOT_<COMMAND>_<OPTION>``
environment variables (``auto_envvar_prefix``); ``GENESHOT_CACHE`` is ``--cache`` everywhere
and ``GENESHOT_DATA`` is the folder that holds the dataset folders.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import click

from geneshot import __version__
from geneshot._constants import ENV_CACHE, ENV_DATA
from geneshot._logging import configure_logging
from geneshot._progress import progress_enabled, set_quiet
from geneshot.cache import Cache
from geneshot.errors import GeneshotError, InputError

__all__ = [
    "LazyChoice",
    "TextEncoderType",
    "cache_option",
    "data_options",
    "default_data_dir",
    "main",
    "make_cache",
    "model_option",
    "progress_enabled",
    "resolve_data_dir",
]

ENV_PREFIX = "GENESHOT"


class _Group(click.Group):
    """Turns GeneshotError into one line on stderr and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except GeneshotError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENV_PREFIX},
)
@click.version_option(__version__, prog_name="geneshot")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Errors only: no progress bars, no log lines below ERROR (wins over -v).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log progress to stderr: -v INFO, -vv DEBUG (default: warnings only).",
)
def main(quiet: bool, verbose: int) -> None:
    """geneshot: spatial gene expression from H&E, including genes never seen in training.

    Progress bars show only when stderr is a terminal; redirected logs stay clean.
    """
    configure_logging(-1 if quiet else verbose)
    set_quiet(quiet)


class LazyChoice(click.Choice):
    """A :class:`click.Choice` whose choices are read from a registry on first use.

    Model and encoder registries import torch; reading them only when an option is parsed
    (or help is shown) keeps ``geneshot --help`` and ``geneshot data ...`` fast.
    """

    def __init__(self, load: Callable[[], Iterable[str]], case_sensitive: bool = True) -> None:
        self._load = load
        self._choices: tuple[str, ...] | None = None
        super().__init__((), case_sensitive=case_sensitive)

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]  # noqa: D102
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns it
        pass


class TextEncoderType(click.ParamType):
    """A registered text encoder (``geneshot encoders``) or ``hf:<model id>``."""

    name = "text-encoder"

    def convert(self, value, param, ctx):  # noqa: D102
        from geneshot.encoders.text import TEXT_ENCODERS

        value = str(value)
        if value in TEXT_ENCODERS:
            return value
        if value.startswith("hf:") and len(value) > 3:
            return value
        self.fail(
            f"{value!r} is neither a registered text encoder ({', '.join(TEXT_ENCODERS)}) "
            "nor hf:<model id>",
            param,
            ctx,
        )

    def get_metavar(self, param, ctx=None) -> str:  # noqa: D102
        return "[NAME|hf:ID]"


def _datasets() -> list[str]:
    from geneshot.io._registry import DATASETS

    return sorted(DATASETS)


def _models() -> list[str]:
    from geneshot.models import MODELS

    return list(MODELS)


def _image_encoders() -> list[str]:
    from geneshot.encoders.image import IMAGE_ENCODERS

    return list(IMAGE_ENCODERS)


def _gene_encoders() -> list[str]:
    from geneshot.encoders.gene import GENE_ENCODERS

    return list(GENE_ENCODERS)


DATASET_CHOICE = LazyChoice(_datasets)
GENE_ENCODER_CHOICE = LazyChoice(_gene_encoders)
MODEL_CHOICE = LazyChoice(_models)
IMAGE_ENCODER_CHOICE = LazyChoice(_image_encoders)

DATA_HELP = (
    "The dataset's own folder, e.g. .../her2st (default: $GENESHOT_DATA/<dataset>, "
    "else <user data folder>/<dataset>, where `geneshot data fetch` puts it)."
)


def data_options(f=None, *, dataset_default: str | None = "her2st", dataset_help: str = ""):
    """``--data DIR`` (the dataset's own folder) and ``--dataset NAME`` (a registered one)."""

    def deco(f):
        f = click.option(
            "--dataset",
            type=DATASET_CHOICE,
            default=dataset_default,
            show_default=dataset_default is not None,
            help=dataset_help or "Registered dataset (see `geneshot data list`).",
        )(f)
        return click.option(
            "--data",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help=DATA_HELP,
        )(f)

    return deco(f) if f is not None else deco


def model_option(f=None, *, default: str | None = "align-st"):
    """``--model NAME``: a registered geneshot model (see ``geneshot models``)."""

    def deco(f):
        return click.option(
            "--model",
            "model_name",
            type=MODEL_CHOICE,
            default=default,
            show_default=default is not None,
            help="Registered geneshot model (see `geneshot models`).",
        )(f)

    return deco(f) if f is not None else deco


def cache_option(f):
    """``--cache DIR`` (else $GENESHOT_CACHE, else the user cache directory)."""
    return click.option(
        "--cache",
        "cache_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar=ENV_CACHE,
        show_envvar=True,
        help="Cache folder (default: $GENESHOT_CACHE, else the user cache directory).",
    )(f)


def make_cache(cache_dir: Path | None) -> Cache:
    """The cache for a command (also exported as $GENESHOT_CACHE so that readers share it)."""
    if cache_dir is not None:
        os.environ[ENV_CACHE] = str(cache_dir)
    return Cache(cache_dir)


def default_data_dir(dataset: str) -> Path:
    """Where a dataset lives by default: ``$GENESHOT_DATA/<dataset>``, else the user data folder."""
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser() / dataset
    from platformdirs import user_data_dir

    return Path(user_data_dir("geneshot")) / dataset


def resolve_data_dir(data: Path | None, dataset: str) -> Path:
    """``--data`` if given, else :func:`default_data_dir`; a clear error when it is missing."""
    given = data is not None
    data = Path(data) if given else default_data_dir(dataset)
    if not data.exists():
        how = "" if given else f" (the default for --dataset {dataset}; set --data or ${ENV_DATA})"
        raise InputError(
            data,
            f"data folder does not exist{how}",
            f"pass --data <the {dataset} folder>, or download it there with "
            f"`geneshot data fetch {dataset}`" + (f" --data {data}" if given else ""),
        )
    if not data.is_dir():
        raise InputError(data, "is a file, not a folder", f"pass the {dataset} folder as --data")
    return data
