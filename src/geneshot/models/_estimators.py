"""Closed-form baselines and controls: PCA + ridge on frozen image features."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.linear_model import RidgeCV

from geneshot._memo import fitted_pca
from geneshot.errors import InputError, check_choice, check_positive
from geneshot.genes import (
    N_COEXPRESSION_AXES,
    Reference,
    coexpression_vectors,
    locus_kernel,
    permute_reference,
)
from geneshot.models._base import Estimator
from geneshot.models._gene_cv import (
    COMMON_FITS,
    CV_FITS,
    GAMMAS,
    LAMBDAS,
    LOCUS_WEIGHTS,
    REFERENCE_WEIGHTS,
    clear_gain,
    departure_factor,
    gene_cv,
    out_of_section_fits,
    text_kernel,
    unit_rows,
)
from geneshot.models._inputs import GeneInputs, SlideInputs

if TYPE_CHECKING:
    from sklearn.decomposition import PCA

_ALPHAS = [float(a) for a in np.logspace(-2, 5, 15)]


def _features(slide: SlideInputs, use_nuclei: bool) -> np.ndarray:
    x = slide.image.detach().cpu().numpy().astype(np.float64)
    if use_nuclei and slide.nuclei is not None:
        # Per-channel mean density: a cheap nuclei summary appended to the image features.
        x = np.hstack([x, slide.nuclei.detach().cpu().flatten(2).mean(2).numpy()])
    return x


def _check_targets(
    slides: list[SlideInputs], targets: list[np.ndarray], n_genes: int
) -> np.ndarray:
    if len(slides) != len(targets) or not slides:
        raise InputError(
            None,
            f"got {len(slides)} slides and {len(targets)} target arrays",
            "pass one (N_i, G) target array per training slide",
        )
    for i, (s, y) in enumerate(zip(slides, targets, strict=True)):
        if np.shape(y) != (s.n_spots, n_genes):
            raise InputError(
                None,
                f"targets[{i}] has shape {np.shape(y)}, expected ({s.n_spots}, {n_genes})",
                "pass targets for every spot and every gene in `genes`, in that order",
            )
    return np.vstack([np.asarray(y, dtype=np.float64) for y in targets])


class _PCARidge(Estimator):
    """PCA (fitted on training spots) then ``RidgeCV`` (alpha by efficient leave-one-out / GCV)."""

    def __init__(
        self,
        n_components: int = 256,
        alphas: list[float] | None = None,
        use_nuclei: bool = False,
        **config,
    ) -> None:
        self.config = {
            "n_components": n_components,
            "alphas": alphas or _ALPHAS,
            "use_nuclei": use_nuclei,
            **config,
        }

    def _fit_xy(self, slides: list[SlideInputs], y: np.ndarray) -> None:
        x = np.vstack([_features(s, self.config["use_nuclei"]) for s in slides])
        self.pca_, self.ridge_ = self._pca_ridge(x, y)

    def _pca_ridge(self, x: np.ndarray, y: np.ndarray) -> tuple[PCA, RidgeCV]:
        """PCA of ``x`` and ``RidgeCV`` of ``y`` on its scores (a penalty per target by GCV)."""
        k = int(min(self.config["n_components"], x.shape[0], x.shape[1]))
        pca = fitted_pca(x, k)  # the models of a fold share it
        ridge = RidgeCV(alphas=self.config["alphas"] or _ALPHAS, alpha_per_target=y.ndim == 2)
        return pca, ridge.fit(pca.transform(x), y)

    def _predict_fitted(self, slide: SlideInputs) -> np.ndarray:
        if not hasattr(self, "ridge_"):
            raise InputError(
                None,
                f"{type(self).__name__} is not fitted",
                "call fit(slides, targets, genes) first",
            )
        return self.ridge_.predict(self.pca_.transform(_features(slide, self.config["use_nuclei"])))


class RidgeEstimator(_PCARidge):
    """Supervised PCA + ridge: predicts only the genes it was fit on (matched by text embedding)."""

    def fit(
        self, slides: list[SlideInputs], targets: list[np.ndarray], genes: GeneInputs
    ) -> RidgeEstimator:
        """Fit one ridge per gene in ``genes``."""
        self._fit_xy(slides, _check_targets(slides, targets, genes.n_genes))
        self.pooled_ = genes.pooled.detach().cpu().numpy().astype(np.float64)
        return self

    def _columns(self, genes: GeneInputs) -> np.ndarray:
        """Column of each requested gene in the fit set, found by its pooled text embedding."""
        q = genes.pooled.detach().cpu().numpy().astype(np.float64)
        ref = self.pooled_
        if q.shape == ref.shape and np.allclose(q, ref, atol=1e-6):
            return np.arange(ref.shape[0])
        if q.shape[1] != ref.shape[1]:
            raise InputError(
                None,
                f"GeneInputs.pooled has width {q.shape[1]}, the ridge was fit on width {ref.shape[1]}",
                "use the same text encoder as at fit",
            )
        same = np.all(np.isclose(q[:, None, :], ref[None, :, :], atol=1e-6), axis=2)  # (G, G_fit)
        unseen = np.flatnonzero(~same.any(1))
        if unseen.size:
            raise InputError(
                None,
                f"ridge cannot predict genes it was not fit on: {unseen.size} of {q.shape[0]} requested genes (positions {unseen[:5].tolist()}...) are unseen",
                "ridge is supervised-only; use 'text-knn' or a torch model for zero-shot genes",
            )
        if (same.sum(1) > 1).any():
            raise InputError(
                None,
                "two fitted genes share one text embedding, so a subset cannot be matched",
                "predict with exactly the gene set (and order) used at fit",
            )
        return same.argmax(1)

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """Predictions ``(N, G)`` for fitted genes; raises :class:`InputError` on unseen genes."""
        return self._predict_fitted(slide)[:, self._columns(genes)]


class TextKNNEstimator(_PCARidge):
    """Zero-shot baseline: ridge on seen genes; an unseen gene mixes its ``k`` text-nearest seen genes.

    Weights are ``softmax(cos / temperature)`` over the ``k`` most cosine-similar seen genes
    (``pooled`` embeddings).
    """

    def __init__(self, k: int = 10, temperature: float = 0.1, **config) -> None:
        super().__init__(**config)
        self.config.update(k=k, temperature=temperature)

    def fit(
        self, slides: list[SlideInputs], targets: list[np.ndarray], genes: GeneInputs
    ) -> TextKNNEstimator:
        """Fit ridge for the seen ``genes`` and store their pooled embeddings."""
        self._fit_xy(slides, _check_targets(slides, targets, genes.n_genes))
        p = genes.pooled.detach().cpu().numpy().astype(np.float64)
        self.pooled_ = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
        return self

    def mixing(self, genes: GeneInputs) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour indices ``(G, k)`` into the seen genes and their weights ``(G, k)``."""
        q = genes.pooled.detach().cpu().numpy().astype(np.float64)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        sim = q @ self.pooled_.T
        k = min(int(self.config["k"]), sim.shape[1])
        idx = np.argsort(-sim, axis=1)[:, :k]
        s = np.take_along_axis(sim, idx, 1) / self.config["temperature"]
        w = np.exp(s - s.max(1, keepdims=True))
        return idx, w / w.sum(1, keepdims=True)

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """Predictions ``(N, G)`` for any genes, seen or not."""
        seen = self._predict_fitted(slide)
        idx, w = self.mixing(genes)
        return np.einsum("ngk,gk->ng", seen[:, idx], w)


