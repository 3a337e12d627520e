"""Exploration: does a learned metric on the gene vectors carry more than gene-kernel's cosine?

Usage::

    python scripts/explore_gene_metric.py C3,C4,C5 C6 [--data DIR] [--rank 16]

On one inner split (its training sections and a held-out section, all inside one outer fold's
training sections) it takes gene-kernel's seen-gene ridge fits (``explore_gene_kernels``'
arrays) and gene-kernel's kernel ``exp(gamma (cos - 1)) + w L`` at the gene CV's choice; then
learns a linear map ``P = diag(exp(d)) + A B^T`` of the pooled gene vectors, so that the
kernel reads ``cos(P t_a, P t_b)``, by gradient ascent on the gene CV's own criterion (the
exact leave-one-gene-out PCC of the 400 most expressed seen genes at 600 training spots),
with ``P`` pulled toward the identity. It prints, at the CV's departure factor 1 and at
gene-kernel's default factor, the held-out section's PCC@M of the unseen genes before and
after. An exploration: the nested CV and the benchmark decide.
"""

from __future__ import annotations

import numpy as np
import torch
from explore_gene_kernels import load_arrays, mean_pcc, split_parser, unit

from geneshot.genes import locus_kernel
from geneshot.models._gene_cv import GAMMAS, LAMBDAS, LOCUS_WEIGHTS, departure_factor, gene_cv


def loo_departures(k: torch.Tensor, lam: float, fc: torch.Tensor, top: int) -> torch.Tensor:
    """``(n, top)`` leave-one-gene-out departures of the first ``top`` genes (kernel ridge identity)."""
    minv = torch.linalg.inv(k + lam * torch.eye(len(k), dtype=k.dtype))
    h = torch.eye(len(k), dtype=k.dtype)[:top] - lam * minv[:top]  # rows of K (K + lam I)^-1
    hd = torch.diagonal(h[:, :top])
    return (fc @ h.T - hd * fc[:, :top]) / (1.0 - hd).clamp_min(1e-9)


def main() -> None:
    ap = split_parser(__doc__)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--reg", type=float, default=1.0, help="weight of ||P - I||^2 / D")
    ap.add_argument("--scale", type=float, default=5.0)
    ap.add_argument("--shrink", type=float, default=0.8)
    args = ap.parse_args()
    train = args.train.split(",")
    d = load_arrays(train, args.test, args.data)
    ftr, ytr, fte, yte = (d[k].astype(np.float64) for k in ("Ftr", "Ytr", "Fte", "Yte"))
    seen, unseen = list(d["seen"]), list(d["unseen"])
    ns, top = len(seen), 400
    t = unit(np.vstack([d["ps"], d["pu"]]))
    loc = locus_kernel(seen + unseen, seen + unseen)
    rows = np.sort(np.random.default_rng(0).permutation(len(ftr))[:600])
    f = ftr[rows]
    m = f.mean(1, keepdims=True)
    best = max(
        gene_cv(
            t[:ns],
            loc[:ns, :ns],
            f,
            ytr[rows],
            gammas=GAMMAS,
            lambdas=LAMBDAS,
            weights=LOCUS_WEIGHTS,
            top=top,
        ),
        key=lambda r: r["score"],
    )
    gamma, lam, w = best["gamma"], best["lambda"], best["locus"]
    print(f"gene CV: gamma {gamma:g}, lambda {lam:.3g}, locus {w:g}, score {best['score']:.4f}")

    tt, lt = torch.from_numpy(t).double(), torch.from_numpy(loc).double()
    fc = torch.from_numpy(f - m)
    ytop = ytr[rows][:, :top]
    yc = torch.from_numpy((ytop - ytop.mean(0)) / np.maximum(ytop.std(0), 1e-12))
    mt = torch.from_numpy(m)
    D = t.shape[1]
    logd = torch.zeros(D, dtype=torch.float64, requires_grad=True)
    a = (
        0.01
        * torch.randn(D, args.rank, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ).requires_grad_()
    b = torch.zeros(D, args.rank, dtype=torch.float64, requires_grad=True)

    def kernel(idx_a, idx_b):
        p = torch.diag(logd.exp()) + a @ b.T
        za = torch.nn.functional.normalize(tt[idx_a] @ p, dim=1)
        zb = torch.nn.functional.normalize(tt[idx_b] @ p, dim=1)
        c = za @ zb.T
        k = c if gamma == 0 else torch.exp(gamma * (c - 1.0))
        return k + w * lt[idx_a][:, idx_b]

    s_idx, u_idx = np.arange(ns), np.arange(ns, ns + len(unseen))

    def objective():
        p = mt + loo_departures(kernel(s_idx, s_idx), lam, fc, top)  # common pattern + departure
        p = p - p.mean(0)
        r = (p * yc).sum(0) / (p.norm(dim=0) * yc.norm(dim=0)).clamp_min(1e-12)
        return r.mean()

    def test_scores():
        with torch.no_grad():
            kss, kus = kernel(s_idx, s_idx).numpy(), kernel(u_idx, s_idx).numpy()
        amat = np.linalg.solve(kss + lam * np.eye(ns), kus.T).T  # (U, S)
        out = {}
        mte = fte.mean(1, keepdims=True)
        dep_te = (fte - mte) @ amat.T
        dep_tr = (ftr - ftr.mean(1, keepdims=True)) @ amat.T
        for c, r0 in ((1.0, 0.0), (args.scale, args.shrink)):
            fac = departure_factor(dep_tr.var(0), ftr.mean(1).var(), c, r0)
            out[(c, r0)] = mean_pcc(yte, mte + fac * dep_te)
        return out

    before = test_scores()
    opt = torch.optim.Adam([logd, a, b], lr=args.lr)
    for step in range(args.steps + 1):
        opt.zero_grad()
        p = torch.diag(logd.exp()) + a @ b.T
        reg = args.reg * ((p - torch.eye(D, dtype=p.dtype)) ** 2).sum() / D
        score = objective()
        if step % 25 == 0:
            print(f"step {step}: LOO {score.item():.4f}  reg {reg.item():.4f}", flush=True)
        if step == args.steps:
            break
        (-(score - reg)).backward()
        opt.step()
    after = test_scores()
    print("depth", round(mean_pcc(yte, np.repeat(fte.mean(1, keepdims=True), yte.shape[1], 1)), 4))
    for key in before:
        print(
            f"factor {key}: test PCC@M cosine {before[key]:.4f} -> learned metric {after[key]:.4f}"
        )


if __name__ == "__main__":
    main()
