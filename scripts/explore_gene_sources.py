"""Exploration: which other gene knowledge carries gene-kernel's maps, on one inner split.

Usage::

    python scripts/explore_gene_sources.py C3,C4,C5 C6 [--data DIR] [--org ORG_SQLITE]

Takes gene-kernel's seen-gene ridge fits on the split (``explore_gene_kernels``' arrays) and
re-solves its kernel ridge in gene space with the default kernel (go-tokens text, gamma 5,
plus 0.5 times the locus kernel) and additions to it:

* ``--org``: other tables of Bioconductor's org.Hs.eg.db (the SQLite file inside Debian's
  ``r-bioc-org.hs.eg.db``, see ``scripts/build_gene_knowledge.py``): KEGG pathways, GO with
  every ancestor term (``go_*_all``), PROSITE motifs, as IDF-weighted set cosines, and genomic
  distance (``exp(-|bp| / 1 Mb)`` on one chromosome);
* co-expression in the count tables of the patients other than C (never C: the split's
  sections are C's), exact and through :func:`geneshot.genes.coexpression_vectors`;
* the departure split into each seen fit's loading on the common pattern and its residual.

For each it prints the in-sample leave-one-gene-out score of the 400 most expressed seen
genes (what gene-kernel chooses by; lambda chosen by it) and the unseen genes' PCC@M on the
held-out section, with no departure factor and with gene-kernel's (8, 3.2). The split must
lie inside one outer fold's training sections: it informs what to build; the nested CV and
the benchmark decide.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np
from explore_gene_kernels import load_arrays, mean_pcc, split_parser, split_reference, unit

from geneshot.genes import (
    coexpression_vectors,
    locus_kernel,
    resolve_symbol,
)
from geneshot.models._gene_cv import departure_factor, loo_scores


class Split:
    """One inner split's arrays and the kernel-ridge solve every candidate kernel goes through."""

    def __init__(self, train: str, test: str, data: Path) -> None:
        d = load_arrays(train.split(","), test, data)
        self.ftr, self.ytr, self.fte, self.yte = (
            d[k].astype(np.float64) for k in ("Ftr", "Ytr", "Fte", "Yte")
        )
        self.genes = list(d["seen"]) + list(d["unseen"])
        self.ns = len(d["seen"])
        pooled = unit(np.vstack([d["ps"], d["pu"]]))
        self.base = np.exp(5 * (pooled @ pooled.T - 1)) + 0.5 * locus_kernel(self.genes, self.genes)
        self.rows = np.sort(np.random.default_rng(0).permutation(len(self.ftr))[:600])
        self.mtr = self.ftr.mean(1, keepdims=True)
        self.mte = self.fte.mean(1, keepdims=True)

    def solve(self, k: np.ndarray, lambdas=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0)):
        """(CV score, lambda, kernel-ridge weights ``(S, U)``) at the gene CV's lambda."""
        ns = self.ns
        cv = loo_scores(k[:ns, :ns], self.ftr[self.rows], self.ytr[self.rows], list(lambdas), 400)
        lam, score = max(cv, key=lambda t: t[1])
        a = np.linalg.solve(k[:ns, :ns] + lam * np.eye(ns), k[ns:, :ns].T)
        return score, lam, a

    def test(self, a: np.ndarray, train_dep=None, test_dep=None) -> tuple[float, float]:
        """Unseen PCC@M with no departure factor and with gene-kernel's (8, 3.2)."""
        dep_tr = (self.ftr - self.mtr) @ a if train_dep is None else train_dep
        dep_te = (self.fte - self.mte) @ a if test_dep is None else test_dep
        fac = departure_factor(dep_tr.var(0), self.mtr.var(), 8.0, 3.2)
        return mean_pcc(self.yte, self.mte + dep_te), mean_pcc(self.yte, self.mte + fac * dep_te)

    def report(self, name: str, k: np.ndarray) -> None:
        cv, lam, a = self.solve(k)
        t1, t8 = self.test(a)
        print(f"  {name:34s} CV {cv:.4f}  lambda {lam:5.1f}  test {t1:.4f}  at (8, 3.2) {t8:.4f}")


def set_cosine(genes: list[str], sets: dict[int, set], ids: list[int | None]) -> np.ndarray:
    """Cosine of IDF-weighted term indicators (IDF over these genes)."""
    rows = [sets.get(i, set()) if i is not None else set() for i in ids]
    df: dict = defaultdict(int)
    for r in rows:
        for t in r:
            df[t] += 1
    n = max(sum(1 for r in rows if r), 1)
    vocab = {t: j for j, t in enumerate(df)}
    x = np.zeros((len(genes), len(vocab)))
    for i, r in enumerate(rows):
        for t in r:
            x[i, vocab[t]] = math.log(n / df[t])
    xu = unit(x)
    return xu @ xu.T