class DepthEstimator(_PCARidge):
    """Zero-shot control: predicts each spot's mean target over the seen genes for every gene."""

    def fit(
        self, slides: list[SlideInputs], targets: list[np.ndarray], genes: GeneInputs
    ) -> DepthEstimator:
        """Fit ridge from image features to the per-spot mean over ``genes``."""
        self._fit_xy(slides, _check_targets(slides, targets, genes.n_genes).mean(1))
        return self

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """The same per-spot value for every gene, ``(N, G)``."""
        return np.repeat(self._predict_fitted(slide)[:, None], genes.n_genes, axis=1)


class GeneKernelEstimator(_PCARidge):
    """Zero-shot: ridge fits of the seen genes, carried to other genes by kernel ridge in gene space.

    With ``F_S`` the seen genes' ridge predictions at the spots of a slide and ``m`` their mean
    over genes (each spot's common pattern, what the ``depth`` control predicts), a gene ``u``
    gets ``m + k(u, S) (K_SS + lambda I)^-1 (F_S - m)``, ``K`` a cosine kernel of the genes'
    pooled text embeddings (``gamma > 0``: ``exp(gamma (cos - 1))``, sharper) plus ``w`` times
    their locus kernel (:func:`geneshot.genes.locus_kernel`: same chromosome arm, region,
    band; read from ``GeneInputs.symbols``, so it needs them). A gene whose knowledge is unlike
    every seen gene's falls back to the common pattern; a large ``lambda`` does the same for
    all genes. ``lambda``, ``gamma`` and ``w`` are chosen by exact leave-one-gene-out CV over
    the SEEN genes inside training (mean PCC across training spots of each left-out gene's
    prediction with its target), so no unseen gene is ever looked at. ``text-knn`` is the
    special case of a hard k-nearest text kernel without CV.

    Parameters
    ----------
    lambdas, gammas, locus_weights
        Grids searched by the gene CV (``None``: defaults; ``locus_weights=[0.0]``: text only).
    cv_spots
        Training spots (a fixed random subset) the CV scores on, bounding its cost.
    cv_top
        The CV scores the first ``cv_top`` seen genes (callers order them by training mean,
        so these are the most expressed, like the unseen test genes); all genes still serve
        as neighbours. ``0``: score every seen gene.
    cv_fits
        The seen genes' maps the CV reads: ``"in-sample"`` (their fits at the training spots
        they were fitted on) or ``"out-of-section"`` (each training section's spots predicted
        by fits on the other training sections, as a new section will be; with one training
        section, in-sample).
    departure_scale
        ``c`` in ``m + c * k(u, S) (K_SS + lambda I)^-1 (F_S - m)``, applied at prediction
        (see :mod:`geneshot.models._gene_cv`; 1 = the kernel ridge as the gene CV fitted it).
    departure_shrink
        ``r0``: with ``r0 > 0`` the factor is ``c r / (r + r0)`` per gene, ``r`` the spread of
        its departure over the training spots against the common pattern's.
    use_reference
        Add the genes' co-expression in an expression reference to the kernel
        (:func:`geneshot.genes.coexpression_vectors` on ``coexp_axes`` axes of the seen
        genes; model ``gene-kernel+ref``): ``fit`` then needs ``reference``, and its weight
        is chosen by the gene CV from ``reference_weights`` (0 included: a reference that
        says nothing about the tissue is left out). The weight is kept only if its gain on
        the gene CV exceeds ``reference_min_gain_se`` standard errors over the scored genes
        (:func:`~geneshot.models._gene_cv.clear_gain`; 0: any gain). A gene that is not a seen gene and that
        the reference measured takes its level from the reference (its mean log1p CP10k
        there), not from the kernel over the seen genes' levels, which are lower.
    permute_reference, permute_seed
        The control ``permuted-reference``: fit on the reference with its gene labels
        shuffled among genes of a similar level (:func:`geneshot.genes.permute_reference`).
    common_fit
        The common pattern ``m`` at prediction: ``"mean"``, the mean of the seen genes' fits
        (each at its own GCV penalty), or ``"gcv"``, its own ridge of the spots' mean target
        with the penalty by GCV (the depth control's map; ALIGN-ST's ``common_fit``). The
        departure ``F - mean(F)`` and its factor's spread against the fits' mean are the
        same either way. Nested CV kept ``"mean"`` (BENCHMARKS.md, session 18).
    """

    def __init__(
        self,
        lambdas: list[float] | None = None,
        gammas: list[float] | None = None,
        locus_weights: list[float] | None = None,
        cv_spots: int = 600,
        cv_top: int = 400,
        cv_fits: str = "in-sample",
        departure_scale: float = 1.0,
        departure_shrink: float = 0.0,
        use_reference: bool = False,
        reference_weights: list[float] | None = None,
        coexp_axes: int = N_COEXPRESSION_AXES,
        permute_reference: bool = False,
        permute_seed: int = 0,
        reference_min_gain_se: float = 1.0,
        common_fit: str = "mean",
        **config,
    ) -> None:
        super().__init__(**config)
        check_choice("cv_fits", cv_fits, CV_FITS)
        check_choice("gene-kernel common_fit", common_fit, COMMON_FITS)
        departure_scale = check_positive("departure_scale", departure_scale)
        departure_shrink = check_positive("departure_shrink", departure_shrink, allow_zero=True)
        # None = the default grid, resolved at fit (create_model stores the raw config)
        self.config.update(
            lambdas=lambdas,
            gammas=gammas,
            locus_weights=locus_weights,
            cv_spots=cv_spots,
            cv_top=cv_top,
            cv_fits=cv_fits,
            departure_scale=departure_scale,
            departure_shrink=departure_shrink,
            use_reference=bool(use_reference),
            reference_weights=reference_weights,
            coexp_axes=int(coexp_axes),
            permute_reference=bool(permute_reference),
            permute_seed=int(permute_seed),
            reference_min_gain_se=check_positive(
                "reference_min_gain_se", reference_min_gain_se, allow_zero=True
            ),
            common_fit=common_fit,
        )

    def fit(
        self,
        slides: list[SlideInputs],
        targets: list[np.ndarray],
        genes: GeneInputs,
        reference: Reference | None = None,
    ) -> GeneKernelEstimator:
        """Fit ridge for the seen ``genes``, then choose the kernel and ``lambda`` by gene CV.

        ``reference`` (with ``use_reference``): the expression reference whose co-expression
        joins the kernel; other configs ignore it.
        """
        y = _check_targets(slides, targets, genes.n_genes)
        self.vectors_ = unit_rows(genes.pooled.detach().cpu().numpy().astype(np.float64))
        self.symbols_ = None if genes.symbols is None else list(genes.symbols)
        coexp = self._fit_reference(reference)
        self._fit_xy(slides, y)
        # the seen genes' locus kernel, once (zero without symbols: the text kernel alone)
        locus = (
            np.zeros((genes.n_genes, genes.n_genes))
            if self.symbols_ is None
            else locus_kernel(self.symbols_, self.symbols_)
        )
        parts = [_features(s, self.config["use_nuclei"]) for s in slides]
        x = np.vstack(parts)
        rng = np.random.default_rng(0)
        rows = np.sort(rng.permutation(len(x))[: int(self.config.get("cv_spots") or 600)])
        # (n, S) the seen genes' maps at the CV spots
        if self.config.get("cv_fits", "in-sample") == "out-of-section" and len(parts) > 1:
            section = np.repeat(np.arange(len(parts)), [len(p) for p in parts])

            def fit_predict(train: np.ndarray, at: np.ndarray) -> np.ndarray:
                pca, ridge = self._pca_ridge(x[train], y[train])
                return ridge.predict(pca.transform(x[at]))

            f = out_of_section_fits(section, rows, y.shape[1], fit_predict)
        else:
            f = self.ridge_.predict(self.pca_.transform(x[rows]))
        self.cv_ = self._cv(f, y[rows], locus, coexp)
        self.cv_best_ = best = self._choose(self.cv_, coexp is not None)
        self.lambda_, self.gamma_, self.locus_weight_ = best["lambda"], best["gamma"], best["locus"]
        self.reference_weight_ = best["reference"]
        k = self._kernel(self.vectors_, self.symbols_, locus, coexp)
        inv = np.linalg.inv(k + self.lambda_ * np.eye(len(k)))
        # the fits are linear in the PCA scores z: F = z B^T + c, so the gene-space solve is
        # folded into the coefficients once: (K + lambda I)^-1 (F - m) = z G^T + g0
        coef, icpt = np.atleast_2d(self.ridge_.coef_), np.atleast_1d(self.ridge_.intercept_)
        self.mean_coef_, self.mean_icpt_ = coef.mean(0), float(icpt.mean())
        self.solved_coef_ = inv @ (coef - self.mean_coef_)
        self.solved_icpt_ = inv @ (icpt - self.mean_icpt_)
        self.common_coef_, self.common_icpt_ = self.mean_coef_, self.mean_icpt_
        if self.config.get("common_fit", "mean") == "gcv":
            common = RidgeCV(alphas=_ALPHAS).fit(self.pca_.transform(x), y.mean(1))
            self.common_coef_, self.common_icpt_ = common.coef_, float(common.intercept_)
        return self

    def chosen(self) -> dict:
        """What the gene CV chose (the grid point and its score), for run records.

        ``cv_score_without_reference``: the best score at reference weight 0, so a record
        shows what the reference added to the criterion (``gene-kernel+ref`` only).
        """
        best = self.cv_best_
        out = {
            "lambda": float(self.lambda_),
            "gamma": float(self.gamma_),
            "locus_weight": float(self.locus_weight_),
            "reference_weight": float(self.reference_weight_),
            "cv_score": float(best["score"]),
        }
        if self.config.get("use_reference"):
            without = [r["score"] for r in self.cv_ if r["reference"] == 0.0]
            out["cv_score_without_reference"] = float(max(without))
            gain = self.reference_gain_
            out["reference_gain"], out["reference_gain_se"] = gain["gain"], gain["se"]
        return out

    def _fit_reference(self, reference: Reference | None) -> np.ndarray | None:
        """With ``use_reference``: keep the co-expression vectors; the seen genes' kernel ``(S, S)``."""
        if not self.config.get("use_reference"):
            return None
        if reference is None:
            raise InputError(
                None,
                "gene-kernel+ref needs an expression reference",
                "pass --reference REF.h5ad (raw counts of other samples of the tissue)",
            )
        if self.symbols_ is None:
            raise InputError(
                None,
                "gene-kernel+ref reads gene symbols to find genes in the reference, and got none",
                "prepare the genes with their symbols (geneshot prepare does)",
            )
        if self.config.get("permute_reference"):
            reference = permute_reference(reference, self.config.get("permute_seed", 0))
        self.coexp_ = coexpression_vectors(reference, self.symbols_, self.config["coexp_axes"])
        self.coexp_seen_ = self.coexp_.lookup(self.symbols_)
        return self.coexp_seen_ @ self.coexp_seen_.T

    def _cv(
        self, fits: np.ndarray, y: np.ndarray, locus: np.ndarray, coexp: np.ndarray | None
    ) -> list[dict]:
        """:func:`~geneshot.models._gene_cv.gene_cv` over this estimator's grids.

        With a co-expression kernel the search runs in two stages: the text and locus grid
        as without a reference, then the reference weights at its best ``gamma`` and locus
        weight (every stage's rows are returned). One eigendecomposition per grid point is
        the cost: 19 instead of the product grid's 96 (BENCHMARKS.md, "Session 12").
        """
        gammas, weights = self.config.get("gammas"), self.config.get("locus_weights")

        def run(gammas: list[float], weights: list[float], ref_weights: list[float] | None):
            return gene_cv(
                self.vectors_,
                locus,
                fits,
                y,
                gammas=gammas,
                lambdas=self.config.get("lambdas") or LAMBDAS,
                weights=weights,
                top=int(self.config.get("cv_top") or 0),
                coexp=coexp,
                coexp_weights=ref_weights,
                per_gene=coexp is not None,  # for _choose's gain rule
            )

        # no symbols, no locus
        weights = [0.0] if self.symbols_ is None else (LOCUS_WEIGHTS if weights is None else weights)
        rows = run(GAMMAS if gammas is None else gammas, weights, None)
        if coexp is None:
            return rows
        text = max(rows, key=lambda r: r["score"])
        ref_weights = self.config.get("reference_weights") or REFERENCE_WEIGHTS
        return rows + run([text["gamma"]], [text["locus"]], [w for w in ref_weights if w > 0])

    def _choose(self, rows: list[dict], with_reference: bool) -> dict:
        """The gene CV's grid point: the best score, the reference only if its gain is clear.

        With a reference, sets ``reference_gain_`` (:func:`~geneshot.models._gene_cv.clear_gain`
        of the best point with the reference against the best without; a row's score is the
        mean of its ``per_gene`` scores, so a kept gain is also the better score) and drops
        the per-gene scores from ``rows``.
        """
        if not with_reference:
            return max(rows, key=lambda r: r["score"])
        text = max((r for r in rows if r["reference"] == 0.0), key=lambda r: r["score"])
        with_ref = max((r for r in rows if r["reference"] > 0.0), key=lambda r: r["score"])
        self.reference_gain_ = clear_gain(
            with_ref["per_gene"], text["per_gene"], self.config.get("reference_min_gain_se", 1.0)
        )
        for r in rows:
            r.pop("per_gene", None)
        return with_ref if self.reference_gain_["keep"] else text

    def _kernel(
        self,
        q: np.ndarray,
        symbols: list[str] | None,
        locus: np.ndarray | None = None,
        coexp: np.ndarray | None = None,
    ) -> np.ndarray:
        """``K(q, S)``: the chosen text kernel plus the chosen weights of the locus and
        co-expression kernels (``locus``, ``coexp``: those kernels when already computed)."""
        k = text_kernel(q, self.vectors_, self.gamma_)
        weight = getattr(self, "locus_weight_", 0.0)  # 0 in runs saved before the locus kernel
        if weight and symbols is not None:
            if locus is None:
                locus = locus_kernel(symbols, self.symbols_)
            k = k + weight * locus
        ref_weight = getattr(self, "reference_weight_", 0.0)  # 0 in runs saved before it
        if ref_weight and symbols is not None:
            if coexp is None:
                coexp = self.coexp_.lookup(list(symbols)) @ self.coexp_seen_.T
            k = k + ref_weight * coexp
        return k

    def predict(self, slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
        """Predictions ``(N, G)`` for any genes, seen or not, on the target scale."""
        if not hasattr(self, "solved_coef_"):
            raise InputError(
                None, "GeneKernelEstimator is not fitted", "call fit(slides, targets, genes) first"
            )
        z = self.pca_.transform(_features(slide, self.config["use_nuclei"]))
        # (N,) the common pattern (runs saved before common_fit: the mean of the fits)
        common_coef = getattr(self, "common_coef_", self.mean_coef_)
        m = z @ common_coef + getattr(self, "common_icpt_", self.mean_icpt_)
        q = unit_rows(genes.pooled.detach().cpu().numpy().astype(np.float64))
        kq = self._kernel(q, genes.symbols)  # (G, S)
        dep = kq @ self.solved_coef_  # (G, n_components): each gene's departure over z
        # the PCA scores are uncorrelated over the training spots, with these variances
        var = self.pca_.explained_variance_
        # the departure's spread against the fits' mean, whichever common pattern is added
        # back (the factor's scale and shrink were chosen so, session 11)
        factor = departure_factor(
            (dep**2) @ var,
            float((self.mean_coef_**2) @ var),
            self.config.get("departure_scale", 1.0),  # 1 in runs saved before the scale
            self.config.get("departure_shrink", 0.0),
        )
        # the scores are centred on the training spots: the factor leaves each gene's level
        pred = m[:, None] + factor * (z @ dep.T) + kq @ self.solved_icpt_
        if getattr(self, "coexp_", None) is None or genes.symbols is None:
            return pred
        # genes the reference measured that are not seen genes: the reference's level instead
        # of the kernel's (the level at the training spots' mean is mean_icpt + kq . icpt)
        rows = self.coexp_.rows(list(genes.symbols))
        other = (rows >= 0) & ~np.isin(list(genes.symbols), self.symbols_)
        kernel_level = self.mean_icpt_ + kq @ self.solved_icpt_
        return pred + np.where(other, self.coexp_.level[np.maximum(rows, 0)] - kernel_level, 0.0)
