"""``geneshot predict`` and ``geneshot plot``."""

from __future__ import annotations

from pathlib import Path

import click

from geneshot._constants import Key
from geneshot.cli._main import (
    cache_option,
    data_options,
    main,
    make_cache,
    progress_enabled,
    resolve_data_dir,
)


def parse_genes(
    genes: str | None, gene_list: Path | None, describe: tuple[str, ...]
) -> tuple[list[str], dict[str, str]]:
    """Gene names (in the order given, each once) and ``--describe GENE=TEXT`` descriptions."""
    from geneshot.errors import InputError

    names: list[str] = []
    if genes:
        names += [g.strip() for g in genes.split(",") if g.strip()]
    if gene_list is not None:
        from geneshot.data import load_gene_list

        names += load_gene_list(gene_list)
    descriptions: dict[str, str] = {}
    for item in describe:
        gene, sep, text = item.partition("=")
        if not sep or not gene.strip() or not text.strip():
            raise InputError(
                None,
                f"--describe {item!r} is not GENE=TEXT",
                'write --describe "MYGENE=free text about the gene"',
            )
        descriptions[gene.strip()] = text.strip()
    names += list(descriptions)
    names = list(dict.fromkeys(names))
    if not names:
        raise InputError(
            None, "no genes given", "pass --genes A,B,..., --gene-list FILE or --describe GENE=TEXT"
        )
    return names, descriptions


@main.command("predict")
@click.option(
    "--run",
    "run_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder from `geneshot train` (single or --ensemble).",
)
@click.option(
    "--image",
    type=click.Path(path_type=Path),
    default=None,
    help="H&E image (JPEG, PNG, TIFF); tiles the tissue unless --spots is given.",
)
@click.option(
    "--spots",
    type=click.Path(path_type=Path),
    default=None,
    help="CSV with pixel_x,pixel_y [,array_row,array_col] per spot (with --image).",
)
@click.option(
    "--mpp",
    type=float,
    default=None,
    help="µm per full-resolution pixel (needed unless the TIFF carries a resolution tag).",
)
@click.option(
    "--min-tissue",
    type=float,
    default=0.25,
    show_default=True,
    help="Tile mode: smallest tissue fraction of a kept tile.",
)
@data_options(dataset_help="Registered dataset of --sections (see `geneshot data list`).")
@click.option(
    "--sections",
    default=None,
    help="Comma-separated sections of --dataset (spots and counts known).",
)
@click.option("--genes", default=None, help="Comma-separated genes, e.g. ERBB2,MYC.")
@click.option(
    "--gene-list",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File with one gene per line.",
)
@click.option(
    "--describe",
    multiple=True,
    help='"GENE=free text" for a gene the knowledge base lacks (repeatable).',
)
@click.option(
    "--mc-samples",
    default=16,
    show_default=True,
    help="MC-dropout passes when the run has a single member.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file: the prediction .h5ad to write (e.g. out/pred.h5ad).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    default=None,
    help="Optional: the reference .h5ad the run was trained with; checked against the run's hash.",
)
@cache_option
def predict_cmd(
    run_dir,
    image,
    spots,
    mpp,
    min_tissue,
    data,
    dataset,
    sections,
    genes,
    gene_list,
    describe,
    mc_samples,
    reference,
    out,
    cache_dir,
) -> None:
    """Predict genes (seen, unseen or described) on a new slide; write a squidpy-ready h5ad."""
    from geneshot.errors import InputError
    from geneshot.predict import predict_image, predict_sections, write_h5ad
    from geneshot.train._ensemble import Ensemble

    if (image is None) == (sections is None):
        raise InputError(
            None,
            "give either --image (a new slide) or --sections (of --dataset)",
            "e.g. --image slide.tif --mpp 0.5, or --data DIR --dataset her2st --sections C6",
        )
    if spots is not None and image is None:
        raise InputError(spots, "--spots needs --image", "add --image PATH")
    names, descriptions = parse_genes(genes, gene_list, describe)
    cache = make_cache(cache_dir)
    model = Ensemble.load(run_dir, mc_samples=mc_samples)
    from geneshot.cli._train import check_reference

    check_reference(model, reference)
    if image is not None:
        adata = predict_image(
            model,
            image,
            names,
            spots=spots,
            mpp=mpp,
            descriptions=descriptions,
            min_tissue=min_tissue,
            cache=cache,
            progress=progress_enabled(),
            library_id=None,
        )
    else:
        data = resolve_data_dir(data, dataset)
        adata = predict_sections(
            model,
            dataset,
            data,
            [s.strip() for s in sections.split(",") if s.strip()],
            names,
            descriptions=descriptions,
            cache=cache,
            progress=progress_enabled(),
        )
    adata.uns["geneshot"]["run"] = str(run_dir)
    write_h5ad(adata, out)
    seen = int(adata.var["seen_in_training"].sum())
    click.echo(
        f"predicted {adata.n_vars} genes ({seen} seen in training, {adata.n_vars - seen} not) at {adata.n_obs} {'tiles' if adata.uns['geneshot']['mode'] == 'tiles' else 'spots'}; uncertainty: {model.uncertainty}"
    )
    _echo_departure(adata.var[Key.DEPARTURE])
    click.echo(f"wrote {out}")


