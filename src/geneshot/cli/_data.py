"""``geneshot data fetch|list``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from geneshot._constants import ENV_DATA
from geneshot.cli._main import main
from geneshot.errors import InputError
from geneshot.io._download import FETCHERS, fetch_dataset
from geneshot.io._registry import DATASETS


@main.group("data")
def data_group() -> None:
    """Download the public datasets and see which sections are present."""


@data_group.command("fetch")
@click.argument("dataset", type=click.Choice(sorted(FETCHERS)))
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Parent folder: the data goes to DEST/<dataset> (point $GENESHOT_DATA at DEST).",
)
@click.option(
    "--base-url", default=None, help="Mirror of Zenodo (her2st) or of NCBI's GEO tree (cscc)."
)
@click.option(
    "--keep-archives", is_flag=True, help="Keep the downloaded archives after extraction."
)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def data_fetch(
    dataset: str, dest: Path, base_url: str | None, keep_archives: bool, no_progress: bool
) -> None:
    """Download DATASET (resumable, checksum-verified); a re-run is a no-op once complete."""
    if dest.exists() and not dest.is_dir():
        raise InputError(dest, "is a file, not a folder", "give a folder for --dest")
    out = fetch_dataset(
        dataset, dest, base_url=base_url, progress=not no_progress, keep_archives=keep_archives
    )
    spec = DATASETS.get(dataset)
    n = len(_sections(spec, out)) if spec else 0
    click.echo(f"{dataset}: {out} ({n} sections)")


def _sections(spec, folder: Path) -> list[str]:
    try:
        return spec.list_sections(folder) if folder.is_dir() else []
    except InputError:
        return []


@data_group.command("list")
@click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding the dataset folders (default: $GENESHOT_DATA).",
)
def data_list(data: Path | None) -> None:
    """Show the known datasets and the sections present under --data."""
    if data is None and os.environ.get(ENV_DATA):
        data = Path(os.environ[ENV_DATA])
    if data is not None and not data.is_dir():
        raise InputError(
            data,
            "data folder does not exist",
            "check the path, or fetch a dataset with `geneshot data fetch <dataset> --dest DIR`",
        )
    for name in sorted(DATASETS):
        spec = DATASETS[name]
        fetch = "fetchable" if name in FETCHERS else "no downloader"
        click.echo(f"{name:<8} {spec.description} [{fetch}]")
        if data is None:
            continue
        # accept both the parent folder and the dataset folder itself
        where = data / name
        secs = _sections(spec, where)
        if not secs:
            where, secs = data, _sections(spec, data)
        if secs:
            click.echo(f"         {len(secs)} sections in {where}: {', '.join(secs)}")
        else:
            click.echo(f"         not present in {data}")
    if data is None:
        click.echo(f"(pass --data or set ${ENV_DATA} to see the sections present)")
