"""Plain tensor containers passed between the trainer and every model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from geneshot.errors import InputError


@dataclass
class SlideInputs:
    """One tissue section, ready for a model.

    Attributes
    ----------
    image
        ``(N, D_img)`` float32 frozen patch-encoder features, one row per spot.
    nuclei
        ``(N, C, S, S)`` float32 nuclei-distribution maps, or ``None`` when not prepared.
    grid
        ``(N, 2)`` long ``(array_row, array_col)`` spot grid indices; ``-1`` when unknown.
    near
        Optional ``(2, E)`` long 'near' edges (source, target) that replace the grid
        neighbours; required when the grid is unknown (see
        :func:`~geneshot.models.spatial_edges`).
    """

    image: torch.Tensor
    nuclei: torch.Tensor | None
    grid: torch.Tensor
    near: torch.Tensor | None = None

    @property
    def n_spots(self) -> int:
        """Number of spots ``N``."""
        return int(self.image.shape[0])

    def to(self, device: torch.device | str) -> SlideInputs:
        """Copy to ``device``."""
        nuclei = None if self.nuclei is None else self.nuclei.to(device)
        near = None if self.near is None else self.near.to(device)
        return SlideInputs(self.image.to(device), nuclei, self.grid.to(device), near)

    def validate(self) -> SlideInputs:
        """Check shapes; raise :class:`InputError` naming the field at fault."""
        n = self.image.shape[0]
        if self.image.ndim != 2:
            raise InputError(
                None,
                f"SlideInputs.image has shape {tuple(self.image.shape)}, expected (N, D_img)",
                "pass one feature row per spot",
            )
        if self.grid.shape != (n, 2):
            raise InputError(
                None,
                f"SlideInputs.grid has shape {tuple(self.grid.shape)}, expected ({n}, 2)",
                "pass (array_row, array_col) per spot",
            )
        if self.nuclei is not None and (self.nuclei.ndim != 4 or self.nuclei.shape[0] != n):
            raise InputError(
                None,
                f"SlideInputs.nuclei has shape {tuple(self.nuclei.shape)}, expected ({n}, C, S, S)",
                "pass one nuclei map per spot or None",
            )
        return self


@dataclass
class GeneInputs:
    """Text-encoder states of a set of gene descriptions.

    Attributes
    ----------
    tokens
        ``(G, L, D_T)`` float32 token states.
    mask
        ``(G, L)`` bool, ``True`` marks a real (non-padding) token.
    pooled
        ``(G, D_T)`` float32 pooled sentence embedding.
    ids
        Optional ``(G,)`` long index of each gene in the model's gene memory (its seen training
        genes); ``-1`` for genes without a memory slot (unseen genes). ``None``: no memory.
    symbols
        Optional gene symbols, one per gene, for models that look genes up by name (e.g. in
        a reference expression matrix). ``None``: names not given.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    ids: torch.Tensor | None = None
    symbols: list[str] | None = None

    @property
    def n_genes(self) -> int:
        """Number of genes ``G``."""
        return int(self.tokens.shape[0])

    def select(self, idx) -> GeneInputs:
        """Subset of genes (index array, list, slice or boolean mask), in ``idx`` order."""
        if not isinstance(idx, slice):
            idx = torch.as_tensor(idx, device=self.tokens.device)
            if idx.dtype != torch.bool:
                idx = idx.long()
        ids = None if self.ids is None else self.ids[idx]
        symbols = None
        if self.symbols is not None:
            symbols = list(np.asarray(self.symbols, dtype=object)[idx.cpu().numpy() if torch.is_tensor(idx) else idx])
        return GeneInputs(self.tokens[idx], self.mask[idx], self.pooled[idx], ids, symbols)

    def to(self, device: torch.device | str) -> GeneInputs:
        """Copy to ``device``."""
        ids = None if self.ids is None else self.ids.to(device)
        return GeneInputs(self.tokens.to(device), self.mask.to(device), self.pooled.to(device), ids, self.symbols)

    @staticmethod
    def concat(parts: list[GeneInputs]) -> GeneInputs:
        """Stack gene sets; token length is padded to the longest part."""
        length = max(p.tokens.shape[1] for p in parts)
        tokens, masks = [], []
        for p in parts:
            pad = length - p.tokens.shape[1]
            tokens.append(torch.nn.functional.pad(p.tokens, (0, 0, 0, pad)))
            masks.append(torch.nn.functional.pad(p.mask, (0, pad), value=False))
        ids = None
        if any(p.ids is not None for p in parts):
            ids = torch.cat([p.ids if p.ids is not None else torch.full((p.n_genes,), -1, dtype=torch.long) for p in parts])
        symbols = None
        if all(p.symbols is not None for p in parts):
            symbols = [s for p in parts for s in p.symbols]
        return GeneInputs(torch.cat(tokens), torch.cat(masks), torch.cat([p.pooled for p in parts]), ids, symbols)

    def validate(self) -> GeneInputs:
        """Check shapes; raise :class:`InputError` naming the field at fault."""
        if self.tokens.ndim != 3:
            raise InputError(
                None,
                f"GeneInputs.tokens has shape {tuple(self.tokens.shape)}, expected (G, L, D_T)",
                "pass token states per gene",
            )
        g, length, _ = self.tokens.shape
        if tuple(self.mask.shape) != (g, length):
            raise InputError(
                None,
                f"GeneInputs.mask has shape {tuple(self.mask.shape)}, expected ({g}, {length})",
                "pass one bool per token",
            )
        if self.pooled.ndim != 2 or self.pooled.shape[0] != g:
            raise InputError(
                None,
                f"GeneInputs.pooled has shape {tuple(self.pooled.shape)}, expected ({g}, D_T)",
                "pass one pooled embedding per gene",
            )
        if self.symbols is not None and len(self.symbols) != g:
            raise InputError(
                None,
                f"GeneInputs.symbols has {len(self.symbols)} names for {g} genes",
                "pass one symbol per gene or None",
            )
        return self
