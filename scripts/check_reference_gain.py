"""Diagnostic: what gene-kernel+ref's gene CV makes of a reference, real and label-shuffled.

Usage::

    python scripts/check_reference_gain.py [--folds C2,C3] [--data DIR] [--min-gain-se 1.0]

For each outer fold of the default benchmark (leave one of C2-C6 out), fits gene-kernel+ref on
the fold's TRAINING sections with its reference (every patient but C), once as is and once
with the reference's gene labels shuffled (the ``permuted-reference`` control), and prints what
the gene CV chose: the reference weight, the criterion with and without it, and the gain over
the scored seen genes against its standard error (the rule that keeps or drops the reference,
:func:`geneshot.models._gene_cv.clear_gain`). No test section is read: the CV is inside
training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from explore_gene_kernels import FEATURES

from geneshot.benchmark._fold import RunState, fold_reference
from geneshot.cache import Cache
from geneshot.data import TargetTransform
from geneshot.prepare import FeatureConfig
from geneshot.workflow import load_sections, split_and_describe, train_model

SECTIONS = ["C2", "C3", "C4", "C5", "C6"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", default=",".join(SECTIONS), help="outer test sections")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/her2st"))
    ap.add_argument("--min-gain-se", type=float, default=1.0)
    args = ap.parse_args()
    cfg, cache = FeatureConfig(**FEATURES), Cache()
    sections = {
        s.name: s
        for s in load_sections("her2st", args.data, SECTIONS, cfg, cache=cache, progress=False)
    }  # read once for all folds
    # one run state, so that folds sharing a reference (all of C's: patients A, B, D-H) read it once
    state = RunState(
        cfg={"dataset": "her2st", "expression_reference": "auto"},
        out=Path("."), cache=cache, progress=False, data_dir=args.data,
    )  # fmt: skip
    print("| outer test | reference | weight | CV with | CV without | gain | SE | gain / SE |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for test in args.folds.split(","):
        names = [s for s in SECTIONS if s != test]
        train = [sections[s] for s in names]
        split, genes = split_and_describe(train, cfg, cache=cache, progress=False)
        target = TargetTransform.fit([s.adata for s in train], "libsize")
        ref = fold_reference(state, names, [test])[0]
        for label, permute in (("real", False), ("shuffled", True)):
            model = train_model(
                "gene-kernel+ref", "zero-shot", train, genes, split, target, cfg,
                model_config={"permute_reference": permute, "reference_min_gain_se": args.min_gain_se},
                progress=False, cache=cache, reference=ref,
            )  # fmt: skip
            c = model.module.chosen()
            gain, se = c["reference_gain"], c["reference_gain_se"]
            print(
                f"| {test} | {label} | {c['reference_weight']:g} | {c['cv_score']:.4f} | "
                f"{c['cv_score_without_reference']:.4f} | {gain:+.4f} | {se:.4f} | {gain / se:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
