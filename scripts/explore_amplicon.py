"""Diagnostic: where a gene's own spatial evidence lies among the seen and the unseen genes.

Usage::

    python scripts/explore_amplicon.py C3,C4,C5,C6 --gene ERBB2 [--data DIR]

A zero-shot model reads an unseen gene's map off the seen genes' fitted maps. A gene whose
map departs from the common per-spot pattern can only get that departure from seen genes
that share it. In a HER2+ tumour the strongest such sharing is the 17q12 amplicon: ERBB2 and
its co-amplified neighbours rise together in the tumour cells. This script splits the genes
as the benchmark does on the given TRAINING sections (the most expressed genes unseen), then
lists the genes in the named gene's cytoband neighbourhood, whether each is seen or unseen,
and its correlation with the gene over the training spots after each spot's mean over the
seen genes (the common pattern) is regressed out; then the seen genes, anywhere in the
genome, that share most of the gene's departure from that pattern. Only the given sections' counts are read;
pass an outer fold's training sections (C3-C6 for the fold whose test section is C2).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from geneshot.data import TargetTransform, gene_universe
from geneshot.genes import load_knowledge
from geneshot.io import read_dataset
from geneshot.workflow import split_genes


class _Counts:
    """What :func:`geneshot.workflow.split_genes` reads of a section: its ``adata``."""

    def __init__(self, adata) -> None:
        self.adata = adata


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", help="training sections, comma-separated (e.g. C3,C4,C5,C6)")
    ap.add_argument("--gene", default="ERBB2")
    ap.add_argument("--arm-prefix", default=None, help="cytoband prefix of the neighbourhood (default: the gene's band to one decimal, e.g. 17q12)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("GENESHOT_DATA", "../shared/data")) / "her2st")
    args = ap.parse_args()

    adatas = gene_universe(read_dataset("her2st", args.data, args.train.split(",")), "union")
    split = split_genes([_Counts(a) for a in adatas], n_unseen=250, seen_pool=2000)
    seen, unseen = list(split.seen), list(split.unseen)
    bands = load_knowledge()["cytoband"]
    band = str(bands.get(args.gene, ""))
    prefix = args.arm_prefix or band.split(".")[0]
    near = [g for g in seen + unseen if str(bands.get(g, "")).startswith(prefix)]
    target = TargetTransform.fit(adatas, "libsize")
    y = np.vstack([target.transform(a, [args.gene, *near]) for a in adatas])
    y_seen = np.vstack([target.transform(a, seen) for a in adatas])
    design = np.c_[y_seen.mean(1), np.ones(len(y_seen))]

    def beyond_common(v: np.ndarray) -> np.ndarray:
        return v - design @ np.linalg.lstsq(design, v, rcond=None)[0]

    resid = beyond_common(y)
    r = np.corrcoef(resid.T)[0, 1:]
    raw = np.corrcoef(y.T)[0, 1:]
    rank = {g: i for i, g in enumerate(unseen + seen)}
    print(f"{args.gene}: band {band}, {'unseen' if args.gene in unseen else 'seen'}; {len(y)} training spots of {args.train}")
    print(f"genes in {prefix}*: {sum(g in unseen for g in near)} unseen, {sum(g in seen for g in near)} seen")
    print("| gene | band | split | expression rank | corr with the gene | corr beyond the common pattern |")
    print("|---|---|---|---:|---:|---:|")
    for i in np.argsort(-r):
        g = near[i]
        if g == args.gene:
            continue
        print(f"| {g} | {bands.get(g, '')} | {'unseen' if g in unseen else 'seen'} | {rank[g] + 1} | {raw[i]:.2f} | {r[i]:.2f} |")
    rs = beyond_common(y_seen)
    g0 = resid[:, 0] - resid[:, 0].mean()
    rc = rs - rs.mean(0)
    corr = (rc * g0[:, None]).sum(0) / np.sqrt((rc**2).sum(0) * (g0**2).sum() + 1e-12)
    top = np.argsort(-corr)[:8]
    print(f"\nseen genes sharing most of {args.gene}'s departure from the common pattern (genome-wide):")
    print(", ".join(f"{seen[i]} ({bands.get(seen[i], '')}) {corr[i]:.2f}" for i in top))


if __name__ == "__main__":
    main()