def org_kernels(org: Path, genes: list[str]) -> dict[str, np.ndarray]:
    db = sqlite3.connect(org)
    sym2id = {s: i for i, s in db.execute("select _id, symbol from gene_info")}
    ids = [sym2id.get(resolve_symbol(g) or g) for g in genes]

    def sets(table: str, col: str) -> dict[int, set]:
        out: dict[int, set] = defaultdict(set)
        for i, t in db.execute(f"select _id, {col} from {table}"):
            out[i].add(t)
        return out

    go_all = (
        sum(set_cosine(genes, sets(f"go_{o}_all", "go_id"), ids) for o in ("bp", "mf", "cc")) / 3
    )
    pos: dict[int, tuple[str, int]] = {}
    for i, ch, start in db.execute("select _id, seqname, start_location from chromosome_locations"):
        if i not in pos and "_" not in ch:
            pos[i] = (ch, abs(start))
    bp = np.zeros((len(genes),) * 2)
    by_chrom: dict[str, list[int]] = defaultdict(list)
    for j, i in enumerate(ids):
        if i in pos:
            by_chrom[pos[i][0]].append(j)
    for js in by_chrom.values():
        x = np.array([pos[ids[j]][1] for j in js], float)
        bp[np.ix_(js, js)] = np.exp(-np.abs(x[:, None] - x[None, :]) / 1e6)
    return {
        "+ 0.5 KEGG": 0.5 * set_cosine(genes, sets("kegg", "path_id"), ids),
        "+ 0.5 GO with ancestors": 0.5 * go_all,
        "+ 0.5 PROSITE": 0.5 * set_cosine(genes, sets("prosite", "prosite_id"), ids),
        "+ 0.5 genomic distance (1 Mb)": 0.5 * bp,
    }


def main() -> None:
    ap = split_parser(__doc__)
    ap.add_argument("--org", type=Path, default=None, help="org.Hs.eg.sqlite (optional)")
    args = ap.parse_args()
    sp = Split(args.train, args.test, args.data)
    print(
        f"{args.train} -> {args.test}: depth {mean_pcc(sp.yte, np.repeat(sp.mte, sp.yte.shape[1], 1)):.4f}"
    )
    sp.report("text + 0.5 locus (gene-kernel)", sp.base)
    if args.org:
        for name, k in org_kernels(args.org, sp.genes).items():
            sp.report(name, sp.base + k)

    # co-expression in the other patients' count tables (no section of patient C)
    ref = split_reference(args.train.split(","), args.test, args.data)
    pos = {g: i for i, g in enumerate(ref.genes)}
    x = np.zeros((ref.n_obs, len(sp.genes)))
    have = [j for j, g in enumerate(sp.genes) if g in pos]
    x[:, have] = ref.X[:, [pos[sp.genes[j]] for j in have]].toarray()
    x -= x.mean(0)
    x /= np.maximum(np.linalg.norm(x, axis=0), 1e-12)
    exact = x.T @ x
    for w in (1.0, 2.0, 4.0):
        sp.report(f"+ {w:g} co-expression (exact)", sp.base + w * exact)
    v = coexpression_vectors(ref, sp.genes[: sp.ns]).lookup(sp.genes)
    for w in (2.0, 16.0):
        sp.report(f"+ {w:g} co-expression (64 axes)", sp.base + w * (v @ v.T))
    sp.report("co-expression alone (exact)", exact)

    # the departure as the fits' loading on the common pattern plus a residual map
    _, _, a = sp.solve(sp.base)
    mc = sp.mtr - sp.mtr.mean()
    beta = (mc * (sp.ftr - sp.ftr.mean(0))).sum(0) / (mc**2).sum()
    alpha = sp.ftr.mean(0) - beta * sp.mtr.mean()
    res_tr = (sp.ftr - alpha - sp.mtr * beta) @ a
    res_te = (sp.fte - alpha - sp.mte * beta) @ a
    t1, t8 = sp.test(a, res_tr, res_te)
    print(f"  {'residual departure only':34s} {'':29s}test {t1:.4f}  at (8, 3.2) {t8:.4f}")


if __name__ == "__main__":
    main()
