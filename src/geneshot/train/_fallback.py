"""How much of a zero-shot model's own maps to keep, chosen on its validation data.

A neural zero-shot model whose gene knowledge does not transfer predicts, for each unseen gene,
the common per-spot pattern with an arbitrary sign and scale, which scores below the ``depth``
control. So after training, the trainer's held-out data (the validation section, or spots, and
the seen genes held out of the loss) decide how far to lean on the common pattern:
``keep`` in :data:`KEEP_WEIGHTS` scales each gene's departure from the common pattern, the
depth control's prediction (:func:`geneshot.train._shift.shrink_toward_common` with
``1 - keep``). The
common pattern used to choose is refitted without the validation spots and genes, so the
choice never sees what it is scored on. ``keep = 0`` says the model's gene-specific part did
not hold up there; the run records the scores and the choice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from geneshot.metrics import per_gene_pearson
from geneshot.train._shift import CommonPattern, shrink_toward_common

log = logging.getLogger(__name__)

KEEP_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def best_weight(
    cases: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], weights: Sequence[float]
) -> tuple[float, dict[float, float]]:
    """The ``w`` maximising mean per-gene PCC of ``base + w * change`` over ``cases``.

    ``cases`` holds one ``(target, base, change)`` triple of ``(n_spots, n_genes)`` arrays
    per validation slide; slides are averaged after genes. Ties (to 4 decimals) go to the
    smaller weight: the base is the safer prediction.
    """
    means = {
        w: float(np.mean([np.nanmean(per_gene_pearson(y, b + w * c)) for y, b, c in cases]))
        for w in weights
    }
    return min(weights, key=lambda w: (-round(means[w], 4), w)), means


@torch.no_grad()
def choose_keep(gm, slides, ys: Sequence[torch.Tensor], gin, device) -> float:
    """Choose ``gm.common_keep`` on the trainer's validation data (see the module docstring).

    Reads ``gm.validation`` (slides, genes and held-out spots, set by the trainer). Returns
    1.0 (keep the model's maps) when there is nothing to validate on.
    """
    val = getattr(gm, "validation", None) or {}
    val_slides = list(val.get("slides", []))
    val_genes = np.asarray(val.get("genes", []), np.int64)
    held = val.get("held_out") or []
    if not val_slides or not len(val_genes) or not held:
        return 1.0
    train_genes = np.setdiff1d(np.arange(gin.n_genes), val_genes)
    # the common pattern from the spots and genes that the loss saw
    fit = [i for i in range(len(slides)) if (~held[i]).any()]
    common = CommonPattern.fit(
        [slides[i].image.cpu().numpy()[~held[i]] for i in fit],
        [ys[i].cpu().numpy()[~held[i]][:, train_genes] for i in fit],
    )
    mod = gm.module.eval()
    out_genes = gin.select(torch.from_numpy(val_genes)).to(device)
    ctx = gin.select(torch.from_numpy(train_genes)).to(device) if len(train_genes) else None
    cases = []
    for i in val_slides:
        spots = held[i]
        if spots.sum() < 3:
            continue
        pred = mod(slides[i].to(device), out_genes, ctx).cpu().numpy()[spots]
        m = common.predict(slides[i].image.cpu().numpy()[spots])
        base = shrink_toward_common(pred, m, 1.0)
        cases.append((ys[i].cpu().numpy()[spots][:, val_genes], base, pred - base))
    if not cases:
        return 1.0
    keep, means = best_weight(cases, KEEP_WEIGHTS)
    gm.history.append(
        {"common_keep_scores": {str(w): round(s, 4) for w, s in means.items()}, "common_keep": keep}
    )
    log.info(
        "%s: keeps %.2f of its own maps over the common pattern, chosen on validation (PCC %s)",
        gm.name,
        keep,
        {w: round(s, 3) for w, s in means.items()},
    )
    return float(keep)
