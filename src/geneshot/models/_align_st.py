"""ALIGN-ST (Zhou et al., MICCAI 2025), reconstructed from docs/paper-notes.md §2.

Every reading of an ambiguous point is marked in a comment with its paper-notes section; ``[I]``
means our inference (the paper text was not available), ``[P]`` the paper, ``[C]`` released code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geneshot.errors import InputError, check_choice, check_positive
from geneshot.models._align_st_config import ALIGN_ST_DEFAULTS
from geneshot.models._base import GeneExpressionModule
from geneshot.models._gene_cv import COMMON_FITS, CV_FITS
from geneshot.models._graph import SpotSAGE, spot_edges
from geneshot.models._inputs import GeneInputs, SlideInputs
from geneshot.models._kernel_head import SUPPORT_FITS, KernelHead
from geneshot.models._layers import Block, trim_tokens


def _conv_out(size: int, strides: list[int]) -> int:
    for s in strides:
        size = (size + 2 - 3) // s + 1
    return size


class NDAIFE(nn.Module):
    """Nuclei Distribution Aware Image Feature Extractor (paper-notes §2.2).

    ``h = h_g + CrossAttn(q=h_g, k=v=nuclei tokens)`` [P residual, §2.2]. Reading (a) of §2.2/§5.3 is taken: the
    F_conv output map is kept as ``s x s`` spatial tokens (with a learnable position embedding [I])
    so the attention is not degenerate. The global feature ``h_g`` is the frozen patch feature
    through a linear projection [I, §5.1]. The attention's output projection starts at zero, so the
    branch starts as the identity and learns how much nuclei context to add [I] (on a synthetic task
    both this and dropping a post-residual LayerNorm trained better).
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        d = cfg["d_model"]
        self.use_nuclei = bool(cfg["use_ndaife"])
        # A plain linear projection of the frozen feature, as SGN's first layer [C]: on a synthetic
        # text-conditioned task it beat LayerNorm/MLP variants (unseen-gene PCC 0.81 vs 0.70-0.77).
        self.global_proj = nn.Linear(cfg["d_img"], d)
        if not self.use_nuclei:
            return
        channels, strides = list(cfg["conv_channels"]), list(cfg["conv_strides"])
        if len(channels) != len(strides):
            raise InputError(
                None,
                "model config 'conv_channels' and 'conv_strides' differ in length",
                "give one stride per conv layer",
            )
        layers: list[nn.Module] = []
        prev = cfg["nuclei_channels"]
        for c, s in zip(channels, strides, strict=True):
            layers += [
                nn.Conv2d(prev, c, 3, stride=s, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
            ]
            prev = c
        self.conv = nn.Sequential(*layers)
        self.nuclei_shape = (cfg["nuclei_channels"], cfg["nuclei_size"], cfg["nuclei_size"])
        side = _conv_out(cfg["nuclei_size"], strides)
        # Keys/values are projected straight from the conv channels (kdim/vdim), which saves a
        # separate token projection: the K/V projections over N*s*s tokens dominate NDAIFE's cost.
        self.pos = nn.Parameter(torch.zeros(1, side * side, prev))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.attn = nn.MultiheadAttention(d, cfg["n_heads"], kdim=prev, vdim=prev, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)

    def forward(self, image: torch.Tensor, nuclei: torch.Tensor | None) -> torch.Tensor:
        """Fused patch features ``(N, d_model)``."""
        hg = self.global_proj(image)
        if not self.use_nuclei:
            return hg
        if nuclei is None:
            # Fallback when no nuclei maps were prepared: the residual branch contributes nothing.
            return hg
        if tuple(nuclei.shape[1:]) != self.nuclei_shape:
            raise InputError(
                None,
                f"SlideInputs.nuclei has maps of shape {tuple(nuclei.shape[1:])}, the model expects {self.nuclei_shape}",
                "set model config 'nuclei_channels'/'nuclei_size' to match the prepared maps",
            )
        f = self.conv(nuclei)
        tokens = f.flatten(2).transpose(1, 2) + self.pos
        a, _ = self.attn(hg.unsqueeze(1), tokens, tokens, need_weights=False)
        return hg + a.squeeze(1)


class PGGP(nn.Module):
    """Pathology-Guided Genomic Prompter (paper-notes §2.3).

    Text stream [P]: ``Linear(D_T -> d)`` then ``n_text_layers`` transformer layers over
    ``[CLS; P_text; tokens]`` with a key-padding mask. Visual stream [I, §2.3 "MaPLe-like"]: learnable
    visual prompts prepended to the slide's fused patch features, a parallel transformer run once
    per slide. Layer ``l``'s visual prompt outputs go through ``f_proj^(l)`` and are fused into the
    text prompts before text layer ``l``: ``P_text <- (1-alpha) P_text + alpha f_proj(P_vis^(l))``
    [I, §5.5], so the prompts are refined ``n_text_layers`` times. We use the visual layer's
    *output* (not input) so that even the first fusion carries slide content [I].

    Ablations: without visual prompts the text prompts are plain learnable tokens; without text
    prompts but with visual ones, the prompt slots hold only ``f_proj(P_vis^(l))`` (alpha = 1);
    without both, the encoder runs on ``[CLS; tokens]``.
    """

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        d, n_layers = cfg["d_model"], cfg["n_text_layers"]
        self.alpha = float(cfg["alpha"])
        self.pool, self.max_tokens = int(cfg["token_pool"]), cfg["max_tokens"]
        self.use_text = bool(cfg["use_text_prompts"])
        self.use_visual = bool(cfg["use_visual_prompts"])
        self.n_prompts = cfg["n_prompts"] if (self.use_text or self.use_visual) else 0

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(
                Block(d, cfg["n_heads"], cfg["mlp_ratio"], cfg["dropout"]) for _ in range(n_layers)
            )

        self.token_proj = nn.Linear(cfg["d_text"], d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.trunc_normal_(self.cls, std=0.02)
        if self.use_text:
            self.text_prompts = nn.Parameter(torch.zeros(1, self.n_prompts, d))
            nn.init.trunc_normal_(self.text_prompts, std=0.02)
        self.text_layers = blocks()
        if self.use_visual:
            self.visual_prompts = nn.Parameter(torch.zeros(1, self.n_prompts, d))
            nn.init.trunc_normal_(self.visual_prompts, std=0.02)
            self.visual_layers = blocks()
            self.f_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d)

    def visual_stream(self, h: torch.Tensor) -> list[torch.Tensor] | None:
        """Per-layer visual prompts projected to text space, each ``(n_prompts, d)``."""
        if not self.use_visual:
            return None
        x = torch.cat([self.visual_prompts, h.unsqueeze(0)], dim=1)
        out = []
        for layer, proj in zip(self.visual_layers, self.f_proj, strict=True):
            x = layer(x)
            out.append(proj(x[0, : self.n_prompts]))
        return out

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, visual: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """Gene embeddings from the final CLS token, ``(G, d)`` [I, §2.3]."""
        tokens, mask = trim_tokens(tokens, mask, self.max_tokens, self.pool)
        x = self.token_proj(tokens)
        g, p = x.shape[0], self.n_prompts
        parts = [self.cls.expand(g, -1, -1)]
        if self.use_text:
            parts.append(self.text_prompts.expand(g, -1, -1))
        elif p:
            parts.append(x.new_zeros(g, p, x.shape[-1]))  # filled by the visual prompts below
        seq = torch.cat([*parts, x], dim=1)
        keep = torch.cat([mask.new_ones(g, 1 + p), mask], dim=1)
        for i, layer in enumerate(self.text_layers):
            if visual is not None:
                pv = visual[i].unsqueeze(0)
                prompts = (
                    (1 - self.alpha) * seq[:, 1 : 1 + p] + self.alpha * pv
                    if self.use_text
                    else pv.expand(g, -1, -1)
                )
                seq = torch.cat([seq[:, :1], prompts, seq[:, 1 + p :]], dim=1)
            seq = layer(seq, keep)
        return self.norm(seq[:, 0])


class ASIG(nn.Module):
    """Adaptive Semantic Interaction Graph (paper-notes §2.4).

    Cosine similarity among all gene embeddings (output genes and context genes) [I, §5.6]; each
    output gene takes its ``top_k`` most similar *other* genes (self excluded [I]). KGAT-style gated
    attention [I, §2.4 default]: ``e_ij = (W2 Z_j)^T tanh(W1 Z_i * W2 Z_j + b)``, softmax over the
    neighbours, ``Z_i^N = sum_j pi_ij Z_j`` and output ``W_f [Z_i || Z_i^N]`` [P].
    """

    def __init__(self, d: int, top_k: int) -> None:
        super().__init__()
        self.top_k = int(top_k)
        self.w1 = nn.Linear(d, d, bias=False)
        self.w2 = nn.Linear(d, d, bias=False)
        self.b = nn.Parameter(torch.zeros(d))
        self.w_f = nn.Linear(2 * d, d)

    def neighbours(self, z_all: torch.Tensor, n_out: int) -> torch.Tensor:
        """Indices ``(n_out, k)`` into ``z_all`` of each output gene's top-k neighbours."""
        k = min(self.top_k, z_all.shape[0] - 1)
        zn = F.normalize(z_all.detach(), dim=1)
        sim = zn[:n_out] @ zn.T
        idx = torch.arange(n_out, device=z_all.device)
        sim[idx, idx] = -torch.inf
        return sim.topk(k, dim=1).indices

    def forward(self, z_all: torch.Tensor, n_out: int) -> torch.Tensor:
        """Refined embeddings ``(n_out, d)`` of the first ``n_out`` rows of ``z_all``."""
        zi = z_all[:n_out]
        if z_all.shape[0] < 2 or self.top_k < 1:
            return self.w_f(torch.cat([zi, torch.zeros_like(zi)], dim=-1))
        zj = z_all[self.neighbours(z_all, n_out)]  # (n_out, k, d)
        w2zj = self.w2(zj)
        e = (w2zj * torch.tanh(self.w1(zi).unsqueeze(1) * w2zj + self.b)).sum(-1)
        pi = torch.softmax(e, dim=1)
        return self.w_f(torch.cat([zi, (pi.unsqueeze(-1) * zj).sum(1)], dim=-1))


class AlignST(GeneExpressionModule):
    """ALIGN-ST: NDAIFE -> PGGP -> ASIG on the gene side, GraphSAGE on the spot side, a head.

    Parameters
    ----------
    **config
        Keys of :data:`ALIGN_ST_DEFAULTS` (missing keys take the default).

    Notes
    -----
    Two heads (config ``head``). ``"kernel"`` (default, geneshot's [I]): see
    :mod:`geneshot.models._kernel_head`; spots are ``[a, s x]`` (fixed principal components
    of the image features and the spot side below), genes are read off the seen genes' ridge
    fits by kernel ridge in gene space, the kernel from the gene encoder's vectors and the
    gene side below (PGGP, then ASIG over output and context genes together).
    ``"dot"``, the paper's head [I, §2.5] (model ``align-st-paper``): ``y = z_i . w_c + b_c``
    where ``w_c`` is the ASIG output, L2-normalised when ``normalize_gene`` (default, as SGN [C]; it keeps unseen genes' weights on the scale of the
    seen ones, so the prediction scale lives on the spot side), and ``b_c = Linear(F_c)`` (a
    per-gene bias from the gene side, as SGN). The spot side [I, §2.5 "exactly as SGN"]:
    projection, ``n_graph_layers`` residual hetero-SAGE layers over 'near' + 'knn' edges, linear.
    Refined patch features from the visual stream do not feed the spot side [I, §2.3].
    """

    def __init__(self, **config) -> None:
        super().__init__()
        cfg = {**ALIGN_ST_DEFAULTS, **config}
        if cfg["head"] not in ("dot", "kernel"):
            raise InputError(None, f"unknown ALIGN-ST head {cfg['head']!r}", "use 'dot' or 'kernel'")
        # checked here for both heads: the dot head ignores them, but a typo is still a typo
        check_choice("cv_fits", cfg["cv_fits"], CV_FITS)
        check_choice("ALIGN-ST support_fit", cfg["support_fit"], SUPPORT_FITS)
        check_choice("ALIGN-ST common_fit", cfg["common_fit"], COMMON_FITS)
        check_positive("departure_scale", cfg["departure_scale"])
        check_positive("departure_shrink", cfg["departure_shrink"], allow_zero=True)
        self.config = cfg
        d = cfg["d_model"]
        self.ndaife = NDAIFE(cfg)
        self.pggp = PGGP(cfg)
        self.gene_proj = nn.Linear(d, d)  # CLS -> Z in D_e [I, §2.3 "Output"]
        self.pooled_proj = nn.Linear(cfg["d_text"], d) if cfg["use_pooled"] else None
        self.asig = ASIG(d, cfg["top_k"]) if cfg["use_asig"] else None
        # the dot head's per-gene bias (the kernel head takes each gene's level from the fits)
        self.gene_bias = nn.Linear(d, 1) if cfg["head"] == "dot" else None
        self.gene_shared = nn.Parameter(torch.zeros(d)) if cfg["shared_gene_vector"] else None
        n_mem = int(cfg["gene_memory"])
        self.memory = nn.Embedding(n_mem, d) if n_mem > 0 else None
        if self.memory is not None:
            nn.init.zeros_(self.memory.weight)
        self.spot_in = nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(0.2))
        self.sage = (
            SpotSAGE(d, cfg["n_graph_layers"], residual=True) if cfg["use_spot_graph"] else None
        )
        self.spot_out = nn.Linear(d, d)
        self.kernel = KernelHead(cfg) if cfg["head"] == "kernel" else None
        if cfg["common_component"]:
            self.common_spot = nn.Linear(d, 1)  # m(spot)
            self.common_gene = nn.Linear(d, 2)  # (a_g - 1, gate logit) from the gene vector
            nn.init.zeros_(self.common_gene.weight)
            nn.init.zeros_(self.common_gene.bias)

    # -- two sides, sharing the fused patch features h ------------------------------------------
    def _spots(self, h: torch.Tensor, slide: SlideInputs) -> torch.Tensor:
        x = self.spot_in(h)
        if self.sage is not None:
            edges = spot_edges(
                slide.grid, slide.image, self.config["near_max"], self.config["knn_k"], slide.near
            )
            x = self.sage(x, edges)
        return self.spot_out(x)

    def _genes(
        self, genes: GeneInputs, context: GeneInputs | None, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # Context genes join the ASIG graph but are not output [I, §5.7: unseen + seen at test].
        use_context = context is not None and context.n_genes > 0 and self.asig is not None
        z = self._embed_with_context(genes, context if use_context else None, h)
        f = self.asig(z, genes.n_genes) if self.asig is not None else z
        if self.gene_shared is not None:
            f = f + self.gene_shared
        b = self.gene_bias(f).squeeze(-1)
        # (a_g - 1, gate logit) of the common component, (G, 2); None when off
        heads = self.common_gene(f) if self.config["common_component"] else None
        w = F.normalize(f, dim=-1) if self.config["normalize_gene"] else f
        return w, b, heads

    def _embed_with_context(
        self, genes: GeneInputs, context: GeneInputs | None, h: torch.Tensor
    ) -> torch.Tensor:
        """Z of the output genes, then of the context genes (if any), in one tensor."""
        visual = self.pggp.visual_stream(h)
        z = self._embed(genes, visual, drop=self.training)
        if context is None:
            return z
        # Context genes are fixed for this step [I]: no gradient through them, which makes a
        # large context (closer to the test-time set of all seen genes) affordable in training.
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(self.config["context_grad"])):
            zc = self._embed(context, visual)
        return torch.cat([z, zc])

    def _embed(self, genes: GeneInputs, visual, drop: bool = False) -> torch.Tensor:
        """Z for a gene set, in chunks (bounds memory with thousands of context genes)."""
        chunk = int(self.config["gene_chunk"])
        z = torch.cat(
            [
                self.pggp(genes.tokens[i : i + chunk], genes.mask[i : i + chunk], visual)
                for i in range(0, genes.n_genes, chunk)
            ]
        )
        z = self.gene_proj(z)
        if self.pooled_proj is not None:
            z = z + self.pooled_proj(genes.pooled)
        if self.memory is not None and genes.ids is not None:
            has = genes.ids >= 0
            if drop and self.config["memory_drop"] > 0:
                has = has & (torch.rand(has.shape, device=has.device) >= self.config["memory_drop"])
            mem = self.memory(genes.ids.clamp(min=0)) * has.unsqueeze(-1)
            z = z + mem
        return z

    # -- the kernel head (models/_kernel_head.py) -------------------------------------------
    @property
    def spread_is_uncertainty(self) -> bool:
        """Not with the kernel head: it predicts by kernel ridge over the seen genes' stored
        fits, and dropout and seeds move only the small learned share of its spot vectors (a
        run on C2-C5 spread 7e-6 to 2e-4 over 16 dropout passes on C6, against absolute errors
        of about 1.4, rank correlation with them -0.03; BENCHMARKS.md, session 17)."""
        return self.kernel is None

    @property
    def uses_support(self) -> bool:
        """True when the head reads the seen genes' fits (the trainer passes their targets)."""
        return self.kernel is not None

    def set_anchor(self, features) -> None:
        """Kernel head: principal axes of the training features (called once before training)."""
        self.kernel.set_anchor(features)

    @torch.no_grad()
    def choose_kernel_start(
        self,
        slides: list[SlideInputs],
        targets: list[torch.Tensor],
        masks: list[torch.Tensor],
        genes: GeneInputs,
        top: int = 400,
        n_rows: int = 600,
    ) -> dict:
        """Kernel head: start its kernel where the gene CV puts it (:meth:`KernelHead.choose_start`).

        ``targets`` hold ``genes``' columns only; the CV scores ``n_rows`` random ``masks`` spots.
        """
        was = self.training
        self.eval()
        try:
            u = torch.cat([self._kernel_spots(s)[m] for s, m in zip(slides, masks, strict=True)])
            y = torch.cat([t[m] for t, m in zip(targets, masks, strict=True)])
        finally:
            self.train(was)
        rng = np.random.default_rng(0)
        rows = torch.from_numpy(np.sort(rng.permutation(len(u))[:n_rows])).to(u.device)
        section = None
        if self.config["cv_fits"] == "out-of-section":
            counts = [int(m.sum()) for m in masks]
            section = np.repeat(np.arange(len(counts)), counts)
        return self.kernel.choose_start(u, y, genes.pooled, genes.symbols, rows, top, section)

    @torch.no_grad()
    def fit_support(
        self,
        slides: list[SlideInputs],
        targets: list[torch.Tensor],
        masks: list[torch.Tensor],
        final: bool = False,
    ) -> None:
        """Kernel head: fit and store every seen gene's ridge on the ``masks`` spots.

        ``final``: the fits kept for prediction, with the config's ``support_fit`` rule (per
        epoch, for validation, the learned penalty: per-gene GCV costs ~2 s per fit), and
        the training spots' statistics the departure factor reads. The common pattern
        (``common_fit="gcv"``) is fitted either way.
        """
        was = self.training
        self.eval()
        try:
            u = torch.cat([self._kernel_spots(s)[m] for s, m in zip(slides, masks, strict=True)])
            y = torch.cat([t[m] for t, m in zip(targets, masks, strict=True)])
            fit = self.kernel.fit_stored if final else self.kernel.fit
            self.kernel.store_support(fit(u, y))
            self.kernel.final = final
            # every epoch too, so that validation predicts as prediction will (one ridge of
            # one target: cheap)
            self.kernel.store_common(u, y)
            if final:
                self.kernel.store_spot_stats(u)
        finally:
            self.train(was)

    def _kernel_spots(self, slide: SlideInputs, h: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ndaife(slide.image, slide.nuclei) if h is None else h
        return self.kernel.spots(slide.image, self._spots(h, slide))

    def kernel_spots(self, slide: SlideInputs) -> torch.Tensor:
        """Kernel head: the spot vectors ``u`` ``(N, k + d)`` the seen genes are fitted on."""
        return self._kernel_spots(slide)

    def _kernel_genes(
        self,
        genes: GeneInputs,
        context: GeneInputs | None,
        h: torch.Tensor,
        fit_on: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gene weights ``(G, k + d)`` and biases ``(G,)`` over the kernel head's spot vectors.

        ``fit_on`` (training): spot vectors and the context genes' targets to fit them on;
        None: the stored fits of the seen genes.
        """
        if context is None or context.n_genes == 0:
            raise InputError(None, "ALIGN-ST's kernel head got no context genes", "pass the seen genes as context")
        z_all = self._embed_with_context(genes, context, h)
        if self.asig is not None:
            z_all = self.asig(z_all, z_all.shape[0])
        zq, zs = z_all[: genes.n_genes], z_all[genes.n_genes :]
        if fit_on is not None:  # training: fit the context genes on the given spots
            w = self.kernel.fit(*fit_on)
        else:
            w = self.kernel.stored(context.ids)
        symbols = (genes.symbols, context.symbols)
        a = self.kernel.mixing(genes.pooled, zq, context.pooled, zs, symbols)
        # prediction over the stored fits may read the common pattern from its own fit, and
        # scales the departure from it once the final fits are stored (training, and its
        # validation over each epoch's fits, fit and score seen genes: factor 1). Until
        # session 10 each epoch's validation ran with common_w still 0; that changed only
        # the logged plain PCC, not the selection: the gene-specific score removes each
        # spot's mean over the genes, and with it any common pattern
        common = self.kernel.stored_common if fit_on is None else None
        final = fit_on is None and self.kernel.final
        scale = self.kernel.departure_scale if final else 1.0
        shrink = self.kernel.departure_shrink if final else 0.0
        weights, bias = self.kernel.gene_weights(
            w, a, common, scale, shrink, self.kernel.spot_stats
        )
        # for the trainer's gene-vector cosine: the vectors that multiply the spot vectors
        # (prediction = u . w_g + b_g), not the gene embeddings inside the kernel
        self.last_gene_vectors = weights.detach()
        return weights, bias

    # -- public interface ---------------------------------------------------------------------
    def encode_spots(self, slide: SlideInputs) -> torch.Tensor:
        """Spot embeddings ``(N, d_model)`` (kernel head: ``(N, k + d_model)``)."""
        if self.kernel is not None:
            return self._kernel_spots(slide)
        return self._spots(self.ndaife(slide.image, slide.nuclei), slide)

    def encode_genes(
        self, genes: GeneInputs, slide: SlideInputs, context: GeneInputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gene weights ``(G, d_model)`` and biases ``(G,)``; they depend on the slide (PGGP)."""
        h = self.ndaife(slide.image, slide.nuclei)
        if self.kernel is not None:
            return self._kernel_genes(genes, context, h, None)
        return self._genes(genes, context, h)[:2]

    def forward(
        self,
        slide: SlideInputs,
        genes: GeneInputs,
        context: GeneInputs | None = None,
        support: tuple[torch.Tensor, torch.Tensor] | None = None,
        fit_on: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Predicted expression ``(N, G)``; NDAIFE runs once for both sides.

        Kernel head, training: ``support``, the context genes' targets ``(N, C)`` on this
        slide and the spots ``(N,)`` bool to fit them on; or ``fit_on``, spot vectors
        (:meth:`kernel_spots`) and the context genes' targets of spots elsewhere (other
        sections). Without either, the stored fits of the seen genes are used.
        """
        h = self.ndaife(slide.image, slide.nuclei)
        if self.kernel is not None:
            u = self._kernel_spots(slide, h)
            if support is not None:
                y, fit = support
                fit_on = (u[fit], y[fit])
            w, b = self._kernel_genes(genes, context, h, fit_on)
            return u @ w.T + b
        w, b, heads = self._genes(genes, context, h)
        # kept for diagnostics (the trainer's gene-vector cosine) without a second text pass
        self.last_gene_vectors = w.detach()
        x = self._spots(h, slide)
        if heads is None:
            return x @ w.T + b
        a, gate = heads.unbind(-1)
        # softplus(gate + log(e - 1)) starts at 1: the plain ALIGN-ST head plus a common term
        s = F.softplus(gate + 0.5413)
        return self.common_spot(x) * (1.0 + a) + (x @ w.T) * s + b
