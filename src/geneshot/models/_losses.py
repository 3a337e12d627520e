"""Training losses: MSE plus a per-gene Pearson term (SGN's loss with its index bug fixed)."""

from __future__ import annotations

import torch

from geneshot.errors import InputError


def pearson_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - mean_g PCC_g``, the Pearson correlation of column ``g`` across spots.

    ``pred`` and ``target`` are ``(N, G)`` with matching columns: when genes are sampled, pass
    ``target[:, idx]`` for the same ``idx`` the model predicted (SGN compared them with
    ``target[:, :64]``, paper-notes §3.4). A constant column contributes PCC 0.
    """
    if pred.shape != target.shape:
        raise InputError(
            None,
            f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}",
            "index the target with the sampled gene columns",
        )
    p = pred - pred.mean(0, keepdim=True)
    t = target - target.mean(0, keepdim=True)
    r = (p * t).sum(0) / (p.norm(dim=0) * t.norm(dim=0) + eps)
    return 1 - r.mean()


def mse_pcc_loss(pred: torch.Tensor, target: torch.Tensor, pcc_weight: float = 0.5) -> torch.Tensor:
    """``MSE + pcc_weight * (1 - mean per-gene PCC)`` (paper-notes §3.4, §2.6)."""
    pcc = pearson_loss(pred, target)  # checks shapes
    return torch.mean((pred - target) ** 2) + pcc_weight * pcc


def gene_specific_loss(
    pred: torch.Tensor, target: torch.Tensor, pcc_weight: float = 0.5
) -> torch.Tensor:
    """:func:`mse_pcc_loss` after removing each spot's mean over the genes of the step.

    The shared per-spot pattern (what the depth control predicts) scores nothing here, so
    this term rewards only what tells one gene from another: gene vectors that all point
    the same way, the collapse seen with the plain loss, gain nothing from it.
    """
    return mse_pcc_loss(
        pred - pred.mean(1, keepdim=True), target - target.mean(1, keepdim=True), pcc_weight
    )
