"""A closed-form base plus a neural model for what the base misses (``align-st+ref``, ``align-st+kernel``).

The reference route (``ref-impute``: image -> the reference's seen-gene axes -> any gene)
carries most of what is known about an unseen gene. ALIGN-ST is trained on what it leaves:
the seen genes' residuals after the base. The base's residuals on the training sections are
*cross-fitted* (each section is predicted by a base fitted on the other sections), because a
base fitted on a section explains that section's noise too and would leave ALIGN-ST nothing
honest to learn from.

How much of the neural residual to add, ``residual_weight`` in {0, 0.25, 0.5, 1}, is chosen
on the trainer's validation: the training section and the seen genes it held out of the loss,
scored by per-gene PCC of ``base + weight * residual`` — the quantity the benchmark reports.
A weight of 0 says ALIGN-ST added nothing there, and the run records it.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from geneshot.models import MODELS, create_model
from geneshot.train._fallback import best_weight

log = logging.getLogger(__name__)

RESIDUAL_WEIGHTS = (0.0, 0.25, 0.5, 1.0)


def _cross_fitted(base_name: str, config: dict, slides, ys: list[np.ndarray], gin, extra: dict) -> list[np.ndarray]:
    """Each training section predicted by a base fitted on the other training sections."""
    out = []
    for i in range(len(slides)):
        others = [j for j in range(len(slides)) if j != i]
        b = create_model(base_name, **config)
        b.fit([slides[j] for j in others], [ys[j] for j in others], gin, **extra)
        out.append(np.asarray(b.predict(slides[i], gin), np.float32))
    return out


def fit_composite(gm, slides, ys, genes, seen: list[str], names: list[str], device, progress: bool, reference) -> None:
    """Fit ``gm.base`` on all sections, then ``gm.module`` on cross-fitted residuals; choose the weight."""
    from geneshot.train._trainer import fit_torch

    base_name = gm.spec.base
    config = dict(gm.model_config.get("base_config") or {})
    gin = gm._genes(genes, seen)
    ys_np = [y.numpy() for y in ys]
    extra = {"reference": reference} if MODELS[base_name].needs_reference else {}
    if len(slides) < 2:
        # nothing to cross-fit on: the base alone
        gm.base = create_model(base_name, **config).fit(slides, ys_np, gin, **extra)
        gm.residual_weight = 0.0
        return
    base = create_model(base_name, **config)
    if hasattr(base, "axes"):
        # the reference summary depends on the reference and the seen genes only, not on
        # which sections are fitted: compute it once for the base and its cross-fits
        extra["axes"] = base.axes(reference, list(gin.symbols))
    oof = _cross_fitted(base_name, config, slides, ys_np, gin, extra)
    gm.base = base.fit(slides, ys_np, gin, **extra)
    resid = [torch.from_numpy((y - o).astype(np.float32)) for y, o in zip(ys_np, oof)]
    fit_torch(gm, slides, resid, genes, seen, names, device, progress)
    gm.residual_weight = _choose_weight(gm, slides, ys_np, oof, gin, device)


@torch.no_grad()
def _choose_weight(gm, slides, ys: list[np.ndarray], oof: list[np.ndarray], gin, device) -> float:
    val = getattr(gm, "validation", None) or {}
    val_slides, val_genes = val.get("slides", []), np.asarray(val.get("genes", []), np.int64)
    if not len(val_slides) or not len(val_genes):
        return 0.0
    mod = gm.module.eval()
    out_genes = gin.select(torch.from_numpy(val_genes)).to(device)
    ctx_idx = np.setdiff1d(np.arange(gin.n_genes), val_genes)
    ctx = gin.select(torch.from_numpy(ctx_idx)).to(device) if gm.setting == "zero-shot" and len(ctx_idx) else None
    cases = []
    for i in val_slides:
        res = mod(slides[i].to(device), out_genes, ctx).cpu().numpy()
        cases.append((ys[i][:, val_genes], oof[i][:, val_genes], res))
    best, means = best_weight(cases, RESIDUAL_WEIGHTS)
    gm.history.append({"residual_weight_scores": {str(w): round(s, 4) for w, s in means.items()}, "residual_weight": best})
    log.info("%s: residual weight %.2f chosen on validation (PCC %s)", gm.name, best, {w: round(s, 3) for w, s in means.items()})
    return float(best)


@torch.no_grad()
def predict_composite(gm, slide, gin, ctx) -> np.ndarray:
    """``base + residual_weight * module`` for the genes of ``gin``."""
    base = np.asarray(gm.base.predict(slide, gin), np.float32)
    if not gm.residual_weight:
        return base
    gm.module.eval()
    res = gm.module(slide, gin, ctx).cpu().numpy().astype(np.float32)
    return base + np.float32(gm.residual_weight) * res
