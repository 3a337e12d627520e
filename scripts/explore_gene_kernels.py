"""Exploration: which gene kernels carry gene-kernel's zero-shot maps on one inner split.

Usage::

    python scripts/explore_gene_kernels.py C3,C4,C5 C6 [--data DIR]

Fits ``gene-kernel`` (the default features, fine-tuned) on the training sections and keeps
the seen genes' ridge fits; then re-solves the kernel ridge in gene space with other gene
kernels: the text kernel (go-tokens pooled cosine) alone; plus the IDF-weighted
annotation-set cosine; plus the locus kernel (shared chromosome arm / region / band) at
several weights and level sets; the locus kernel inside the cosine. For each it prints the
in-sample leave-one-gene-out CV score (what gene-kernel chooses by; lambda chosen by it) and
the per-section PCC@M of the unseen genes on the test section. The split must lie inside one
outer fold's training sections (an inner split): it informs what to build; the nested CV
and the benchmark decide. Arrays are kept in the system temp folder for reruns.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from geneshot.encoders.gene import gene_terms
from geneshot.genes import load_knowledge, resolve_symbol
from geneshot.models._gene_cv import loo_scores

FEATURES = {
    "image_encoder": "effnet-lite1",
    "nuclei": True,
    "text_encoder": "minilm",
    "fov_um": (224.0, 448.0),
    "context_um": (300.0, 500.0),
}


def fit_arrays(train: list[str], test: str, data: Path) -> dict[str, np.ndarray]:
    """Seen-gene ridge fits on the training and test spots, targets and gene vectors."""
    from geneshot.cache import Cache
    from geneshot.data import TargetTransform
    from geneshot.models._estimators import _features
    from geneshot.prepare import FeatureConfig
    from geneshot.workflow import load_sections, split_and_describe, train_model

    cfg, cache = FeatureConfig(**FEATURES), Cache()
    secs = {s.name: s for s in load_sections("her2st", data, [*train, test], cfg, cache=cache, progress=False)}
    tr = [secs[s] for s in train]
    split, genes = split_and_describe(tr, cfg, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in tr], "libsize")
    gm = train_model("gene-kernel", "zero-shot", tr, genes, split, target, cfg, progress=False, cache=cache)
    est = gm.module

    def fits(s):
        return est.ridge_.predict(est.pca_.transform(_features(gm._slide(gm._adapt(s)), False)))

    return {
        "Ftr": np.vstack([fits(s) for s in tr]),
        "Ytr": np.vstack([target.transform(s.adata, list(split.seen)) for s in tr]),
        "Fte": fits(secs[test]),
        "Yte": target.transform(secs[test].adata, list(split.unseen)),
        "ps": gm._genes(genes, list(split.seen)).pooled.numpy(),
        "pu": gm._genes(genes, list(split.unseen)).pooled.numpy(),
        "seen": np.array(split.seen),
        "unseen": np.array(split.unseen),
    }


def load_arrays(train: list[str], test: str, data: Path):
    """:func:`fit_arrays` of this split, kept in the system temp folder for reruns."""
    npz = Path(tempfile.gettempdir()) / f"geneshot_explore_{'-'.join(train)}_{test}.npz"
    if not npz.exists():
        np.savez(npz, **fit_arrays(train, test, data))
    return np.load(npz)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mean_pcc(y: np.ndarray, p: np.ndarray) -> float:
    yc, pc = y - y.mean(0), p - p.mean(0)
    den = np.linalg.norm(yc, axis=0) * np.linalg.norm(pc, axis=0)
    ok = den > 1e-12
    return float(((yc * pc).sum(0)[ok] / den[ok]).mean())


def set_kernel(genes: list[str]) -> np.ndarray:
    """Cosine of IDF-weighted annotation-term indicators (GO, Pfam, cytoband)."""
    terms = [dict(gene_terms(g)) for g in genes]
    vocab = {t: i for i, t in enumerate(sorted({t for ts in terms for t in ts if not t.startswith("name:")}))}
    x = np.zeros((len(genes), len(vocab)))
    for i, ts in enumerate(terms):
        for t, w in ts.items():
            if t in vocab:
                x[i, vocab[t]] = w
    xu = unit(x)
    return xu @ xu.T


def band_prefixes(genes: list[str]) -> list[tuple[str, ...]]:
    """Chromosome, arm, region, band, sub-band prefixes of each gene's first cytoband."""
    kb = load_knowledge()
    out = []
    for g in genes:
        canon = resolve_symbol(g)
        band = kb.loc[canon, "cytoband"] if canon is not None else ""
        band = band.split("|")[0].split("-")[0].strip() if isinstance(band, str) else ""
        m = re.match(r"^(\d+|X|Y)([pq])?(\d)?(\d)?(?:\.(\d+))?", band)
        parts: list[str] = []
        if m:
            parts = [m.group(1)]
            for p in m.groups()[1:]:
                if p is None:
                    break
                parts.append(parts[-1] + p)
        out.append(tuple(parts))
    return out


