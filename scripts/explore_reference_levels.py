"""Exploration: where gene-kernel+ref's unseen genes should take their level from, on one inner split.

Usage::

    python scripts/explore_reference_levels.py C3,C4,C5 C6 [--data DIR]

Trains ``gene-kernel+ref`` on the training sections with the count tables of every patient
but C as the reference (the split's sections are all C's), predicts the held-out section's
unseen genes, and prints their MSE with three levels: the kernel's (the seen neighbours'
levels, carried as the maps are), the reference's (each gene's mean log1p CP10k over the
reference rows; what the model uses), and the reference's mapped onto the training scale
through the seen genes (a line fitted to their training means against their reference
means). The maps, and so the PCC, are the same in all three. The split must lie inside one
outer fold's training sections: it informs what to build; the benchmark measures.
"""

from __future__ import annotations

import numpy as np
from explore_gene_kernels import FEATURES, mean_pcc, split_parser, split_reference

from geneshot.cache import Cache
from geneshot.data import TargetTransform
from geneshot.models._gene_cv import unit_rows
from geneshot.prepare import FeatureConfig
from geneshot.workflow import load_sections, split_and_describe, train_model


def main() -> None:
    ap = split_parser(__doc__)
    args = ap.parse_args()
    train_names = args.train.split(",")
    ref = split_reference(train_names, args.test, args.data)
    cfg, cache = FeatureConfig(**FEATURES), Cache()
    sections = load_sections(
        "her2st", args.data, [*train_names, args.test], cfg, cache=cache, progress=False
    )
    by_name = {s.name: s for s in sections}
    train = [by_name[s] for s in train_names]
    split, genes = split_and_describe(train, cfg, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in train], "libsize")
    unseen = list(split.unseen)
    y = target.transform(by_name[args.test].adata, unseen)
    gm = train_model(
        "gene-kernel+ref", "zero-shot", train, genes, split, target, cfg,
        progress=False, cache=cache, reference=ref,
    )  # fmt: skip
    pred = gm.predict(by_name[args.test], genes, unseen)
    est, gin = gm.module, gm._genes(genes, unseen)
    kq = est._kernel(unit_rows(gin.pooled.numpy().astype(np.float64)), gin.symbols)
    kernel_level = est.mean_icpt_ + kq @ est.solved_icpt_
    rows = est.coexp_.rows(unseen)
    found = rows >= 0
    ref_level = np.where(found, est.coexp_.level[np.maximum(rows, 0)], kernel_level)
    seen_train = np.vstack([target.transform(s.adata, list(split.seen)) for s in train]).mean(0)
    seen_rows = est.coexp_.rows(list(split.seen))
    ok = seen_rows >= 0
    slope, icpt = np.polyfit(est.coexp_.level[seen_rows[ok]], seen_train[ok], 1)
    mapped = np.where(found, icpt + slope * ref_level, kernel_level)

    def mse(level: np.ndarray) -> float:
        return float(((pred - ref_level + level - y) ** 2).mean())

    print(
        f"{args.train} -> {args.test}: PCC@M {mean_pcc(y, pred):.4f}; MSE with the kernel's "
        f"level {mse(kernel_level):.3f}, the reference's {mse(ref_level):.3f}, the reference's "
        f"through the seen genes (slope {slope:.2f}) {mse(mapped):.3f}; "
        f"{int(found.sum())} of {len(unseen)} genes in the reference"
    )


if __name__ == "__main__":
    main()
