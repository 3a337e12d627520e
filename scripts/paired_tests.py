"""Paired per-gene tests between any two methods of a finished benchmark run.

Usage::

    python scripts/paired_tests.py out/benchmark gene-kernel:depth align-st:depth

Reads ``OUT/per_gene/<method>__<trained_on>__<convention>.csv`` (per-section r of every gene
scored in every fold) and prints, per pair ``a:b``, the mean of ``r_a - r_b`` over the genes
both scored, its paired bootstrap CI and the Wilcoxon signed-rank p
(:func:`geneshot.metrics.paired_test`) as a markdown table. The benchmark's own
``paired.csv`` compares its reference method with every other; this compares any two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from geneshot.metrics import paired_test


def per_gene(out: Path, method: str, trained_on: str, convention: str) -> pd.Series:
    """Per-section r of every gene of ``method`` (a ``+`` in the name is ``_`` in the file)."""
    path = out / "per_gene" / f"{method.replace('+', '_')}__{trained_on}__{convention}.csv"
    if not path.is_file():
        sys.exit(f"{path}: no per-gene table; is {method!r} a method of this run?")
    table = pd.read_csv(path, index_col="gene")
    return table.loc[table["n_folds"] == table["n_folds"].max(), "r_per_section"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the benchmark's --out folder")
    ap.add_argument("pairs", nargs="+", help="a:b pairs of method names")
    ap.add_argument("--trained-on", default="libsize")
    ap.add_argument("--convention", default="libsize")
    args = ap.parse_args(argv)
    print("| a | b | mean diff | 95% CI | Wilcoxon p | genes |\n|---|---|---:|---|---:|---:|")
    for pair in args.pairs:
        a, _, b = pair.partition(":")
        if not b:
            sys.exit(f"{pair!r}: write pairs as a:b")
        ra = per_gene(args.out, a, args.trained_on, args.convention)
        rb = per_gene(args.out, b, args.trained_on, args.convention)
        common = ra.index.intersection(rb.index)
        t = paired_test(ra.loc[common], rb.loc[common])
        lo, hi = t["ci"]
        print(
            f"| {a} | {b} | {t['mean_diff']:+.3f} | [{lo:.3f}, {hi:.3f}] | {t['p_value']:.2g} | {t['n']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