def position_kernel(prefixes: list[tuple[str, ...]], levels: dict[int, float]) -> np.ndarray:
    """Weighted count of shared prefixes at the given levels, normalised to 1 on the diagonal."""
    k = np.zeros((len(prefixes), len(prefixes)))
    for depth, w in levels.items():
        groups = defaultdict(list)
        for i, p in enumerate(prefixes):
            if len(p) > depth:
                groups[p[depth]].append(i)
        for ids in groups.values():
            k[np.ix_(ids, ids)] += w
    np.fill_diagonal(k, k.diagonal().clip(min=1e-9))
    d = np.sqrt(k.diagonal())
    return k / d[:, None] / d[None, :]


def split_reference(train: list[str], test: str, data: Path):
    """The split's expression reference by the benchmark's rule (``expression_reference: auto``):
    every section of the patients in neither ``train`` nor ``test`` (for C sections: A, B, D-H)."""
    from geneshot.benchmark._fold import RunState, fold_reference
    from geneshot.cache import Cache

    cfg = {"dataset": "her2st", "expression_reference": "auto"}
    state = RunState(cfg=cfg, out=Path("."), cache=Cache(), progress=False, data_dir=data)
    return fold_reference(state, list(train), [test])[0]


def split_parser(doc: str) -> argparse.ArgumentParser:
    """The exploration scripts' arguments: an inner split's training sections and test section."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("train", help="training sections, comma-separated (e.g. C3,C4,C5)")
    ap.add_argument("test", help="the held-out section, inside the same outer fold's training sections")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/her2st"))
    return ap


def main() -> None:
    args = split_parser(__doc__).parse_args()
    train = args.train.split(",")
    d = load_arrays(train, args.test, args.data)
    ftr, ytr, fte, yte = d["Ftr"], d["Ytr"], d["Fte"], d["Yte"]
    seen, unseen = list(d["seen"]), list(d["unseen"])
    genes, n_seen = seen + unseen, len(seen)
    pooled = unit(np.vstack([d["ps"], d["pu"]]))
    k_text = pooled @ pooled.T
    k_set = set_kernel(genes)
    prefixes = band_prefixes(genes)
    k_region = position_kernel(prefixes, {1: 0.3, 2: 0.3, 3: 0.4})  # arm, region, band
    rows = np.sort(np.random.default_rng(0).permutation(len(ftr))[:600])

    def sharp(k, gamma):
        return np.exp(gamma * (k - 1)) if gamma else k

    def score(k, lambdas=(0.01, 0.03, 0.1, 0.3, 1, 3, 10)):
        """(CV score, its lambda, test PCC@M at that lambda): the gene CV's exact leave-one-out."""
        kss, kus = k[:n_seen, :n_seen], k[n_seen:, :n_seen]
        lam, cv = max(loo_scores(kss, ftr[rows], ytr[rows], list(lambdas), 400), key=lambda t: t[1])
        mt = fte.mean(1, keepdims=True)
        test = mean_pcc(yte, mt + (fte - mt) @ np.linalg.solve(kss + lam * np.eye(n_seen), kus.T))
        return cv, lam, test

    print("depth", round(mean_pcc(yte, np.repeat(fte.mean(1, keepdims=True), yte.shape[1], 1)), 4))
    text = sharp(k_text, 5)
    candidates = {
        "text (gamma 5)": text,
        "text (gamma 10)": sharp(k_text, 10),
        "annotation set": k_set,
        "text + set": text + k_set,
        "text + 0.25 locus": text + 0.25 * k_region,
        "text + 0.5 locus": text + 0.5 * k_region,
        "text + 1.0 locus": text + 1.0 * k_region,
        "text + 0.5 same arm": text + 0.5 * position_kernel(prefixes, {1: 1.0}),
        "text + 0.5 band only": text + 0.5 * position_kernel(prefixes, {3: 1.0}),
        "text + set + 0.5 locus": text + k_set + 0.5 * k_region,
        "locus alone": k_region,
    }
    for w in (0.25, 0.5):
        candidates[f"locus inside the cosine (w {w}, gamma 5)"] = sharp((k_text + w * k_region) / (1 + w), 5)
    for name, k in candidates.items():
        cv, lam, test = score(k)
        print(f"{name:40s} CV {cv:.4f}  lambda {lam:5.2f}  test {test:.4f}")


if __name__ == "__main__":
    main()
