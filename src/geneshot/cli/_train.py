"""``geneshot train`` and ``geneshot evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geneshot.cli._config import read_train_config
from geneshot.cli._main import (
    cache_option,
    data_options,
    main,
    make_cache,
    model_option,
    progress_enabled,
    resolve_data_dir,
)
from geneshot.cli._prepare import feature_config_from, feature_options


def reference_option(help_text: str):
    """``--reference PATH``: a raw-count .h5ad of other samples (``ref-impute`` and the like)."""
    return click.option("--reference", "reference", type=click.Path(path_type=Path), default=None, help=help_text)


def check_reference(model, path: Path | None) -> None:
    """Raise unless ``path`` is the reference the run was trained with (no-op without ``path``)."""
    if path is None:
        return
    from geneshot.cache import fingerprint
    from geneshot.errors import InputError

    if not Path(path).is_file():
        raise InputError(path, "reference file does not exist", "pass the --reference file the run was trained with, or leave it out")
    rec = model.contract.reference
    if not rec:
        raise InputError(path, "this run was trained without a reference", "leave --reference out")
    if fingerprint(path) != rec.get("sha256"):
        raise InputError(path, f"reference differs from the run's (trained with {rec.get('source')}, hash {str(rec.get('sha256'))[:12]})", "pass the reference the run was trained with, or leave --reference out")


@main.command("train")
@data_options
@click.option("--train-sections", required=True, help="Comma-separated training sections, e.g. C2,C3,C4,C5.")
@click.option("--setting", type=click.Choice(["zero-shot", "supervised"]), default="zero-shot", show_default=True, help="zero-shot: hold the top genes out and predict them from text; supervised: train on them.")
@model_option
@click.option("--targets", type=click.Choice(["libsize", "sgn"]), default="libsize", show_default=True, help="Target convention.")
@click.option("--n-unseen", default=250, show_default=True, help="The N most expressed training genes are unseen (zero-shot) / the targets (supervised).")
@click.option("--unseen-genes", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Gene list file to use instead of the top-N.")
@click.option("--seen-pool", default=2000, show_default=True, help="Seen genes: the next most expressed genes after the unseen ones.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="YAML with `model:` (keys of the model's default config) and `train:` (TrainConfig fields) overrides; checked before training.")
@click.option("--max-epochs", type=click.IntRange(1), default=None, help="Override max_epochs (of the config or the default).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (of member 0 with --ensemble).")
@click.option("--ensemble", "n_members", type=int, default=1, show_default=True, help="Train N members (seeds seed..seed+N-1) into OUT/members/<k>/ for uncertainty.")
@click.option("--accelerator", type=click.Choice(["cpu", "gpu", "auto"]), default="cpu", show_default=True, help="Where to train (gpu: CUDA; use torchrun for several GPUs).")
@reference_option("Raw-count .h5ad of OTHER samples of the tissue (cells or spots x genes), for models that need one (ref-impute).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder to write (run.json, weights.pt).")
@feature_options
@cache_option
def train_cmd(data, dataset, train_sections, setting, model_name, targets, n_unseen, unseen_genes, seen_pool, config_path, max_epochs, seed, n_members, accelerator, reference, out, cache_dir, **kw) -> None:
    """Train a model on TRAINING sections (validation is drawn from them) and save a run folder."""
    from geneshot.data import TargetTransform, load_gene_list
    from geneshot.train import GeneshotModel
    from geneshot.train._distributed import init_distributed
    from geneshot.workflow import load_sections, split_and_describe, train_model

    rank, world = init_distributed(accelerator)  # torchrun sets WORLD_SIZE; otherwise (0, 1)
    progress = progress_enabled() and rank == 0  # one bar, drawn by rank 0
    cache = make_cache(cache_dir)
    data = resolve_data_dir(data, dataset)
    features = feature_config_from(kw)
    cfg = read_train_config(config_path, model_name)
    from geneshot.models import MODELS

    ref = None
    if reference is not None:
        from geneshot.genes import read_reference

        ref = read_reference(reference, cache=cache)
    elif model_name in MODELS and MODELS[model_name].needs_reference:
        from geneshot.errors import InputError

        raise InputError(None, f"model {model_name!r} needs --reference", "pass --reference REF.h5ad (raw counts of other patients' samples)")
    tcfg = {**cfg["train"], "seed": seed}
    if max_epochs is not None:
        tcfg["max_epochs"] = max_epochs
    secs = load_sections(dataset, data, train_sections.split(","), features, cache=cache, progress=progress)
    unseen = load_gene_list(unseen_genes) if unseen_genes else None
    split, genes = split_and_describe(secs, features, cache=cache, n_unseen=n_unseen, seen_pool=seen_pool, unseen=unseen, progress=progress)
    target = TargetTransform.fit([s.adata for s in secs], targets)

    def fit(member_seed: int) -> GeneshotModel:
        return train_model(
            model_name, setting, secs, genes, split, target, features,
            train_config={**tcfg, "seed": member_seed}, model_config=cfg.get("model", {}), accelerator=accelerator, progress=progress,
            reference=ref, cache=cache,
        )

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
        criterion = "gene-specific PCC" if model.train_config.select_on == "gene_specific" else "PCC"
        held = "a held-out training section or spots" + (" and held-out seen genes" if setting == "zero-shot" else "")
        click.echo(f"  best validation {criterion} ({held}): {best:.3f}")
    if n_members > 1 and ens.uncertainty == "none":
        click.echo(
            f"  note: {model_name}'s members predict alike (a closed form that seeds barely move), "
            "so the run reports no uncertainty; members are averaged all the same"
        )
    click.echo(f"saved {out}/run.json and weights.pt")


@main.command("evaluate")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder from `geneshot train`.")
@data_options
@click.option("--sections", required=True, help="Comma-separated test sections.")
@click.option("--genes", "which", default="unseen", show_default=True, help="unseen | seen | comma list of genes.")
@click.option("--targets", type=click.Choice(["libsize", "sgn"]), default=None, help="Target convention (default: the run's own).")
@reference_option("Optional: the reference .h5ad the run was trained with; checked against the run's hash.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file: metrics JSON (e.g. out/metrics.json); <name>_per_gene.csv is written beside it.")
@cache_option
def evaluate_cmd(run_dir, data, dataset, sections, which, targets, reference, out, cache_dir) -> None:
    """Evaluate a trained run on test sections; print a table and write metrics."""
    from geneshot.cache import atomic_path
    from geneshot.errors import InputError
    from geneshot.prepare import FeatureConfig, prepare_genes
    from geneshot.train import Ensemble
    from geneshot.workflow import evaluate, load_sections

    progress = progress_enabled()
    cache = make_cache(cache_dir)
    # an ensemble run is scored by its members' mean (a single run is a one-member ensemble)
    model = Ensemble.load(run_dir)
    check_reference(model, reference)
    data = resolve_data_dir(data, dataset)
    features = FeatureConfig(**model.contract.features)
    overlap = set(sections.split(",")) & set(model.contract.train_sections)
    if overlap:
        click.echo(f"warning: {', '.join(sorted(overlap))} were training sections of this run; these numbers are not a test", err=True)
    c = model.contract
    names = c.unseen_genes if which == "unseen" else c.seen_genes if which == "seen" else [g.strip() for g in which.split(",") if g.strip()]
    if not names:
        raise InputError(run_dir, f"gene set {which!r} is empty for this run", "use --genes seen, or a comma list")
    secs = load_sections(dataset, data, sections.split(","), features, cache=cache, progress=progress, universe=sorted(set(c.seen_genes) | set(c.unseen_genes) | set(names)))
    genes = prepare_genes(sorted(set(names) | set(c.seen_genes)), features, cache=cache, progress=progress)
    target = model.target_for(targets)
    summary, per_gene, ys, preds = evaluate(model, secs, genes, names, target=target)
    common = _against_common(model, secs, ys, preds, names, per_gene["r_per_section"])
    if common is not None:
        per_gene = per_gene.join(common[0])
        summary["common_pattern"] = {"pcc_m_per_section": common[2], "departure_bins": common[1].to_dict("records")}
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
    if common is not None:
        bins = common[1]
        steps = ", ".join(f"{r.mean_diff_r:+.3f}" + (f" (p {r.p_wilcoxon:.2g})" if r.p_wilcoxon == r.p_wilcoxon else "") for r in bins.itertuples())
        click.echo(f"the run's common per-spot pattern alone (what depth scores): PCC@M {common[2]:.3f}")
        click.echo(f"  per-gene PCC minus the common pattern's, by quarter of departure from it (least first): {steps}")
    click.echo(f"wrote {out} and {per_gene_path}")


def _against_common(model, sections, ys, preds, names, r_model):
    """The run's maps against its own common pattern on these sections; None without one."""
    from geneshot.benchmark import against_common

    commons = [model.common_pattern(s) for s in sections]
    if any(c is None for c in commons):
        return None
    return against_common(ys, preds, commons, list(names), [s.name for s in sections], model.name, r_model)


@main.command("models")
def models_cmd() -> None:
    """List registered models and the settings they support."""
    from geneshot.models import MODELS

    for name, spec in MODELS.items():
        settings = "/".join(s for s, ok in (("zero-shot", spec.zero_shot), ("supervised", spec.supervised)) if ok)
        click.echo(f"{name:<14} {spec.kind:<9} {settings:<21} {spec.description}")
