"""SGN (Yang et al., MICCAI 2024) as in its released code (paper-notes §3.2-§3.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geneshot.models._base import GeneExpressionModule
from geneshot.models._graph import SpotSAGE, spot_edges
from geneshot.models._inputs import GeneInputs, SlideInputs
from geneshot.models._layers import Block, trim_tokens

#: Released-code architecture [C, §3]. The one deviation: ``token_pool=4`` mean-pools each 4
#: description tokens into one, ~3x faster on CPU (the weight generator is ~90% of a step);
#: ``token_pool=1`` restores the released code exactly.
SGN_DEFAULTS: dict = {
    "d_img": 1280,
    "d_text": 384,
    "hidden": 512,
    "d_model": 256,
    "n_graph_layers": 4,
    "near_max": 5,  # radius_graph(max_num_neighbors=5) [C]
    "knn_k": 5,
    "n_blocks": 2,
    "n_heads": 4,
    "mlp_ratio": 4.0,
    "layer_scale": 0.1,
    "dropout": 0.0,
    "max_tokens": 512,
    "token_pool": 4,
    "n_segments": 5,
}


class SGN(GeneExpressionModule):
    """SGN: spot GraphSAGE + a transformer weight generator over gene-description tokens.

    Spot side [C]: ``Linear(D_img -> 512, bias=False)``, 4 ``HeteroConv`` SAGE layers (near + knn,
    mean) each followed by LeakyReLU(0.2), ``Linear(512 -> 256)``. Gene side [C]:
    ``Linear(D_T -> 256)`` + zero-initialised segment embedding (every real token gets segment 1:
    we have no "ambiguous" multi-symbol genes), ``[CLS; REG; tokens]``, 2 pre-norm blocks with
    LayerScale 0.1, final LayerNorm, ``Linear(256 -> 257)``: ``w = L2norm(first 256)``, ``b = last``.
    ``context`` is ignored (genes are independent).
    """

    def __init__(self, **config) -> None:
        super().__init__()
        cfg = {**SGN_DEFAULTS, **config}
        self.config = cfg
        hid, d = cfg["hidden"], cfg["d_model"]
        self.spot_in = nn.Linear(cfg["d_img"], hid, bias=False)
        self.sage = SpotSAGE(hid, cfg["n_graph_layers"], residual=False)
        self.spot_out = nn.Linear(hid, d)
        self.token_proj = nn.Linear(cfg["d_text"], d)
        self.segment = nn.Embedding(cfg["n_segments"], d)
        nn.init.zeros_(self.segment.weight)
        self.cls = nn.Parameter(torch.zeros(1, 2, d))  # CLS + 1 register token
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.blocks = nn.ModuleList(
            Block(d, cfg["n_heads"], cfg["mlp_ratio"], cfg["dropout"], cfg["layer_scale"])
            for _ in range(cfg["n_blocks"])
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, d + 1)

    def encode_spots(self, slide: SlideInputs) -> torch.Tensor:
        """Spot embeddings ``(N, d_model)``."""
        edges = spot_edges(
            slide.grid, slide.image, self.config["near_max"], self.config["knn_k"], slide.near
        )
        return self.spot_out(self.sage(self.spot_in(slide.image), edges))

    def encode_genes(
        self, genes: GeneInputs, slide: SlideInputs | None = None, context: GeneInputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gene weights ``(G, d_model)`` (unit norm) and biases ``(G,)``; slide and context unused."""
        # SGN truncates to 512 tokens including CLS and register.
        tokens, mask = trim_tokens(
            genes.tokens, genes.mask, self.config["max_tokens"] - 2, self.config["token_pool"]
        )
        x = self.token_proj(tokens) + self.segment(mask.long())
        g = x.shape[0]
        x = torch.cat([self.cls.expand(g, -1, -1), x], dim=1)
        keep = torch.cat([mask.new_ones(g, 2), mask], dim=1)
        for block in self.blocks:
            x = block(x, keep)
        out = self.head(self.norm(x[:, 0]))
        return F.normalize(out[:, :-1], dim=-1), out[:, -1]
