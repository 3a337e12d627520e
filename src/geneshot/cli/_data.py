"""``geneshot data fetch|list``."""

from __future__ import annotations

from pathlib import Path

import click

from geneshot.cli._main import data_options, default_data_dir, main, progress_enabled
from geneshot.errors import InputError
from geneshot.io._download import FETCHERS, fetch_dataset
from geneshot.io._registry import DATASETS


@main.group("data")
def data_group() -> None:
    """Download the public datasets and see which sections are present."""


@data_group.command("fetch")
@click.argument("dataset", type=click.Choice(sorted(FETCHERS)))
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The dataset's own folder to download into; its name must be the dataset's "
    "(default: $GENESHOT_DATA/<dataset>, else <user data folder>/<dataset>, where every "
    "command looks by default).",
)
@click.option(
    "--base-url", default=None, help="Mirror of Zenodo (her2st) or of NCBI's GEO tree (cscc)."
)
@click.option(
    "--keep-archives", is_flag=True, help="Keep the downloaded archives after extraction."
)
def data_fetch(dataset: str, data: Path | None, base_url: str | None, keep_archives: bool) -> None:
    """Download DATASET (resumable, checksum-verified); a re-run is a no-op once complete."""
    data = default_data_dir(dataset) if data is None else data
    if data.exists() and not data.is_dir():
        raise InputError(data, "is a file, not a folder", "give a folder for --data")
    if data.name != dataset:
        # the downloader keeps its resume state beside the dataset folder, in its parent
        raise InputError(
            data,
            f"--data must be a folder named {dataset!r}",
            f"pass --data {data / dataset}",
        )
    out = fetch_dataset(
        dataset,
        data.parent,
        base_url=base_url,
        progress=progress_enabled(),
        keep_archives=keep_archives,
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
@data_options(dataset_default=None, dataset_help="Only this dataset (default: all registered).")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding the dataset folders, looked up as DATA_ROOT/<dataset> "
    "(default: $GENESHOT_DATA, else the user data folder). Ignored with --data.",
)
def data_list(data: Path | None, dataset: str | None, data_root: Path | None) -> None:
    """Show the known datasets and the sections present in their folders."""
    for folder, what in ((data, "--data"), (data_root, "--data-root")):
        if folder is not None and not folder.is_dir():
            raise InputError(
                folder,
                "data folder does not exist",
                f"check the {what} path, or fetch a dataset with `geneshot data fetch <dataset>`",
            )
    found = 0
    for name in [dataset] if dataset else sorted(DATASETS):
        spec = DATASETS[name]
        fetch = "fetchable" if name in FETCHERS else "no downloader"
        click.echo(f"{name:<8} {spec.description} [{fetch}]")
        if data is not None:
            where = data
        elif data_root is not None:
            where = data_root / name
        else:
            where = default_data_dir(name)
        secs = _sections(spec, where)
        found += bool(secs)
        if secs:
            click.echo(f"         {len(secs)} sections in {where}: {', '.join(secs)}")
        else:
            click.echo(f"         not present in {where}")
    if not found:
        click.echo("(fetch one with `geneshot data fetch <dataset>`, or pass --data/--data-root)")
