"""Where a zero-shot model commits to a gene-specific map, and where it falls back to depth.

Usage::

    python scripts/fallback_check.py out/benchmark --methods align-st gene-kernel permuted-text \
        --png docs/img/fallback_check.png

For every gene scored in every fold, its *departure* is ``1 - corr(pred_g, pred_depth)`` over
the test spots (mean over folds): how far the model's map of the gene leaves the depth
control's common pattern. It reads predictions only, never targets. Genes are binned by
departure (quartiles per method), and each bin reports the mean per-gene PCC difference to
depth (``per_gene`` tables, per-section r) with a paired bootstrap CI and the Wilcoxon p
(:func:`geneshot.metrics.paired_test`).

Every benchmark run writes the same table for all its zero-shot methods (``departure.csv``,
and a section of ``results.md`` and ``report.html``; :mod:`geneshot.benchmark._departure`);
this script reads a finished run folder, for chosen methods, and draws the points.

The issue's rule: where the gene-specific evidence is weak, the prediction should stay at the
common pattern rather than go below depth. A model that follows it has near-zero departure
and a near-zero difference in its lowest bin, and no bin significantly below depth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from geneshot.benchmark import departure_bins
from geneshot.metrics import departure as map_departure
from geneshot.report import read_per_gene


def _prediction(
    fold: Path, method: str, trained_on: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    files = sorted(fold.glob(f"{method.replace('+', '_')}__{trained_on}__*.npz"))
    if not files:
        sys.exit(f"{fold}: no predictions of {method!r}; is it a method of this run?")
    z = np.load(files[0])
    preds = {k[len("pred_") :]: z[k].astype(np.float64) for k in z.files if k.startswith("pred_")}
    return preds, [str(g) for g in z["genes"]]


def departure(out: Path, method: str, trained_on: str = "libsize") -> pd.Series:
    """Mean over folds of ``1 - corr(pred_g, pred_depth)`` per gene (test spots, per section)."""
    rows: dict[str, list[float]] = {}
    for fold in sorted(p for p in (out / "folds").iterdir() if (p / "fold.json").is_file()):
        preds, genes = _prediction(fold, method, trained_on)
        depth, depth_genes = _prediction(fold, "depth", trained_on)
        if depth_genes != genes:
            sys.exit(f"{fold}: {method} and depth predict different genes")
        for section, p in preds.items():
            # depth predicts one map for every gene: the common pattern
            for g, v in zip(genes, map_departure(p, depth[section][:, 0]), strict=True):
                rows.setdefault(g, []).append(float(v))
    return pd.Series({g: float(np.mean(v)) for g, v in rows.items()}, name="departure")


def bins(
    out: Path, method: str, trained_on: str, convention: str, n_bins: int = 4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per departure bin (the benchmark's own table,
    :func:`geneshot.benchmark.departure_bins`); and the points."""
    d = departure(out, method, trained_on)
    r = read_per_gene(out, method, trained_on, convention)
    r0 = read_per_gene(out, "depth", trained_on, convention)
    boot = {"n_boot": 2000, "seed": 0, "level": 0.95}
    table = departure_bins(d, r, r0, method, boot, n_bins)
    genes = d.index.intersection(r.index).intersection(r0.index)
    return table, pd.DataFrame({"departure": d[genes], "diff": r[genes] - r0[genes]})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the benchmark's --out folder")
    ap.add_argument("--methods", nargs="+", default=["align-st", "gene-kernel", "permuted-text"])
    ap.add_argument("--bins", type=int, default=4)
    ap.add_argument("--trained-on", default="libsize")
    ap.add_argument("--convention", default="libsize")
    ap.add_argument("--png", type=Path, help="scatter of departure against r - r_depth")
    args = ap.parse_args(argv)
    tables, points = [], {}
    for m in args.methods:
        t, pts = bins(args.out, m, args.trained_on, args.convention, args.bins)
        tables.append(t)
        points[m] = pts
    print(pd.concat(tables).to_markdown(index=False, floatfmt=".3g"))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(
            1, len(points), figsize=(4 * len(points), 3.4), sharex=True, sharey=True
        )
        for ax, (m, pts) in zip(np.atleast_1d(axes), points.items(), strict=True):
            ax.scatter(pts["departure"], pts["diff"], s=8, alpha=0.6)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_title(m)
            ax.set_xlabel("departure from depth's map (1 - r)")
        np.atleast_1d(axes)[0].set_ylabel("per-gene PCC minus depth's")
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
