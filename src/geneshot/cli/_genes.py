"""``geneshot genes describe|coverage``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from geneshot.cache import atomic_path
from geneshot.cli._main import (
    cache_option,
    data_options,
    main,
    make_cache,
    progress_enabled,
    resolve_data_dir,
)
from geneshot.errors import InputError


@main.group("genes")
def genes_group() -> None:
    """Gene descriptions (knowledge table or an LLM) and their coverage of a dataset."""


@genes_group.command("describe")
@click.option("--genes", "genes_csv", default=None, help="Comma-separated gene symbols.")
@click.option(
    "--gene-list",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File with one symbol per line (or a .npy array).",
)
@click.option(
    "--source",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Your own texts (.json or .tsv, symbol -> text) overriding the knowledge table.",
)
@click.option(
    "--style",
    type=click.Choice(["full", "short", "function"]),
    default="full",
    show_default=True,
    help="Knowledge-table description style.",
)
@click.option(
    "--missing",
    type=click.Choice(["symbol", "drop"]),
    default="symbol",
    show_default=True,
    help="Genes without annotation: use the bare symbol, or leave them out.",
)
@click.option(
    "--endpoint",
    default=None,
    help="OpenAI-compatible server (e.g. http://localhost:8000/v1): ask an LLM instead of the knowledge table.",
)
@click.option(
    "--llm-model",
    "model_name",
    default=None,
    help="Model the LLM server serves (with --endpoint), e.g. llama-3.1-8b-instruct.",
)
@click.option(
    "--samples",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="LLM answers per gene.",
)
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="Environment variable holding the LLM API key.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output file: JSON of symbol -> text (LLM: symbol -> list of texts).",
)
@cache_option
def describe_cmd(
    genes_csv,
    gene_list,
    source,
    style,
    missing,
    endpoint,
    model_name,
    samples,
    api_key_env,
    out_path,
    cache_dir,
) -> None:
    """Write gene descriptions to a JSON file."""
    from geneshot.genes import describe_genes, describe_with_llm

    if (genes_csv is None) == (gene_list is None):
        raise InputError(
            None,
            "give exactly one of --genes and --gene-list",
            "e.g. --genes ERBB2,ESR1 or --gene-list genes.txt",
        )
    from geneshot.data import load_gene_list

    genes = (
        load_gene_list(gene_list)
        if gene_list
        else list(dict.fromkeys(g.strip() for g in genes_csv.split(",") if g.strip()))
    )
    if not genes:
        raise InputError(None, "--genes is empty", "list at least one gene symbol")
    if endpoint:
        if not model_name:
            raise InputError(
                None,
                "--endpoint needs --llm-model",
                "name the model the server serves, e.g. --llm-model llama-3.1-8b-instruct",
            )
        result: dict = describe_with_llm(
            genes,
            endpoint,
            model_name,
            n_samples=samples,
            api_key_env=api_key_env,
            cache=make_cache(cache_dir),
            progress=progress_enabled(),
        )
        click.echo(
            f"{len(result)} genes x {samples} LLM answers from {endpoint} ({model_name})", err=True
        )
    else:
        result, report = describe_genes(genes, source=source, missing=missing, style=style)
        click.echo(report.summary(), err=True)
        if report.missing:
            shown = ", ".join(report.missing[:20]) + (" ..." if len(report.missing) > 20 else "")
            click.echo(f"without annotation: {shown}", err=True)
    with atomic_path(out_path) as tmp:
        tmp.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    click.echo(f"wrote {out_path}")


def dataset_gene_coverage(adatas, top: int = 250) -> dict:
    """Knowledge-table coverage of the genes in a list of section AnnDatas.

    Returns a dict with ``n_genes`` (union of genes), ``n_resolved``, ``n_with_go``,
    ``top_genes`` (the ``top`` genes by mean raw count over all spots, a gene absent from a
    section counting 0 there), ``top_missing`` and ``missing``.
    """
    from geneshot.genes import load_knowledge, resolve_symbols

    totals: dict[str, float] = {}
    n_spots = 0
    for a in adatas:
        sums = np.asarray(a.X.sum(0)).ravel()
        for g, s in zip(a.var_names, sums):
            totals[g] = totals.get(g, 0.0) + float(s)
        n_spots += a.n_obs
    genes = sorted(totals)
    canon = resolve_symbols(genes)
    kb = load_knowledge()
    resolved = [g for g in genes if canon[g] is not None]
    with_go = [g for g in resolved if any(kb.at[canon[g], c] for c in ("go_bp", "go_mf", "go_cc"))]
    top_genes = sorted(genes, key=lambda g: -totals[g])[:top]
    return {
        "n_genes": len(genes),
        "n_spots": n_spots,
        "n_resolved": len(resolved),
        "n_with_go": len(with_go),
        "top_genes": top_genes,
        "top_missing": [g for g in top_genes if canon[g] is None],
        "top_mean_counts": [totals[g] / max(n_spots, 1) for g in top_genes],
        "missing": [g for g in genes if canon[g] is None],
    }


@genes_group.command("coverage")
@data_options
@click.option("--sections", default=None, help="Comma-separated section ids (default: all).")
@click.option(
    "--top",
    type=click.IntRange(1),
    default=250,
    show_default=True,
    help="Also check the N genes with highest mean raw count.",
)
def coverage_cmd(data, dataset, sections, top) -> None:
    """How many of a dataset's genes the knowledge table describes."""
    from geneshot.io import read_dataset

    data_dir = resolve_data_dir(data, dataset)
    adatas = read_dataset(dataset, data_dir, sections)
    cov = dataset_gene_coverage(adatas, top=top)
    n = cov["n_genes"]
    n_top = len(cov["top_genes"])
    click.echo(f"{dataset}: {len(adatas)} sections, {cov['n_spots']} spots, {n} genes (union)")
    click.echo(f"  in the knowledge table: {cov['n_resolved']} ({cov['n_resolved'] / n:.1%})")
    click.echo(f"  with GO terms:          {cov['n_with_go']} ({cov['n_with_go'] / n:.1%})")
    click.echo(f"  top {n_top} by mean count: {n_top - len(cov['top_missing'])} / {n_top} covered")
    if cov["top_missing"]:
        click.echo(f"  top genes missing: {', '.join(cov['top_missing'])}")
    if cov["missing"]:
        shown = ", ".join(cov["missing"][:15]) + (" ..." if len(cov["missing"]) > 15 else "")
        click.echo(f"  missing ({len(cov['missing'])}): {shown}")
