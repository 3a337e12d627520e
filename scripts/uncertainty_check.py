"""Does a larger predicted spread go with a larger error on held-out data?

Predicts held-out sections with a run (an ensemble from ``geneshot train --ensemble N``, or
a single run, whose spread then comes from MC dropout), and reports Spearman rank
correlations between the predicted standard deviation and the absolute error:

- ``pairs``: over all (spot, gene) pairs;
- ``within_gene_median``: median over genes of the correlation across spots;
- ``across_genes``: per-gene mean spread vs per-gene mean absolute error;
- ``deciles``: mean absolute error in each decile of the spread (should rise).

Usage::

    geneshot train --train-sections C2,C3,C4,C5 --ensemble 3 --out runs/ens3
    python scripts/uncertainty_check.py --run runs/ens3 --sections C6 --out unc_c6.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def uncertainty_report(
    measured: np.ndarray, predicted: np.ndarray, spread: np.ndarray, genes: list[str]
) -> dict:
    """Rank correlations between spread and absolute error (see the module docstring)."""
    err = np.abs(predicted - measured)
    ok = np.isfinite(err) & np.isfinite(spread)
    pairs = spearmanr(spread[ok], err[ok]).statistic
    within = []
    for g in range(err.shape[1]):
        m = ok[:, g]
        if m.sum() > 5 and np.ptp(spread[m, g]) > 0 and np.ptp(err[m, g]) > 0:
            within.append(spearmanr(spread[m, g], err[m, g]).statistic)
    gene_spread = np.nanmean(np.where(ok, spread, np.nan), 0)
    gene_err = np.nanmean(np.where(ok, err, np.nan), 0)
    across = spearmanr(gene_spread, gene_err).statistic if len(genes) > 2 else float("nan")
    s, e = spread[ok], err[ok]
    edges = np.quantile(s, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, 9)
    deciles = [float(e[bins == b].mean()) if (bins == b).any() else float("nan") for b in range(10)]
    return {
        "n_pairs": int(ok.sum()),
        "n_genes": len(genes),
        "spearman": {
            "pairs": float(pairs),
            "within_gene_median": float(np.median(within)) if within else float("nan"),
            "across_genes": float(across),
        },
        "within_gene_positive_frac": float(np.mean(np.asarray(within) > 0))
        if within
        else float("nan"),
        "abs_error_by_spread_decile": deciles,
        "spread_decile_edges": edges.tolist(),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", required=True, type=Path)
    p.add_argument(
        "--data", type=Path, default=None, help="dataset folder (default $GENESHOT_DATA/<dataset>)"
    )
    p.add_argument("--dataset", default="her2st")
    p.add_argument("--sections", required=True, help="held-out sections, e.g. C6")
    p.add_argument("--genes", default="unseen", help="unseen | seen | comma list")
    p.add_argument("--max-genes", type=int, default=None, help="first N genes of the set")
    p.add_argument("--mc-samples", type=int, default=16)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    from geneshot.cache import Cache
    from geneshot.cli._main import resolve_data_dir
    from geneshot.predict import MEASURED, predict_sections
    from geneshot.train._ensemble import Ensemble

    model = Ensemble.load(args.run, mc_samples=args.mc_samples)
    if model.uncertainty == "none":
        raise SystemExit(f"{args.run}: no uncertainty to check ({model.describe()['statistic']})")
    c = model.contract
    genes = (
        c.unseen_genes
        if args.genes == "unseen"
        else c.seen_genes
        if args.genes == "seen"
        else args.genes.split(",")
    )
    genes = list(genes)[: args.max_genes]
    held = sorted(set(args.sections.split(",")) & set(c.train_sections))
    if held:
        raise SystemExit(
            f"{', '.join(held)} were training sections of this run; pick held-out sections"
        )
    data = resolve_data_dir(args.data, args.dataset)
    a = predict_sections(
        model,
        args.dataset,
        data,
        args.sections.split(","),
        genes,
        cache=Cache(args.cache),
        progress=True,
    )
    report = uncertainty_report(
        np.asarray(a.layers[MEASURED]), np.asarray(a.X), np.asarray(a.layers["uncertainty"]), genes
    )
    report.update(
        {
            "run": str(args.run),
            "sections": args.sections.split(","),
            "genes": args.genes,
            "uncertainty": model.describe(),
            "target": model.target.kind,
        }
    )
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