def _echo_departure(dep) -> None:
    """One line on how far the maps leave the common per-spot pattern (zero-shot runs)."""
    dep = dep.dropna()
    if dep.empty:
        return
    far = ", ".join(f"{g} {v:.2f}" for g, v in dep.sort_values(ascending=False).head(5).items())
    click.echo(
        f"departure from the common pattern (var['departure'], 0 = the common pattern): "
        f"median {dep.median():.2f}; furthest: {far}"
    )


@main.command("plot")
@click.argument("h5ad", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--genes", default=None, help="Comma-separated genes (default: all in the file).")
@click.option(
    "--uncertainty/--no-uncertainty",
    default=True,
    show_default=True,
    help="Add a column with the predicted spread.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder for the PNG maps (created if missing).",
)
def plot_cmd(h5ad, genes, uncertainty, out_dir) -> None:
    """PNG maps of H5AD (a `geneshot predict` output) over the H&E: measured (when the file has
    it), predicted and uncertainty."""
    import anndata as ad
    import numpy as np

    from geneshot._constants import Key
    from geneshot.errors import InputError
    from geneshot.predict import HIRES, MEASURED
    from geneshot.report._maps import write_gene_maps

    if not h5ad.exists():
        raise InputError(h5ad, "file does not exist", "pass the --out file of `geneshot predict`")
    try:
        adata = ad.read_h5ad(h5ad)
    except (OSError, KeyError, ValueError) as err:
        raise InputError(
            h5ad, f"not a readable h5ad ({err})", "pass the --out file of `geneshot predict`"
        ) from None
    names = [g.strip() for g in genes.split(",") if g.strip()] if genes else list(adata.var_names)
    missing = [g for g in names if g not in adata.var_names]
    if missing:
        raise InputError(
            h5ad,
            f"genes not in the file: {', '.join(missing[:5])}",
            f"choose from: {', '.join(list(adata.var_names)[:20])}",
        )
    if Key.UNS_SPATIAL not in adata.uns or Key.SPATIAL not in adata.obsm:
        raise InputError(
            h5ad, "no uns['spatial'] / obsm['spatial']", "plot a file written by `geneshot predict`"
        )
    written = []
    libs = list(adata.uns[Key.UNS_SPATIAL])
    for lib in libs:
        sub = adata[adata.obs[Key.SECTION].astype(str) == lib] if len(libs) > 1 else adata
        entry = adata.uns[Key.UNS_SPATIAL][lib]
        sf = entry[Key.SCALEFACTORS]
        scale = float(sf.get(Key.HIRES_SCALEF, 1.0))
        img = entry.get(Key.IMAGES, {}).get(HIRES)
        idx = [list(adata.var_names).index(g) for g in names]
        values = {}
        if MEASURED in sub.layers:
            m = np.asarray(sub.layers[MEASURED])[:, idx]
            if np.isfinite(m).any():
                values["measured"] = m
        values["predicted"] = np.asarray(sub.X)[:, idx]
        if (
            uncertainty
            and Key.UNCERTAINTY in sub.layers
            and np.isfinite(sub.layers[Key.UNCERTAINTY]).any()
        ):
            values["uncertainty"] = np.asarray(sub.layers[Key.UNCERTAINTY])[:, idx]
        xy = np.asarray(sub.obsm[Key.SPATIAL]) * scale
        written += write_gene_maps(
            img,
            xy,
            values,
            names,
            float(sf.get(Key.SPOT_DIAMETER, 1.0)) * scale,
            out_dir,
            prefix=f"{lib}_",
            panel_titles=_departure_titles(adata, names),
        )
    click.echo(f"wrote {len(written)} maps to {out_dir}")


def _departure_titles(adata, names: list[str]) -> dict[tuple[str, str], str]:
    """The predicted panels' titles with the gene's departure from the common pattern."""
    import pandas as pd

    if Key.DEPARTURE not in adata.var:  # files written before the column
        return {}
    dep = adata.var[Key.DEPARTURE]
    return {
        (g, "predicted"): f"{g}: predicted (departure {dep[g]:.2f})"
        for g in names
        if pd.notna(dep[g])  # NaN: no common pattern (supervised runs)
    }
