"""Small building blocks shared by ALIGN-ST and SGN: a pre-norm transformer block and token trimming."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block (ViT style) with optional LayerScale.

    Parameters
    ----------
    dim, heads, mlp_ratio, dropout
        Width, attention heads, MLP hidden = ``mlp_ratio * dim``, dropout on the residual branches
        (none on the attention probabilities: on CPU that costs ~15% of a step and forces the
        slow attention kernel).
    layer_scale
        Initial LayerScale value (SGN uses 0.1); ``None`` disables it.
    eps
        LayerNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        layer_scale: float | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.drop = nn.Dropout(dropout)
        if layer_scale is None:
            self.gamma1 = self.gamma2 = None
        else:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, L, dim)``; ``keep`` ``(B, L)`` bool, ``True`` = key may be attended to."""
        b, length, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        mask = None if keep is None else keep[:, None, None, :]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        a = self.drop(self.proj(a.transpose(1, 2).reshape(b, length, dim)))
        x = x + (a if self.gamma1 is None else self.gamma1 * a)
        m = self.drop(self.mlp(self.norm2(x)))
        return x + (m if self.gamma2 is None else self.gamma2 * m)


def trim_tokens(
    tokens: torch.Tensor, mask: torch.Tensor, max_tokens: int | None = None, pool: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop all-padding trailing columns, optionally truncate and mean-pool adjacent tokens.

    Trimming is exact (padding is masked anyway) and saves most of the cost when descriptions are
    shorter than the padded length. ``pool > 1`` averages each run of ``pool`` real tokens into one
    (a speed approximation: attention cost falls by ``pool**2``).
    """
    mask = mask.bool()
    if max_tokens is not None:
        tokens, mask = tokens[:, :max_tokens], mask[:, :max_tokens]
    used = mask.any(0).nonzero()
    length = int(used.max()) + 1 if used.numel() else 1
    tokens, mask = tokens[:, :length], mask[:, :length]
    if pool > 1:
        pad = (-length) % pool
        tokens = F.pad(tokens, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad), value=False)
        g, length2, d = tokens.shape
        m = mask.view(g, length2 // pool, pool, 1).to(tokens.dtype)
        s = (tokens.view(g, length2 // pool, pool, d) * m).sum(2)
        n = m.sum(2)
        tokens, mask = s / n.clamp_min(1.0), n.squeeze(-1) > 0
    return tokens, mask
