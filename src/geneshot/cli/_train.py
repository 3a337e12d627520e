"""``geneshot train`` and ``geneshot evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geneshot.cli._main import cache_option, main, make_cache, resolve_data_dir
from geneshot.cli._prepare import feature_config_from, feature_options


def _read_config(path: Path | None) -> dict:
    if path is None:
        return {}
    import yaml

    from geneshot.errors import InputError

    if not path.exists():
        raise InputError(path, "config file does not exist", "check the path")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"config is not valid YAML ({err})", "fix the YAML syntax") from None
    if not isinstance(cfg, dict):
        raise InputError(path, "config must be a mapping", "write `model: {...}` and `train: {...}` sections")
    return cfg


@main.command("train")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Dataset folder (default $GENESHOT_DATA/<dataset>).")
@click.option("--dataset", default="her2st", show_default=True)
@click.option("--train-sections", required=True, help="Comma-separated training sections, e.g. C2,C3,C4,C5.")
@click.option("--setting", type=click.Choice(["zero-shot", "supervised"]), default="zero-shot", show_default=True)
@click.option("--model", "model_name", default="align-st", show_default=True, help="Registered model (see `geneshot models`).")
@click.option("--targets", type=click.Choice(["libsize", "sgn"]), default="libsize", show_default=True, help="Target convention.")
@click.option("--n-unseen", default=250, show_default=True, help="The N most expressed training genes are unseen (zero-shot) / the targets (supervised).")
@click.option("--unseen-genes", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Gene list file to use instead of the top-N.")
@click.option("--seen-pool", default=2000, show_default=True, help="Seen genes: the next most expressed genes after the unseen ones.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="YAML with `model:` and `train:` overrides.")
@click.option("--epochs", type=int, default=None, help="Override max epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--ensemble", "n_members", type=int, default=1, show_default=True, help="Train N members (seeds seed..seed+N-1) into OUT/members/<k>/ for uncertainty.")
@click.option("--accelerator", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True)
@click.option("--devices", type=int, default=1, show_default=True, help="Devices (use torchrun for several; see README).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder to write.")
@feature_options
@cache_option
@click.option("--quiet", is_flag=True)
def train_cmd(data, dataset, train_sections, setting, model_name, targets, n_unseen, unseen_genes, seen_pool, config_path, epochs, seed, n_members, accelerator, devices, out, cache_dir, quiet, **kw) -> None:
    """Train a model on TRAINING sections (validation is drawn from them) and save a run folder."""
    from geneshot.data import TargetTransform, load_gene_list
    from geneshot.train import GeneshotModel
    from geneshot.train._distributed import init_distributed
    from geneshot.workflow import genes_for, load_sections, split_genes

    rank, world = init_distributed(accelerator)  # torchrun sets WORLD_SIZE; otherwise (0, 1)
    quiet = quiet or rank != 0
    cache = make_cache(cache_dir)
    data = resolve_data_dir(data, dataset)
    features = feature_config_from(kw)
    cfg = _read_config(config_path)
    tcfg = {**cfg.get("train", {}), "seed": seed}
    if epochs is not None:
        tcfg["max_epochs"] = epochs
    secs = load_sections(dataset, data, train_sections.split(","), features, cache=cache, progress=not quiet)
    split = split_genes(secs, n_unseen=n_unseen, seen_pool=seen_pool, unseen=load_gene_list(unseen_genes) if unseen_genes else None)
    genes = genes_for(split, features, cache=cache, progress=not quiet)
    described = set(genes.symbols)
    split.seen = [g for g in split.seen if g in described]
    target = TargetTransform.fit([s.adata for s in secs], targets)

    def fit(member_seed: int) -> GeneshotModel:
        model = GeneshotModel(model_name, setting, {**tcfg, "seed": member_seed}, **cfg.get("model", {}))
        if setting == "zero-shot":
            model.train(secs, genes, seen_genes=split.seen, unseen_genes=split.unseen, target=target, features=features.to_dict(), accelerator=accelerator, devices=devices, progress=not quiet)
        else:
            model.train(secs, genes, seen_genes=split.unseen, target=target, features=features.to_dict(), accelerator=accelerator, devices=devices, progress=not quiet)
        return model

    # --ensemble N: N seeds in OUT/members/<k>/; OUT/run.json + weights.pt stay member 0's
    from geneshot.train._ensemble import Ensemble

    ens = Ensemble.train(n_members, fit, base_seed=seed)
    if rank != 0:
        return  # every process holds the same weights; rank 0 writes them
    ens.save(out)
    model = ens.members[0]
    best = getattr(model, "best_val", None)
    click.echo(f"trained {model_name} ({setting}, {targets} targets) on {train_sections}: {len(model.contract.seen_genes)} training genes, {len(model.contract.unseen_genes)} unseen")
    if best is not None:
        click.echo(f"  best validation PCC (held-out spots{' and genes' if setting == 'zero-shot' else ''} of training sections): {best:.3f}")
    click.echo(f"saved {out}/run.json and weights.pt")


@main.command("evaluate")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder from `geneshot train`.")
@click.option("--data", type=click.Path(path_type=Path), default=None)
@click.option("--dataset", default="her2st", show_default=True)
@click.option("--sections", required=True, help="Comma-separated test sections.")
@click.option("--genes", "which", default="unseen", show_default=True, help="unseen | seen | comma list of genes.")
@click.option("--targets", type=click.Choice(["libsize", "sgn"]), default=None, help="Target convention (default: the run's own).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="metrics.json to write (per-gene table beside it).")
@cache_option
@click.option("--quiet", is_flag=True)
def evaluate_cmd(run_dir, data, dataset, sections, which, targets, out, cache_dir, quiet) -> None:
    """Evaluate a trained run on test sections; print a table and write metrics."""
    from geneshot.cache import atomic_path
    from geneshot.errors import InputError
    from geneshot.prepare import FeatureConfig, prepare_genes
    from geneshot.train import Ensemble
    from geneshot.workflow import evaluate, load_sections

    cache = make_cache(cache_dir)
    # an ensemble run is scored by its members' mean (a single run is a one-member ensemble)
    model = Ensemble.load(run_dir)
    data = resolve_data_dir(data, dataset)
    features = FeatureConfig(**model.contract.features)
    overlap = set(sections.split(",")) & set(model.contract.train_sections)
    if overlap:
        click.echo(f"warning: {', '.join(sorted(overlap))} were training sections of this run; these numbers are not a test", err=True)
    c = model.contract
    names = c.unseen_genes if which == "unseen" else c.seen_genes if which == "seen" else [g.strip() for g in which.split(",") if g.strip()]
    if not names:
        raise InputError(run_dir, f"gene set {which!r} is empty for this run", "use --genes seen, or a comma list")
    secs = load_sections(dataset, data, sections.split(","), features, cache=cache, progress=not quiet, universe=sorted(set(c.seen_genes) | set(c.unseen_genes) | set(names)))
    genes = prepare_genes(sorted(set(names) | set(c.seen_genes)), features, cache=cache, progress=not quiet)
    target = model.target_for(targets)
    summary, per_gene, _, _ = evaluate(model, secs, genes, names, target=target)
    summary.update({"run": str(run_dir), "model": model.name, "setting": model.setting, "targets": target.kind, "genes": which if which in ("seen", "unseen") else "list", "test_sections": sections.split(",")})
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=float))
    per_gene_path = out.with_name(out.stem + "_per_gene.csv")
    with atomic_path(per_gene_path) as tmp:
        per_gene.to_csv(tmp)
    click.echo(f"{model.name} ({model.setting}) on {sections}, {len(names)} {which if which in ('seen', 'unseen') else 'listed'} genes, {target.kind} targets")
    click.echo(f"{'convention':<12} {'MSE':>8} {'MAE':>8} {'PCC@F':>7} {'PCC@S':>7} {'PCC@M':>7}")
    for conv in ("per_section", "pooled"):
        s = summary[conv]
        click.echo(f"{conv:<12} {summary['mse']:8.4f} {summary['mae']:8.4f} {s['pcc_f']:7.3f} {s['pcc_s']:7.3f} {s['pcc_m']:7.3f}")
    click.echo(f"wrote {out} and {per_gene_path}")


@main.command("models")
def models_cmd() -> None:
    """List registered models and the settings they support."""
    from geneshot.models import MODELS

    for name, spec in MODELS.items():
        settings = "/".join(s for s, ok in (("zero-shot", spec.zero_shot), ("supervised", spec.supervised)) if ok)
        click.echo(f"{name:<14} {spec.kind:<9} {settings:<21} {spec.description}")
