"""``geneshot prepare``: read a dataset and cache every model input."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

import click

from geneshot.cli._main import (
    GENE_ENCODER_CHOICE,
    IMAGE_ENCODER_CHOICE,
    TextEncoderType,
    cache_option,
    data_options,
    main,
    make_cache,
    progress_enabled,
    resolve_data_dir,
)


def feature_options(f):
    """Options shared by prepare, train and predict: how model inputs are made."""
    opts = [
        click.option(
            "--image-encoder",
            type=IMAGE_ENCODER_CHOICE,
            default=None,
            help="Patch encoder (see `geneshot encoders`; default: the package default, effnet-lite1).",
        ),
        click.option(
            "--tta/--no-tta",
            default=False,
            show_default=True,
            help="Average image features over flips and rotations.",
        ),
        click.option(
            "--finetune/--no-finetune",
            default=None,
            help="Fine-tune the image encoder's last block on the training genes (effnet-lite; "
            "prepare keeps its input activations; default: the package default).",
        ),
        click.option(
            "--nuclei/--no-nuclei",
            default=True,
            show_default=True,
            help="Segment nuclei and build nuclei-distribution maps.",
        ),
        click.option(
            "--stain",
            type=click.Choice(["macenko", "reinhard"]),
            default=None,
            help="Stain normalisation (off by default).",
        ),
        click.option(
            "--fov-um",
            default=None,
            help="Larger windows around each spot, comma-separated µm (e.g. 224,448; 'none' = off; default: the package default).",
        ),
        click.option(
            "--context-um",
            default=None,
            help="Outer radii of the neighbour rings, comma-separated µm (e.g. 300,500; 'none' = off; default: the package default).",
        ),
        click.option(
            "--text-encoder",
            type=TextEncoderType(),
            default="minilm",
            show_default=True,
            help="Gene-text encoder: a registered one (see `geneshot encoders`) or hf:<model id>.",
        ),
        click.option(
            "--gene-encoder",
            type=GENE_ENCODER_CHOICE,
            default=None,
            help="How a gene becomes model input: its description, its annotation terms as "
            "tokens (go-tokens) or both (default: the package default; see `geneshot encoders`).",
        ),
        click.option(
            "--gene-texts",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="JSON/TSV of symbol -> description overriding the knowledge base.",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def feature_config_from(kw: dict):
    """FeatureConfig from CLI keyword arguments."""
    from geneshot.prepare import FeatureConfig

    windows = {
        k: _micrometres(kw.get(k), f"--{k.replace('_', '-')}") for k in ("fov_um", "context_um")
    }
    return FeatureConfig(
        tta=kw["tta"],
        nuclei=kw["nuclei"],
        stain=kw["stain"],
        text_encoder=kw["text_encoder"],
        gene_text_source=str(kw["gene_texts"]) if kw.get("gene_texts") else None,
        **{k: v for k, v in windows.items() if v is not None},
        **({"gene_encoder": kw["gene_encoder"]} if kw.get("gene_encoder") else {}),
        **({"image_encoder": kw["image_encoder"]} if kw.get("image_encoder") else {}),
        **({"finetune": kw["finetune"]} if kw.get("finetune") is not None else {}),
    )


def _micrometres(value: str | None, option: str) -> tuple[float, ...] | None:
    """``"224,448"`` -> (224.0, 448.0); ``"none"`` -> (); None -> None (the default)."""
    from geneshot.errors import InputError

    if value is None:
        return None
    if value.strip().lower() in ("none", "off", ""):
        return ()
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise InputError(
            None,
            f"{option} {value!r} is not a list of numbers",
            f"write e.g. {option} 224,448 or {option} none",
        ) from None
    if any(v <= 0 for v in out):
        raise InputError(
            None, f"{option} {value!r} has a non-positive size", "give sizes in micrometres above 0"
        )
    return out


@main.command("prepare")
@data_options
@click.option(
    "--sections", default=None, help="Comma-separated section ids (default: all with an image)."
)
@click.option(
    "--n-genes",
    default=2250,
    show_default=True,
    help="Encode descriptions of this many most-expressed genes.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder: <section>.h5ad files and prepare_summary.json.",
)
@feature_options
@cache_option
def prepare_cmd(data, dataset, sections, n_genes, out, cache_dir, **kw) -> None:
    """Read sections and cache patches, image features, nuclei maps and gene-text embeddings."""
    from geneshot.cache import atomic_path
    from geneshot.data import gene_universe, select_genes
    from geneshot.io import read_dataset
    from geneshot.prepare import Timer, prepare_dataset

    progress = progress_enabled()
    t0 = time.perf_counter()
    timer = Timer()
    cache = make_cache(cache_dir)
    data = resolve_data_dir(data, dataset)
    config = feature_config_from(kw)
    with timer("read"):
        secs = read_dataset(
            dataset,
            data,
            sections,
            require_image=sections is not None,
            imaged_only=sections is None,
        )
        secs = gene_universe(secs)
    genes = select_genes(secs, "top_mean", n_genes)
    prepared, pg = prepare_dataset(secs, genes, config, cache=cache, progress=progress, timer=timer)
    # every output goes to a temporary file first; they are renamed only once all were
    # written, so a failure (or Ctrl-C) leaves no partial .h5ad and no summary behind
    with timer("write"), ExitStack() as outputs:
        out.mkdir(parents=True, exist_ok=True)
        for p in prepared:
            a = p.adata.copy()
            a.obsm[f"X_{config.image_encoder}"] = p.image
            if p.nuclei_summary is not None:
                a.obsm["nuclei_summary"] = p.nuclei_summary
            a.write_h5ad(outputs.enter_context(atomic_path(out / f"{p.name}.h5ad")))
        summary = {
            "dataset": dataset,
            "sections": {p.name: p.adata.n_obs for p in prepared},
            "spots": sum(p.adata.n_obs for p in prepared),
            "genes_in_universe": int(secs[0].n_vars),
            "genes_described": len(pg.symbols),
            "features": config.to_dict(),
            "image_feature_dim": int(prepared[0].image.shape[1]),
            "timings_s": {k: round(v, 2) for k, v in timer.times.items()},
            "cache": {"root": str(cache.root), "hits": cache.hits, "computed": cache.misses},
        }
        outputs.enter_context(atomic_path(out / "prepare_summary.json")).write_text(
            json.dumps(summary, indent=2)
        )
    total = time.perf_counter() - t0
    click.echo(
        f"prepared {summary['spots']} spots in {len(prepared)} sections ({', '.join(summary['sections'])}); {len(pg.symbols)} gene descriptions encoded"
    )
    for k, v in timer.times.items():
        click.echo(f"  {k:<24} {v:6.1f} s")
    click.echo(f"  {'total':<24} {total:6.1f} s")
    click.echo(f"cache {cache.root}: {cache.summary()}")
    click.echo(
        f"wrote {out}/<section>.h5ad (obsm: X_{config.image_encoder}{', nuclei_summary' if config.nuclei else ''}) and prepare_summary.json"
    )


@main.command("encoders")
def encoders_cmd() -> None:
    """List registered image, text and gene encoders (hub entries need `pip install geneshot[foundation]`)."""
    from geneshot.encoders.gene import GENE_ENCODERS
    from geneshot.encoders.image import IMAGE_ENCODERS
    from geneshot.encoders.text import TEXT_ENCODERS

    click.echo("image encoders:")
    for name, spec in IMAGE_ENCODERS.items():
        click.echo(
            f"  {name:<14} {spec.dim:>5}-d {spec.input_size:>4} px  {'hub (HF_TOKEN)' if spec.needs_hub else 'offline'}"
        )
    click.echo("text encoders:")
    for name in TEXT_ENCODERS:
        click.echo(f"  {name}")
    click.echo("  hf:<model id>  any Hugging Face / sentence-transformers model")
    click.echo("gene encoders (run on the text encoder):")
    for name, gspec in GENE_ENCODERS.items():
        click.echo(f"  {name:<22} {gspec.description}")
