"""Where a gene lies in the genome, as a kernel: genes in the same chromosome arm, region or band.

Genes that lie close together are often expressed together: they share a copy-number change
(a tumour's amplicons and losses, e.g. ERBB2 with GRB7 and STARD3 on 17q12 in HER2+ breast
cancer) or belong to one gene cluster (immunoglobulin, HLA, keratin, histone loci). The
shipped knowledge table names each gene's cytoband (``17q12``, ``6p21.33``); a band is read
as nested levels, chromosome arm (``17q``), region (``17q1``) and band (``17q12``), and two
genes' locus similarity is the weighted share of the levels they have in common, normalised
so that a gene is 1 with itself. A gene outside the table (or without a band) is 0 to every
gene, so it falls back on the other gene knowledge.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import numpy as np
from scipy import sparse

from geneshot.genes._knowledge import load_knowledge, resolve_symbol, split_list

#: weight of each shared level: chromosome arm, region, band (sub-bands are not read)
LOCUS_LEVELS: tuple[tuple[str, float], ...] = (("arm", 0.3), ("region", 0.3), ("band", 0.4))
_BAND = re.compile(r"^(\d{1,2}|X|Y)([pq])(\d)?(\d)?")


def band_levels(band: str) -> tuple[str, ...]:
    """The nested prefixes of one cytoband: ``"17q12.1"`` -> ``("17q", "17q1", "17q12")``.

    Unparsable bands (``"mitochondria"``, an empty string) give ``()``; a band named by arm
    only (``"17q"``) gives ``("17q",)``.
    """
    m = _BAND.match(band.strip())
    if m is None:
        return ()
    chrom, arm, region, sub = m.groups()
    out = [chrom + arm]
    for part in (region, sub):
        if part is None:
            break
        out.append(out[-1] + part)
    return tuple(out)


@cache
def _gene_levels(symbol: str) -> tuple[tuple[int, str], ...]:
    """``(level, prefix)`` pairs of a gene's bands (every band of a gene with several)."""
    canon = resolve_symbol(symbol)
    if canon is None:
        return ()
    bands = [b.split("-")[0] for b in split_list(load_knowledge().loc[canon, "cytoband"])]
    return tuple(sorted({(i, p) for b in bands for i, p in enumerate(band_levels(b))}))


def _vectors(symbols: Sequence[str], vocab: dict[tuple[int, str], int]) -> sparse.csr_matrix:
    weights = [w for _, w in LOCUS_LEVELS]
    rows, cols, vals = [], [], []
    for r, s in enumerate(symbols):
        levels = _gene_levels(s)
        n_bands = max(sum(1 for lv, _ in levels if lv == 0), 1)
        for lv, prefix in levels:
            rows.append(r)
            cols.append(vocab.setdefault((lv, prefix), len(vocab)))
            # a gene with several bands spreads each level's weight over them
            vals.append(np.sqrt(weights[lv] / n_bands))
    return sparse.csr_matrix((vals, (rows, cols)), shape=(len(symbols), max(len(vocab), 1)))


def locus_kernel(rows: Sequence[str], cols: Sequence[str]) -> np.ndarray:
    """Locus similarity ``(len(rows), len(cols))`` in [0, 1] between two lists of gene symbols.

    ``sum_level w_level [same prefix at that level]``, divided by the geometric mean of the
    two genes' self-similarities (1 for a gene with itself; 0 for a gene without a band).
    """
    vocab: dict[tuple[int, str], int] = {}
    a, b = _vectors(rows, vocab), _vectors(cols, vocab)
    a.resize(a.shape[0], len(vocab) or 1)
    b.resize(b.shape[0], len(vocab) or 1)
    k = np.asarray((a @ b.T).todense(), dtype=np.float64)
    na = np.sqrt(np.asarray(a.multiply(a).sum(1)).ravel())
    nb = np.sqrt(np.asarray(b.multiply(b).sum(1)).ravel())
    den = np.outer(na, nb)
    return np.divide(k, den, out=np.zeros_like(k), where=den > 0)
