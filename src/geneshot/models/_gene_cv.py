"""Kernel ridge in gene space, and its exact leave-one-gene-out CV over the seen genes.

One rule for both models that carry the seen genes' image fits to other genes:
``gene-kernel`` (closed form) chooses its kernel and penalty by :func:`gene_cv`, and
ALIGN-ST's kernel head starts from the kernel and penalty :func:`gene_cv` chooses on its own
initial fits, then learns from there.

The kernel between genes is ``exp(gamma (cos - 1))`` of their pooled vectors (``gamma = 0``:
the plain cosine) plus ``w`` times their locus kernel (:func:`geneshot.genes.locus_kernel`),
plus, with an expression reference, ``w_ref`` times their co-expression there
(:func:`geneshot.genes.coexpression_vectors`).

Both predict a gene as ``m + c * k(g, S) (K + lambda I)^-1 (F - m)``: the common pattern plus
its departure, times the *departure scale* ``c``. The gene CV
chooses the kernel and ``lambda`` on the seen genes, whose maps are mostly the common pattern
(for them ``c = 1`` is best); the genes a zero-shot model is asked for, the most expressed, have
maps that depart from it more, so ``c`` is chosen by nested CV over sections instead
(``scripts/choose_features.py --what departure-scale``; BENCHMARKS.md, session 9). With a
*departure shrink* ``r0 > 0`` the factor is per gene, ``c r / (r + r0)``, ``r`` the spread of
the gene's departure over the training spots against the common pattern's
(:func:`departure_factor`): a gene whose knowledge moves it little from the common pattern
keeps little of that move, and a gene it moves far keeps nearly ``c`` times it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# the CV grids: ridge strength in gene space, kernel sharpness (0 = plain cosine), and the
# weight of the locus kernel added to the text kernel (0 = text only)
LAMBDAS = [float(a) for a in np.logspace(-3, 2, 11)]
GAMMAS = [0.0, 5.0, 10.0, 20.0]
LOCUS_WEIGHTS = [0.0, 0.5, 1.0]
# ... and of the co-expression kernel from an expression reference (gene-kernel+ref; 0 = the
# reference is not used, so a reference that says nothing about this tissue can be ignored)
REFERENCE_WEIGHTS = [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
# the seen genes' maps the CV reads: their fits at the spots they were fitted on, or each
# training section predicted by fits on the others (what a model meets on a new section)
CV_FITS = ("in-sample", "out-of-section")
# the common pattern m at prediction: the mean of the seen genes' fits, or its own ridge of the
# spots' mean target with the penalty by GCV (the depth control's rule); a gene whose
# knowledge says little is predicted at m, so the better m lifts every such gene
COMMON_FITS = ("mean", "gcv")
# the departure scales and shrinks the nested CV scores (prediction only: one training
# serves them all)
# (session 10 added 5, 6 and 1.6, session 11 8 and 3.2: the picks lay on the grid's edge)
DEPARTURE_SCALES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
DEPARTURE_SHRINKS = (0.0, 0.2, 0.4, 0.8, 1.6, 3.2)


def departure_factor(dep_var, common_var, scale: float, shrink: float):
    """The factor on each gene's departure: ``scale * r / (r + shrink)`` (``scale`` if ``shrink`` is 0).

    ``dep_var`` ``(G,)``: the variance of each gene's departure over the training spots;
    ``common_var``: the common pattern's there; ``r = sqrt(dep_var / common_var)``. NumPy
    arrays or torch tensors alike.
    """
    if shrink <= 0:
        return scale
    r = (dep_var / (common_var + 1e-12)) ** 0.5
    return scale * r / (r + shrink)


def out_of_section_fits(
    section: np.ndarray,
    rows: np.ndarray,
    n_genes: int,
    fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """The seen genes' maps ``(len(rows), n_genes)`` at ``rows``, each section's from the others.

    ``section`` ``(N,)`` the section of every training spot; ``fit_predict(train, at)`` fits
    on the spots ``train`` (bool mask) and returns the maps at the spot indices ``at``.
    """
    out = np.empty((len(rows), n_genes))
    for i in np.unique(section[rows]):
        held = section[rows] == i
        out[held] = fit_predict(section != i, rows[held])
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def text_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """``cos`` (``gamma == 0``) or ``exp(gamma * (cos - 1))`` between unit rows of ``a`` and ``b``."""
    c = a @ b.T
    return c if gamma == 0 else np.exp(gamma * (c - 1.0))


def gene_cv(
    vectors: np.ndarray,
    locus: np.ndarray,
    fits: np.ndarray,
    targets: np.ndarray,
    *,
    gammas: list[float],
    lambdas: list[float],
    weights: list[float],
    top: int = 0,
    coexp: np.ndarray | None = None,
    coexp_weights: list[float] | None = None,
    per_gene: bool = False,
) -> list[dict]:
    """Leave-one-gene-out score of every (gamma, locus weight, reference weight, lambda), closed form.

    Parameters
    ----------
    vectors
        ``(S, D)`` unit pooled vectors of the seen genes.
    locus
        ``(S, S)`` their locus kernel (zeros when unknown).
    fits
        ``(n, S)`` the seen genes' fitted maps at ``n`` training spots.
    targets
        ``(n, S)`` their targets at the same spots.
    top
        Score only the first ``top`` genes (callers order genes by training mean, so these are
        the most expressed, like the unseen test genes); all genes still serve as neighbours.
        ``0``: every gene.
    coexp, coexp_weights
        ``(S, S)`` the seen genes' co-expression kernel in a reference, and the weights of it
        to try (default: none, weight 0).
    per_gene
        Also keep each scored gene's PCC ``(top,)`` in ``per_gene`` (for :func:`clear_gain`).

    Returns
    -------
    One dict per grid point: ``gamma``, ``locus``, ``reference``, ``lambda`` and ``score``,
    the mean PCC across the spots of each left-out gene's prediction ``m + k(g, S\\g)
    (K + lambda I)^-1 (F - m)`` with its target (``m`` each spot's mean fit, the common
    pattern).
    """
    out = []
    grid = [(g, w, r) for g in gammas for w in weights for r in (coexp_weights or [0.0])]
    for gamma, weight, ref_weight in grid:
        kernel = text_kernel(vectors, vectors, gamma) + weight * locus
        if ref_weight:
            kernel = kernel + ref_weight * coexp
        for lam, r in loo_gene_scores(kernel, fits, targets, lambdas, top):
            row = {
                "gamma": float(gamma),
                "locus": float(weight),
                "reference": float(ref_weight),
                "lambda": float(lam),
                "score": float(r.mean()),
            }
            out.append({**row, "per_gene": r} if per_gene else row)
    return out


def loo_scores(
    kernel: np.ndarray, fits: np.ndarray, targets: np.ndarray, lambdas: list[float], top: int = 0
) -> list[tuple[float, float]]:
    """``(lambda, score)`` of the exact leave-one-gene-out CV of one gene kernel, per lambda.

    ``kernel`` ``(S, S)`` between the seen genes; ``fits``, ``targets`` and ``top`` as in
    :func:`gene_cv`, which scores its grid through here (as do the exploration scripts, for
    kernels outside the grid). One eigendecomposition serves every lambda.
    """
    return [
        (lam, float(r.mean())) for lam, r in loo_gene_scores(kernel, fits, targets, lambdas, top)
    ]


def loo_gene_scores(
    kernel: np.ndarray, fits: np.ndarray, targets: np.ndarray, lambdas: list[float], top: int = 0
) -> list[tuple[float, np.ndarray]]:
    """As :func:`loo_scores`, with each scored gene's PCC ``(top,)`` instead of their mean."""
    top = top or fits.shape[1]
    m = fits.mean(1, keepdims=True)
    fc = fits - m
    yc = targets[:, :top] - targets[:, :top].mean(0)
    yn = np.linalg.norm(yc, axis=0)
    evals, evecs = np.linalg.eigh(kernel)
    proj = evecs.T @ fc.T  # (S, n)
    out = []
    for lam in lambdas:
        shrink = evals / (evals + lam)
        hat_diag = (evecs[:top] ** 2) @ shrink
        fitted = (evecs[:top] @ (shrink[:, None] * proj)).T  # (n, top)
        # exact leave-one-gene-out prediction of each gene's map (kernel ridge identity)
        loo = (fitted - hat_diag * fc[:, :top]) / np.maximum(1.0 - hat_diag, 1e-9)
        p = m + loo
        pc = p - p.mean(0)
        den = np.linalg.norm(pc, axis=0) * yn
        r = np.where(den > 0, (pc * yc).sum(0) / np.where(den > 0, den, 1.0), 0.0)
        out.append((float(lam), r))
    return out


def clear_gain(with_term: np.ndarray, without: np.ndarray, n_se: float = 1.0) -> dict:
    """Whether an added kernel term's gain on the gene CV exceeds its noise.

    ``with_term``, ``without``: each scored gene's leave-one-gene-out PCC ``(G,)`` at the best
    grid point with and without the term. The gain is kept only if its mean over the genes
    exceeds ``n_se`` standard errors of that mean: a term chosen on a gain the genes do not
    agree on (a reference whose labels say nothing of this tissue moved the criterion by
    0.001, BENCHMARKS.md session 13) is left out, so the model stays where the weaker
    evidence (text and locus) puts it.

    Returns ``gain`` (mean), ``se`` and ``keep``.
    """
    d = np.asarray(with_term, np.float64) - np.asarray(without, np.float64)
    gain = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
    return {"gain": gain, "se": se, "keep": bool(gain > n_se * se)}
