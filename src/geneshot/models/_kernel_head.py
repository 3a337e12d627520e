"""ALIGN-ST's kernel head [I]: unseen genes read off the seen genes' fitted maps.

The paper's head is a dot product of a spot vector and a gene vector. Trained on a few
sections, its gene vectors for unseen genes collapse onto one direction (BENCHMARKS.md). The
kernel head keeps what makes the closed-form ``gene-kernel`` work and learns inside it:

1. each spot is described by ``u = [a, s * x, 1]``: ``a`` the training spots' top principal
   components of the frozen image features (fixed; scaled to unit mean square norm), ``x``
   ALIGN-ST's spot embedding (NDAIFE, GraphSAGE) with a learned scale ``s``;
2. every seen ("support") gene gets a ridge fit ``F_j = u . W_j`` (closed form, so it is
   differentiable; penalty ``alpha`` learned);
3. a gene ``q`` is predicted as ``m + sum_j A_qj (F_j - m)``, ``m`` the mean of the support
   fits (the common pattern) and ``A = K_QS (K_SS + lambda I)^-1`` kernel ridge in gene
   space, with ``K = exp(gamma (cos_text - 1) + beta (cos_z - 1)) + w L``: ``cos_text`` between
   the gene encoder's pooled vectors (fixed), ``cos_z`` between ALIGN-ST's gene embeddings
   (PGGP, ASIG), ``L`` the genes' locus kernel (:func:`geneshot.genes.locus_kernel`, from
   their symbols; 0 without them) with a learned weight ``w``. ``beta`` starts near 0 and
   ``s`` small, so training starts at gene-kernel.

Before training the head starts where the closed form would: its kernel sharpness, gene-space
penalty and locus weight are set by the exact leave-one-gene-out CV of ``gene-kernel``
(:func:`geneshot.models._gene_cv.gene_cv`) on its own initial fits of the training genes
(:meth:`KernelHead.choose_start`); training moves them from there.

In training the support genes are the step's context genes, fitted on the other training
sections' spots (``TrainConfig.support_from="sections"``, ALIGN-ST's default) or on half of the
section's spots (``"spots"``); the loss is on the section's (other) spots, for the step's output
genes: each step is a small zero-shot problem. At prediction the support is every seen gene,
fitted once on all training spots (:meth:`KernelHead.fit_support`, stored in the state dict). With ``support_fit="gcv"``
those stored fits take a ridge penalty per gene chosen by generalised cross-validation over the
training spots (as ``gene-kernel``'s fits): a seen gene whose map the image barely predicts is
shrunk toward its mean instead of passing its noise on to its neighbours in gene space.

At prediction the common pattern ``m`` comes, with ``common_fit="gcv"`` (the default), from its
own ridge of the spots' mean target over the seen genes with the penalty by GCV, as the depth
control fits it; the mean of the stored fits is the same regression at the head's small learned
penalty, which overfits the training spots. Genes whose knowledge says little fall back to
``m``, so a better ``m`` lifts them all (nested CV, BENCHMARKS.md, session 8).

At prediction the departure ``A (F - m)`` is multiplied by ``departure_scale``, or with
``departure_shrink > 0`` by a factor per gene from how far it departs over the training spots
(the rule of :mod:`geneshot.models._gene_cv`, shared with ``gene-kernel``; the spots'
covariance is kept for it); training, which fits and scores seen genes, always uses 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import RidgeCV
from torch import nn

from geneshot._memo import memoized
from geneshot.errors import InputError, check_choice, check_positive
from geneshot.genes import locus_kernel
from geneshot.models._estimators import _ALPHAS
from geneshot.models._gene_cv import (
    COMMON_FITS,
    GAMMAS,
    LAMBDAS,
    LOCUS_WEIGHTS,
    departure_factor,
    gene_cv,
    out_of_section_fits,
    unit_rows,
)

# the stored fits' penalty: the head's learned one, or one per gene by GCV
SUPPORT_FITS = ("learned", "gcv")


def _ridge(u: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``(p + 1, S)`` ridge coefficients (last row: intercept) of ``y`` on ``u``, mean loss."""
    n = u.shape[0]
    um, ym = u.mean(0, keepdim=True), y.mean(0, keepdim=True)
    uc, yc = u - um, y - ym
    gram = uc.T @ uc / n + alpha * torch.eye(u.shape[1], dtype=u.dtype, device=u.device)
    w = torch.linalg.solve(gram, uc.T @ yc / n)
    return torch.cat([w, ym - um @ w])


