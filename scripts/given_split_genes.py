"""The unseen genes of ``configs/her2st_given_split.yaml``: a gene split where ERBB2's
amplicon partners are seen.

Under the default split (the 250 most expressed genes of the training sections unseen) every
gene of ERBB2's 17q12 amplicon is unseen too, so no seen gene carries ERBB2's own pattern
(BENCHMARKS.md, session 13). This split asks what the zero-shot models draw when they do:
ERBB2, KRT19 and COL1A1, plus 247 genes drawn (seed 0) from the 1,000 most expressed genes of
the patients other than C (mean log1p CP10k over their count tables; C's counts are never
read), with the amplicon partners left out of the draw so that they stay seen.

Usage::

    python scripts/given_split_genes.py --data ../shared/data/her2st --out configs/her2st_given_unseen.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

# the 17q12-q21 genes around ERBB2 (session 13's table and their neighbours on the amplicon)
AMPLICON = (
    "MIEN1 PCGF2 CISD3 PPP1R1B STARD3 MLLT6 GRB7 PIP4K2B PNMT PSMB3 LASP1 PGAP3 TCAP ORMDL3 "
    "GSDMB MED1 CDK12 NEUROD2 IKZF3 PSMD3 MED24 THRA NR1D1"
).split()
MAP_GENES = ["ERBB2", "KRT19", "COL1A1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/her2st"))
    ap.add_argument("--out", type=Path, default=Path("configs/her2st_given_unseen.txt"))
    ap.add_argument("--top", type=int, default=1000)
    ap.add_argument("--n", type=int, default=250)
    args = ap.parse_args()
    tables = sorted(p for p in (args.data / "ST-cnts").glob("*.tsv.gz") if not p.name.startswith("C"))
    means = []
    for path in tables:
        counts = pd.read_csv(path, sep="\t", index_col=0)
        cp10k = counts.div(counts.sum(1).clip(lower=1), axis=0) * 1e4
        means.append(np.log1p(cp10k).mean(0))
    level = pd.concat(means, axis=1).fillna(0.0).mean(1).sort_values(ascending=False)
    top = list(level.index[: args.top])
    pool = [g for g in top if g not in set(AMPLICON) | set(MAP_GENES)]
    drawn = np.random.default_rng(0).choice(pool, size=args.n - len(MAP_GENES), replace=False)
    genes = MAP_GENES + sorted(drawn.tolist())
    args.out.write_text("\n".join(genes) + "\n")
    print(f"{len(tables)} count tables (no patient C); wrote {len(genes)} unseen genes to {args.out}")


if __name__ == "__main__":
    main()
