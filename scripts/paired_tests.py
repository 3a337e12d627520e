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

from geneshot.errors import InputError
from geneshot.metrics import paired_test
from geneshot.report import read_per_gene


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
        try:
            ra = read_per_gene(args.out, a, args.trained_on, args.convention)
            rb = read_per_gene(args.out, b, args.trained_on, args.convention)
        except InputError as err:
            sys.exit(str(err))
        common = ra.index.intersection(rb.index)
        t = paired_test(ra.loc[common], rb.loc[common])
        lo, hi = t["ci"]
        print(
            f"| {a} | {b} | {t['mean_diff']:+.3f} | [{lo:.3f}, {hi:.3f}] | {t['p_value']:.2g} | {t['n']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