def _gcv_ridge(x: np.ndarray, y: np.ndarray) -> RidgeCV:
    """Ridge of every column of ``y`` on ``x``, its penalty by GCV per column (as gene-kernel)."""
    return RidgeCV(alphas=_ALPHAS, alpha_per_target=True).fit(x, y)


class KernelHead(nn.Module):
    """The parameters and buffers of the kernel head (see the module docstring).

    Parameters
    ----------
    cfg
        ALIGN-ST config: ``d_img``, ``d_model``, ``kernel_anchor`` (principal components in
        ``a``), ``kernel_gamma`` / ``kernel_lambda`` / ``ridge_alpha`` / ``kernel_locus``
        (initial values; ``kernel_locus=0`` leaves the locus kernel out),
        ``n_support`` (seen genes; set by the trainer), ``support_fit`` (``"learned"``: the
        stored fits use the learned penalty ``alpha``; ``"gcv"``: a penalty per gene by GCV).
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        k, d = int(cfg["kernel_anchor"]), int(cfg["d_model"])
        self.register_buffer("anchor_mean", torch.zeros(cfg["d_img"]))
        self.register_buffer("anchor_proj", torch.zeros(cfg["d_img"], k))
        self.register_buffer("support_w", torch.zeros(k + d + 1, max(int(cfg["n_support"]), 1)))
        self.log_gamma = nn.Parameter(torch.tensor(math.log(cfg["kernel_gamma"])))
        self.log_lambda = nn.Parameter(torch.tensor(math.log(cfg["kernel_lambda"])))
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg["ridge_alpha"])))
        self.log_beta = nn.Parameter(torch.tensor(-4.0))
        locus = float(cfg.get("kernel_locus", 0.0))
        self.log_locus = nn.Parameter(torch.tensor(math.log(locus))) if locus > 0 else None
        self.spot_scale = nn.Parameter(torch.tensor(0.05))
        self.support_fit = check_choice(
            "ALIGN-ST support_fit", str(cfg.get("support_fit", "learned")), SUPPORT_FITS
        )
        self.common_fit = check_choice(
            "ALIGN-ST common_fit", str(cfg.get("common_fit", "mean")), COMMON_FITS
        )
        if self.common_fit == "gcv":  # only then, so that other heads' saved runs still load
            self.register_buffer("common_w", torch.zeros(k + d + 1))
        # config values, not parameters: chosen by nested CV, never trained
        self.departure_scale = check_positive("departure_scale", cfg.get("departure_scale", 1.0))
        self.departure_shrink = check_positive(
            "departure_shrink", cfg.get("departure_shrink", 0.0), allow_zero=True
        )
        if self.departure_scale != 1.0 or self.departure_shrink > 0:
            # only then, so that runs without a departure factor still load: the training
            # spots' mean (the factor keeps each gene's level there) and covariance (the shrink)
            self.register_buffer("spot_mean", torch.zeros(k + d))
            self.register_buffer("spot_cov", torch.zeros(k + d, k + d))
        # False while training stores each epoch's fits (fit_support): the departure factor
        # waits for the final fits; a loaded run holds them
        self.final = True

    @torch.no_grad()
    def set_anchor(self, features: np.ndarray) -> None:
        """Principal axes of the (standardised) training features, scaled to unit norm per spot."""
        x = np.asarray(features, np.float64)
        mean = x.mean(0)
        k = self.anchor_proj.shape[1]

        def top_axes() -> tuple[np.ndarray, np.ndarray]:
            _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
            return sv, vt[:k].copy()  # not the left vectors: (n_spots, n_spots) kept for nothing

        # memoised: ALIGN-ST and its permuted-text control anchor on the same features
        sv, vt = memoized("anchor-svd", (x, k), top_axes, 2)
        k_eff = min(k, vt.shape[0])
        proj = np.zeros((x.shape[1], k))
        proj[:, :k_eff] = vt[:k_eff].T
        total = float((sv[:k_eff] ** 2).sum()) / len(x)
        self.anchor_mean.copy_(torch.from_numpy(mean).float())
        self.anchor_proj.copy_(torch.from_numpy(proj / math.sqrt(max(total, 1e-12))).float())

    @torch.no_grad()
    def choose_start(
        self,
        u: torch.Tensor,
        y: torch.Tensor,
        pooled: torch.Tensor,
        symbols: list[str] | None,
        rows: torch.Tensor,
        top: int = 0,
        section: np.ndarray | None = None,
    ) -> dict:
        """Set gamma, lambda and the locus weight to the gene CV's choice on these fits.

        ``u`` ``(N, k + d)`` training spot vectors and ``y`` ``(N, S)`` the training genes'
        targets (ordered most expressed first); the genes are fitted (ridge, penalty per gene
        by GCV, as ``gene-kernel``) on all ``N`` spots, or, with ``section`` ``(N,)`` given,
        each section's spots from the other sections (``cv_fits="out-of-section"``), and
        scored by :func:`~geneshot.models._gene_cv.gene_cv` at the ``rows`` spots. Returns
        the chosen grid point.
        """
        # the closed form's fits: a ridge per gene with its penalty by GCV (the head's own
        # single, nearly unpenalised start overfits the training spots, and the CV would then
        # read that noise as a reason to shrink)
        x, yy, at = u.double().cpu().numpy(), y.double().cpu().numpy(), rows.cpu().numpy()

        def fit_predict(train: np.ndarray | slice, where: np.ndarray) -> np.ndarray:
            return _gcv_ridge(x[train], yy[train]).predict(x[where])

        if section is not None and len(np.unique(section)) > 1:
            fits = out_of_section_fits(section, at, yy.shape[1], fit_predict)
        else:
            fits = fit_predict(slice(None), at)
        use_locus = self.log_locus is not None and symbols is not None
        best = max(
            gene_cv(
                unit_rows(pooled.double().cpu().numpy()),
                locus_kernel(symbols, symbols) if use_locus else np.zeros((y.shape[1],) * 2),
                fits,
                y[rows].double().cpu().numpy(),
                gammas=[g for g in GAMMAS if g > 0],  # the head's kernel is exp(gamma (cos - 1))
                lambdas=LAMBDAS,
                weights=LOCUS_WEIGHTS if use_locus else [0.0],
                top=top,
            ),
            key=lambda r: r["score"],
        )
        self.log_gamma.fill_(math.log(best["gamma"]))
        self.log_lambda.fill_(math.log(best["lambda"]))
        if use_locus:
            # a log weight cannot be 0: "no locus" starts at a negligible weight
            self.log_locus.fill_(math.log(max(best["locus"], 1e-6)))
        return best

    def spots(self, image: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``u = [a, s * x]`` ``(N, k + d)`` (the intercept is added by the ridge)."""
        a = (image - self.anchor_mean) @ self.anchor_proj
        xs = F.layer_norm(x, x.shape[-1:]) / math.sqrt(x.shape[-1])
        return torch.cat([a, self.spot_scale * xs], dim=1)

    def fit(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Ridge coefficients ``(k + d + 1, S)`` of support targets ``y`` on spots ``u``."""
        return _ridge(u, y, self.log_alpha.exp())

    @torch.no_grad()
    def fit_stored(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The fits kept for prediction: :meth:`fit`, or per-gene GCV penalties (``support_fit``)."""
        if self.support_fit == "learned":
            return self.fit(u, y)
        ridge = _gcv_ridge(u.double().cpu().numpy(), y.double().cpu().numpy())
        w = np.vstack([np.atleast_2d(ridge.coef_).T, np.atleast_1d(ridge.intercept_)[None]])
        return torch.from_numpy(w).to(u)

    @torch.no_grad()
    def store_common(self, u: torch.Tensor, y: torch.Tensor) -> None:
        """``common_fit="gcv"``: keep a ridge of the spots' mean over the seen genes ``y`` on ``u``.

        Its penalty is chosen by GCV, as the depth control's. The mean of the stored fits is
        the same regression at the head's learned penalty, fitted for the gene-specific parts.
        """
        if self.common_fit != "gcv":
            return
        ridge = _gcv_ridge(
            u.double().cpu().numpy(), y.double().cpu().numpy().mean(1, keepdims=True)
        )
        w = np.r_[np.ravel(ridge.coef_), np.ravel(ridge.intercept_)]
        self.common_w.copy_(torch.from_numpy(w).to(self.common_w))

    @torch.no_grad()
    def store_spot_stats(self, u: torch.Tensor) -> None:
        """With a departure factor: keep the mean and covariance of the training spot vectors."""
        if not hasattr(self, "spot_cov"):
            return
        mean = u.mean(0, keepdim=True)
        self.spot_mean.copy_(mean[0].to(self.spot_mean))
        self.spot_cov.copy_(((u - mean).T @ (u - mean) / len(u)).to(self.spot_cov))

    @property
    def spot_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The training spot vectors' mean ``(k + d,)`` and covariance, or None (not kept)."""
        return (self.spot_mean, self.spot_cov) if hasattr(self, "spot_cov") else None

    @property
    def stored_common(self) -> torch.Tensor | None:
        """The kept common-pattern coefficients ``(k + d + 1,)``, or None (``common_fit="mean"``)."""
        return self.common_w if self.common_fit == "gcv" else None

    @torch.no_grad()
    def store_support(self, w: torch.Tensor) -> None:
        """Keep every seen gene's coefficients for prediction."""
        if w.shape != self.support_w.shape:
            raise InputError(
                None,
                f"support coefficients of shape {tuple(w.shape)}, the head holds {tuple(self.support_w.shape)}",
                "set model config 'n_support' to the number of seen genes",
            )
        self.support_w.copy_(w)

    def mixing(
        self,
        tq: torch.Tensor,
        zq: torch.Tensor,
        ts: torch.Tensor,
        zs: torch.Tensor,
        symbols: tuple[list[str] | None, list[str] | None] = (None, None),
    ) -> torch.Tensor:
        """``A = K_QS (K_SS + lambda I)^-1``, ``(Q, S)``; ``symbols``: of the Q and S genes."""
        tq, ts, zq, zs = (F.normalize(v, dim=-1) for v in (tq, ts, zq, zs))
        gamma, beta = self.log_gamma.exp(), self.log_beta.exp()

        def kernel(ta, za, tb, zb, sa, sb):
            k = torch.exp(gamma * (ta @ tb.T - 1.0) + beta * (za @ zb.T - 1.0))
            if self.log_locus is None or sa is None or sb is None:
                return k
            return k + self.log_locus.exp() * torch.from_numpy(locus_kernel(sa, sb)).to(k)

        sq, ss = symbols
        kss = kernel(ts, zs, ts, zs, ss, ss)
        eye = torch.eye(len(ts), dtype=kss.dtype, device=kss.device)
        ksq = kernel(ts, zs, tq, zq, ss, sq)
        # (K_SS + lambda I) is symmetric positive definite: A^T = solve(K_SS + lambda I, K_SQ)
        return torch.linalg.solve(kss + self.log_lambda.exp() * eye, ksq).T

    def stored(self, ids: torch.Tensor | None) -> torch.Tensor:
        """The stored fits ``(k + d + 1, C)`` of the context genes with seen-gene slots ``ids``."""
        if ids is None or bool((ids < 0).any()) or int(ids.max()) >= self.support_w.shape[1]:
            raise InputError(
                None,
                "ALIGN-ST's kernel head got context genes that are not its seen genes",
                "pass the run's seen genes as context",
            )
        return self.support_w[:, ids]

    @staticmethod
    def gene_weights(
        w: torch.Tensor,
        a: torch.Tensor,
        common: torch.Tensor | None = None,
        scale: float = 1.0,
        shrink: float = 0.0,
        spot_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weights ``(Q, k + d)`` and biases ``(Q,)`` over ``u`` of ``m + f (F - m) A^T``.

        With ``F = [u, 1] w`` the support fits and ``m`` their mean, the prediction is
        ``F B`` with ``B = 1 1^T / S + (I - 1 1^T / S) A^T``: linear in ``[u, 1]``. With
        ``common`` ``(k + d + 1,)``, ``m = [u, 1] common`` instead (the rows of ``A - mean``
        sum to zero, so ``F - m`` is unchanged by which ``m`` is used there). ``f``: the
        departure factor (prediction only), ``scale``, or with ``shrink > 0`` one per gene
        (:func:`departure_factor`). It scales the departure's variation around its value at
        the training spots' mean, so each gene keeps its level; ``spot_stats`` (the training
        spot vectors' mean and covariance) are needed unless ``f`` is 1.
        """
        ac = (a - a.mean(1, keepdim=True)).T
        m = w.mean(1, keepdim=True) if common is None else common[:, None]
        dep = w @ ac
        if scale == 1.0 and shrink <= 0:
            wb = dep + m
            return wb[:-1].T, wb[-1]
        if spot_stats is None:
            raise InputError(
                None,
                "ALIGN-ST's kernel head kept no spot statistics for its departure factor",
                "train with the departure_scale / departure_shrink you predict with",
            )
        mean, cov = (t.to(dep) for t in spot_stats)
        dw = dep[:-1]
        factor = departure_factor(
            ((cov @ dw) * dw).sum(0), m[:-1, 0] @ cov @ m[:-1, 0], scale, shrink
        )
        # the departure at the training mean spot (the gene's level) stays as it is
        level = mean @ dw
        wb = torch.cat([dw * factor, (dep[-1] + (1.0 - factor) * level)[None]]) + m
        return wb[:-1].T, wb[-1]
