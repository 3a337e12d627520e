"""``ref-impute``: reference-assisted zero-shot prediction through a reference's gene axes.

The image predicts where a spot sits on the reference's top-``k`` axes of the seen genes;
any gene the reference measured is then read off its loadings on those axes. The seen
genes' training targets define the scores the image learns (z-scored with TRAINING means
and spreads, then projected on the reference axes), so no unseen gene is looked at in
training; an unseen gene's only input is its co-expression with the seen genes in the
reference (other patients' count tables or an atlas).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV

from geneshot.errors import InputError
from geneshot.genes import GeneAxes, Reference, gene_axes, gene_positions, permute_reference
from geneshot.models._estimators import _ALPHAS, _check_targets, _features, _PCARidge
from geneshot.models._inputs import GeneInputs, SlideInputs

_NO_SYMBOLS = (
    "GeneInputs.symbols is empty: ref-impute reads gene symbols to find genes in the reference"
)


class RefImputeEstimator(_PCARidge):
    """Image -> reference axis scores -> any reference gene (PCA + RidgeCV, closed form).

    Fit:

    1. ``Z`` = training targets of the seen genes the reference shares, z-scored with the
       training mean and sd;
    2. scores ``S = Z @ axes`` on the reference's top-``k`` principal axes of those genes
       (:func:`geneshot.genes.gene_axes`);
    3. PCA + RidgeCV from image features to ``S`` (:class:`~geneshot.models._estimators._PCARidge`),
       and a second ridge on the same components to each spot's mean of ``Z`` (the common
       per-spot pattern).

    Predict a gene ``g``: ``z_g = S_hat @ loadings_g``, optionally shrunk toward the common
    pattern, ``(1 - shrink) z_g + shrink * common_g * m~`` (``m~`` the standardised common
    prediction, ``common_g`` the gene's correlation with it in the reference); the output is
    ``mean_g + sd_g * z_g`` with the gene's level and spread in the reference (log1p CP10k).

    Parameters
    ----------
    k
        Number of reference axes.
    max_rows
        Reference rows the axes are computed on (a seeded random subset of a larger atlas).
    shrink
        Default shrinkage toward the common pattern used by :meth:`predict`.
    permute_reference, permute_seed
        A control: fit on the reference with its gene labels shuffled among genes of a
        similar level (:func:`geneshot.genes.permute_reference`).
    **config
        :class:`_PCARidge` settings (``n_components``, ``alphas``, ``use_nuclei``).
    """

    def __init__(
        self,
        k: int = 30,
        max_rows: int = 50_000,
        shrink: float = 0.0,
        permute_reference: bool = False,
        permute_seed: int = 0,
        **config,
    ) -> None:
        super().__init__(**config)
        self.config.update(
            k=k,
            max_rows=max_rows,
            shrink=shrink,
            permute_reference=bool(permute_reference),
            permute_seed=int(permute_seed),
        )

    def fit(
        self,
        slides: list[SlideInputs],
        targets: list[np.ndarray],
        genes: GeneInputs,
        reference: Reference | None = None,
        axes: GeneAxes | None = None,
    ) -> RefImputeEstimator:
        """Fit on the seen ``genes`` (their ``symbols`` locate them in ``reference``).

        ``axes``: the reference's :func:`~geneshot.genes.gene_axes` for these genes, when a
        caller fitting several times on one reference (cross-fitting) has computed them once.
        """
        if reference is None:
            raise InputError(
                None,
                "ref-impute needs a reference expression matrix",
                "pass reference= (CLI: --reference REF.h5ad)",
            )
        if genes.symbols is None:
            raise InputError(
                None, _NO_SYMBOLS, "build GeneInputs with symbols (GeneshotModel does)"
            )
        y = _check_targets(slides, targets, genes.n_genes)
        ax = axes if axes is not None else self.axes(reference, list(genes.symbols))
        pos = {g: i for i, g in enumerate(genes.symbols)}
        ys = y[:, [pos[g] for g in ax.seen]]
        mu = ys.mean(0)
        sd = ys.std(0)
        sd = np.where(sd < 1e-6, 1.0, sd)
        z = (ys - mu) / sd
        self._fit_xy(slides, z @ ax.axes)
        x = self.pca_.transform(
            np.vstack([_features(s, self.config["use_nuclei"]) for s in slides])
        )
        m = z.mean(1)
        self.common_ridge_ = RidgeCV(alphas=self.config["alphas"] or _ALPHAS).fit(x, m)
        m_fit = self.common_ridge_.predict(x)
        self.common_scale_ = (float(m_fit.mean()), max(float(m_fit.std()), 1e-9))
        self.genes_ = list(ax.genes)
        self.loadings_ = ax.loadings.astype(np.float32)
        self.mean_ = ax.mean.astype(np.float32)
        self.sd_ = ax.sd.astype(np.float32)
        self.common_ = ax.common.astype(np.float32)
        self.seen_ = list(ax.seen)
        self.reference_ = reference.describe()
        return self

    def axes(self, reference: Reference, seen: list[str]) -> GeneAxes:
        """The reference summary this estimator's config asks for (deterministic)."""
        if self.config.get("permute_reference"):
            reference = permute_reference(reference, self.config.get("permute_seed", 0))
        return gene_axes(reference, seen, int(self.config["k"]), max_rows=int(self.config["max_rows"]))

    def columns(self, symbols: list[str]) -> np.ndarray:
        """Reference column of each gene; raises :class:`InputError` naming genes it lacks."""
        cols = gene_positions(self.genes_, symbols)
        missing = [g for g, c in zip(symbols, cols) if c < 0]
        if missing:
            raise InputError(
                None,
                f"the reference has no expression for {len(missing)} requested gene(s): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}",
                "ask only for genes the reference measured, or give a reference that has them",
            )
        return cols

    def predict_common(self, slide: SlideInputs) -> np.ndarray:
        """Standardised common per-spot pattern ``m~`` ``(N,)`` (training-spot scale)."""
        x = self.pca_.transform(_features(slide, self.config["use_nuclei"]))
        mu, sd = self.common_scale_
        return (self.common_ridge_.predict(x) - mu) / sd

    def predict(
        self, slide: SlideInputs, genes: GeneInputs, shrink: float | None = None
    ) -> np.ndarray:
        """Predictions ``(N, G)`` for any genes the reference has, in log1p CP10k units."""
        if genes.symbols is None:
            raise InputError(
                None, _NO_SYMBOLS, "build GeneInputs with symbols (GeneshotModel does)"
            )
        shrink = float(self.config["shrink"] if shrink is None else shrink)
        if not 0.0 <= shrink <= 1.0:
            raise InputError(None, f"shrink is {shrink}", "use a value in [0, 1]")
        cols = self.columns(list(genes.symbols))
        z = self._predict_fitted(slide) @ self.loadings_[:, cols].astype(np.float64)
        if shrink:
            m = self.predict_common(slide)
            z = (1.0 - shrink) * z + shrink * m[:, None] * self.common_[cols][None, :]
        return self.mean_[cols][None, :] + self.sd_[cols][None, :] * z
