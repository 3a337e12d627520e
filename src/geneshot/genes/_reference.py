"""An expression atlas as gene knowledge: read it, normalise it like the targets, summarise it.

A reference is any raw-count matrix of the same tissue that measured the genes a user wants
— single cells, spots or bulk samples of *other* patients. How an unseen gene co-varies
with the seen genes there is knowledge no description of the gene carries. Values are
normalised like the library-size targets (counts per 10k, ``log1p``) so that levels carry
over to predictions.

Large atlases are read in row chunks from the ``.h5ad`` file (``X`` or
``layers["counts"]``, dense or CSR); only the normalised float32 CSR is kept, cached by
the file's content hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from geneshot._constants import Key
from geneshot.cache import Cache, atomic_path, fingerprint
from geneshot.errors import InputError

log = logging.getLogger(__name__)

REFERENCE_VERSION = "reference-v1"  # bump when reading or normalisation changes
SAMPLE_COLUMNS = ("sample", "patient", "donor", "section")
SYMBOL_COLUMNS = ("gene_symbols", "feature_name", "gene_name", "symbol", "gene")
SCALE = 1e4  # counts per 10k, as the library-size targets
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9._\-]*$")
_CHUNK = 10_000  # rows per read: bounds the dense / float64 working set
_FIX_COUNTS = "give raw counts (non-negative integers: adata.raw or a 'counts' layer), not normalised or scaled values"


@dataclass
class Reference:
    """A normalised reference: rows (cells, spots or samples) x genes.

    Attributes
    ----------
    X
        ``(n_obs, n_genes)`` float32 CSR, ``log1p(counts / row total * 1e4)``.
    genes
        Gene symbols, the columns of ``X`` (unique).
    samples
        ``(n_obs,)`` sample label of each row (``"all"`` when the file has none).
    source
        Where it came from (a path, or ``sections:`` and the section ids).
    digest
        Content hash of the raw counts (file bytes, or the sections' counts and names).
    """

    X: sp.csr_matrix
    genes: list[str]
    samples: np.ndarray
    source: str
    digest: str
    meta: dict = field(default_factory=dict)

    @property
    def n_obs(self) -> int:
        """Number of rows."""
        return int(self.X.shape[0])

    def describe(self) -> dict:
        """What the data contract and the provenance record about the reference."""
        return {
            "source": self.source,
            "sha256": self.digest,
            "n_obs": self.n_obs,
            "n_genes": len(self.genes),
            "samples": sorted({str(s) for s in self.samples}),
            "genes_sha256": hashlib.sha256("\n".join(self.genes).encode()).hexdigest(),
            **({"permuted": self.meta["permuted"]} if "permuted" in self.meta else {}),
        }


# ----------------------------------------------------------------------------- normalisation


def _check_counts(data: np.ndarray, where: object) -> None:
    """Raise unless ``data`` (the stored values of a chunk) are non-negative integers."""
    if not data.size:
        return
    if not np.all(np.isfinite(data)) or data.min() < 0:
        raise InputError(where, "reference has negative or non-finite values", _FIX_COUNTS)
    if np.any(np.abs(data - np.round(data)) > 1e-6):
        raise InputError(
            where,
            "reference values are not counts (non-integer values: log-normalised?)",
            _FIX_COUNTS,
        )


def _normalise(
    counts: sp.csr_matrix, total: np.ndarray | None = None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """log1p counts-per-10k of a row block; rows without counts are dropped (returned mask)."""
    if total is None:
        total = np.asarray(counts.sum(1)).ravel()
    keep = total > 0
    scale = np.where(keep, SCALE / np.where(keep, total, 1.0), 0.0)
    out = sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float64)
    np.log1p(out.data, out=out.data)
    out = sp.csr_matrix(out[keep], dtype=np.float32)
    out.eliminate_zeros()
    return out, keep


def _merge_matrix(names: list[str]) -> tuple[sp.csr_matrix, list[str]]:
    """``(n_names, n_unique)`` 0/1 matrix summing the counts of columns sharing a symbol.

    Several Ensembl ids can map to one symbol; their counts add up (before normalising).
    Empty or missing symbols are dropped.
    """
    pos: dict[str, int] = {}
    rows, cols = [], []
    for i, g in enumerate(names):
        if not g or g.lower() in ("nan", "none"):
            continue
        rows.append(i)
        cols.append(pos.setdefault(g, len(pos)))
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(pos)))
    return m, list(pos)


def _symbols(var_names: Sequence[str], var, where: object) -> list[str]:
    """Gene symbols of the columns: var_names, or a symbol column when those are Ensembl ids."""
    names = [str(g) for g in var_names]
    head = names[:2000]
    if sum(bool(_ENSEMBL.match(g)) for g in head) > 0.5 * len(head):
        for col in SYMBOL_COLUMNS:
            if col in getattr(var, "columns", ()):
                return [str(s) for s in var[col]]
        raise InputError(
            where,
            "reference genes are Ensembl ids and var has no gene-symbol column (geneshot's gene table has no Ensembl ids to map them)",
            f"add the symbols as a var column named one of {', '.join(SYMBOL_COLUMNS)}, or set var_names to symbols",
        )
    if sum(bool(_SYMBOL.match(g)) and not g.isdigit() for g in head) < 0.5 * len(head):
        raise InputError(
            where,
            f"reference gene names are neither symbols nor Ensembl ids (e.g. {', '.join(head[:3])})",
            "set var_names to gene symbols (or Ensembl ids with a symbol column)",
        )
    return names


# ----------------------------------------------------------------------------- readers


def _row_reader(f, path: Path):
    """``(n_obs, read(start, stop) -> csr)`` for ``layers/counts`` when present, else ``X``."""
    from anndata.io import sparse_dataset

    node = f["layers"]["counts"] if "layers" in f and "counts" in f["layers"] else f.get("X")
    if node is None:
        raise InputError(
            path, "reference has no X and no layers['counts']", "write the counts into X"
        )
    enc = node.attrs.get("encoding-type", "array") if hasattr(node, "attrs") else "array"
    if enc in ("csr_matrix", "csc_matrix"):
        ds = sparse_dataset(node)
        if enc == "csc_matrix":
            # row slices of a CSC file read every column; convert once (memory: the raw matrix)
            log.warning("%s: counts are stored column-wise (CSC); reading them whole", path)
            whole = sp.csr_matrix(ds.to_memory())
            return whole.shape[0], lambda a, b: whole[a:b]
        return ds.shape[0], lambda a, b: sp.csr_matrix(ds[a:b])
    return node.shape[0], lambda a, b: sp.csr_matrix(np.asarray(node[a:b]))


def _read_counts_file(path: Path, sample_key: str | None) -> dict[str, np.ndarray]:
    """Read and normalise an h5ad in row chunks (the uncached part of :func:`read_reference`)."""
    import h5py
    from anndata.io import read_elem

    try:
        f = h5py.File(path, "r")
    except OSError:
        raise InputError(
            path, "not an .h5ad (HDF5) file", "write the reference with anndata's write_h5ad"
        ) from None
    with f:
        try:
            obs, var = read_elem(f["obs"]), read_elem(f["var"])
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(
                path,
                f"not a readable .h5ad (obs/var: {err})",
                "write the reference with anndata's write_h5ad",
            ) from None
        n_obs, read = _row_reader(f, path)
        if n_obs == 0 or len(var) == 0:
            raise InputError(
                path,
                f"reference is empty ({n_obs} rows x {len(var)} genes)",
                "give a reference with cells or spots and genes",
            )
        merge, genes = _merge_matrix(_symbols(var.index, var, path))
        key = sample_key or next((c for c in SAMPLE_COLUMNS if c in obs.columns), None)
        if sample_key and sample_key not in obs.columns:
            raise InputError(
                path,
                f"obs has no column {sample_key!r}",
                f"use one of {', '.join(map(str, obs.columns))}",
            )
        samples = obs[key].astype(str).to_numpy() if key else np.full(n_obs, "all")
        blocks, keeps = [], []
        for start in range(0, n_obs, _CHUNK):
            chunk = read(start, min(start + _CHUNK, n_obs))
            _check_counts(chunk.data, path)
            # library size over every column of the file, like the targets' total counts
            x, keep = _normalise(chunk @ merge, np.asarray(chunk.sum(1)).ravel())
            blocks.append(x)
            keeps.append(keep)
    X = sp.vstack(blocks, format="csr")
    if X.shape[0] == 0:
        raise InputError(
            path, "every reference row has zero counts", "give a reference with counts"
        )
    return _pack(X, genes, np.asarray(samples)[np.concatenate(keeps)])


def _pack(X: sp.csr_matrix, genes: list[str], samples: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "data": X.data.astype(np.float32),
        "indices": X.indices.astype(np.int32),
        "indptr": X.indptr.astype(np.int64),
        "shape": np.asarray(X.shape, np.int64),
        "genes": np.asarray(genes, dtype=str),
        "samples": np.asarray(samples, dtype=str),
    }


def _unpack(z: dict[str, np.ndarray], source: str, digest: str) -> Reference:
    X = sp.csr_matrix(
        (z["data"], z["indices"], z["indptr"]), shape=tuple(int(s) for s in z["shape"])
    )
    return Reference(X, [str(g) for g in z["genes"]], np.asarray(z["samples"]), source, digest)


def read_reference(
    path: str | os.PathLike, *, cache: Cache | None = None, sample_key: str | None = None
) -> Reference:
    """Read a raw-count ``.h5ad`` (cells or spots x genes) as a :class:`Reference`.

    Parameters
    ----------
    path
        ``.h5ad`` with raw counts in ``layers["counts"]`` or ``X`` (dense or CSR), gene
        symbols as ``var_names`` (or Ensembl ids with a symbol column, one of
        :data:`SYMBOL_COLUMNS`).
    cache
        Where the normalised matrix is cached, keyed by the file's content hash.
    sample_key
        ``obs`` column naming each row's sample (default: the first of
        :data:`SAMPLE_COLUMNS` present, else every row is ``"all"``).

    Raises
    ------
    InputError
        Missing, empty or non-h5ad file; no rows or genes; values that are not counts;
        gene names that are neither symbols nor Ensembl ids with a symbol column.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "reference file does not exist", "check the --reference path")
    if path.is_dir() or path.stat().st_size == 0:
        raise InputError(path, "reference file is empty or a folder", "give an .h5ad of raw counts")
    digest = fingerprint(path)
    parts = {"v": REFERENCE_VERSION, "file": digest, "sample_key": sample_key}
    cache = cache or Cache()
    z = cache.arrays("reference", parts, lambda: _read_counts_file(path, sample_key))
    return _unpack(z, str(path), digest)


def _section_name(adata) -> str:
    libs = list(adata.uns.get(Key.UNS_SPATIAL, {})) if hasattr(adata, "uns") else []
    if len(libs) == 1:
        return str(libs[0])
    if Key.SECTION in adata.obs:
        return str(adata.obs[Key.SECTION].iloc[0])
    raise InputError(
        None,
        "a reference section has no section id (uns['spatial'] or obs['section'])",
        "pass sections read with geneshot.read",
    )


def reference_from_sections(sections: Sequence, *, cache: Cache | None = None) -> Reference:
    """A :class:`Reference` from section AnnDatas of raw counts; each row's sample is its section id.

    The library size is ``obs["total_counts"]`` when present (every measured gene, as the
    targets), else the row sum. Used by the benchmark, whose reference is the count tables of
    patients in neither the training nor the test sections. Cached by a hash of the counts.
    """
    if not sections:
        raise InputError(None, "no sections for the reference", "give at least one count table")
    h = hashlib.blake2b(REFERENCE_VERSION.encode(), digest_size=16)
    names = []
    for a in sections:
        sid = _section_name(a)
        names.append(sid)
        c = sp.csr_matrix(a.X)
        h.update(sid.encode())
        h.update("\n".join(map(str, a.var_names)).encode())
        for arr in (c.data, c.indices, c.indptr):
            h.update(np.ascontiguousarray(arr).tobytes())
        if Key.TOTAL_COUNTS in a.obs:
            h.update(a.obs[Key.TOTAL_COUNTS].to_numpy(np.float64).tobytes())
    digest = h.hexdigest()

    def build() -> dict[str, np.ndarray]:
        genes = sorted(set().union(*[set(map(str, a.var_names)) for a in sections]))
        pos = {g: i for i, g in enumerate(genes)}
        blocks, samples = [], []
        for a, sid in zip(sections, names):
            c = sp.csr_matrix(a.X, dtype=np.float64)
            _check_counts(c.data, sid)
            cols = np.asarray([pos[str(g)] for g in a.var_names], np.int64)
            total = (
                a.obs[Key.TOTAL_COUNTS].to_numpy(np.float64) if Key.TOTAL_COUNTS in a.obs else None
            )
            x, keep = _normalise(c, total)
            x = sp.csr_matrix((x.data, cols[x.indices], x.indptr), shape=(x.shape[0], len(genes)))
            x.sort_indices()
            blocks.append(x)
            samples += [sid] * int(keep.sum())
        return _pack(sp.vstack(blocks, format="csr"), genes, np.asarray(samples))

    cache = cache or Cache()
    z = cache.arrays("reference", {"v": REFERENCE_VERSION, "sections": digest}, build)
    return _unpack(z, "sections:" + ",".join(names), digest)


def write_reference_h5ad(sections: Sequence, path: str | os.PathLike) -> Path:
    """Write section count tables as one raw-count reference ``.h5ad`` (atomically).

    Rows keep ``obs["sample"]`` (section id) and ``obs["patient"]``; genes are the union
    (zero where a section did not measure a gene). Library sizes are the row sums of the
    written genes, so write every measured gene.
    """
    import anndata as ad
    import pandas as pd

    genes = sorted(set().union(*[set(map(str, a.var_names)) for a in sections]))
    pos = {g: i for i, g in enumerate(genes)}
    blocks, obs = [], []
    for a in sections:
        c = sp.csr_matrix(a.X, dtype=np.float32)
        cols = np.asarray([pos[str(g)] for g in a.var_names], np.int64)
        blocks.append(
            sp.csr_matrix((c.data, cols[c.indices], c.indptr), shape=(c.shape[0], len(genes)))
        )
        sid = _section_name(a)
        patient = (
            a.obs[Key.PATIENT].astype(str).to_numpy()
            if Key.PATIENT in a.obs
            else np.full(a.n_obs, sid)
        )
        obs.append(
            pd.DataFrame(
                {"sample": sid, "patient": patient}, index=[f"{sid}_{i}" for i in range(a.n_obs)]
            )
        )
    X = sp.vstack(blocks, format="csr")
    X.sort_indices()
    out = ad.AnnData(X=X, obs=pd.concat(obs), var=pd.DataFrame(index=genes))
    path = Path(path)
    with atomic_path(path) as tmp:
        out.write_h5ad(tmp)
    return path


# ----------------------------------------------------------------------------- low-rank summary


@dataclass
class GeneAxes:
    """Low-rank summary of a reference around a set of seen genes.

    Attributes
    ----------
    seen
        Seen genes the reference has (the columns the axes are defined on), in order.
    genes
        Every reference gene (columns of ``loadings``).
    axes
        ``(n_seen, k)`` principal axes of the reference's z-scored seen genes.
    loadings
        ``(k, n_genes)``: each reference gene (z-scored) regressed on the row scores.
    mean, sd
        ``(n_genes,)`` level and spread of each gene in the reference.
    common
        ``(n_genes,)`` correlation of each gene with the per-row mean over the z-scored seen
        genes (the common per-spot pattern).
    """

    seen: list[str]
    genes: list[str]
    axes: np.ndarray
    loadings: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    common: np.ndarray

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """Column of each name in ``genes`` (-1 when the reference lacks it)."""
        return gene_positions(self.genes, names)


def gene_positions(genes: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Position of each of ``names`` in ``genes`` (-1 for a name not there), ``int64``."""
    pos = {g: i for i, g in enumerate(genes)}
    return np.asarray([pos.get(g, -1) for g in names], np.int64)


#: genes per level block within which :func:`permute_reference` shuffles the labels
PERMUTE_BLOCK = 20


def permute_reference(ref: Reference, seed: int = 0, block: int = PERMUTE_BLOCK) -> Reference:
    """``ref`` with its gene labels shuffled among genes of a similar level: a control.

    The genes are ordered by their mean over the rows and cut into consecutive blocks of
    ``block``; the labels are permuted within each block (seeded). Each label keeps about
    its level, and the matrix keeps all its structure, but no label names its own gene's
    co-expression any more: a reference-assisted model that scores as well with this
    reference as with the real one is not reading gene-specific knowledge from it. The
    digest changes, so nothing computed from the real reference is reused.
    """
    if block < 2:
        raise InputError(
            None, f"permute_reference block is {block}", "use a block of 2 or more genes"
        )
    rng = np.random.default_rng(seed)
    order = np.argsort(-np.asarray(ref.X.mean(0)).ravel(), kind="stable")  # levels, roughly
    perm = order.copy()
    for start in range(0, len(order), block):
        perm[start : start + block] = rng.permutation(order[start : start + block])
    genes = list(ref.genes)
    shuffled = [""] * len(genes)
    for column, label in zip(order, perm):
        shuffled[column] = genes[label]  # column `column` now carries gene `label`'s name
    return Reference(
        ref.X,
        shuffled,
        ref.samples,
        ref.source,
        f"{ref.digest}:permuted:{seed}:{block}",
        {**ref.meta, "permuted": {"seed": int(seed), "block": int(block)}},
    )


def _column_moments(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and spread over the rows of canonical CSR ``X``, in float64.

    Two passes over the stored values: ``E[x^2] - mean^2`` on float32 data (and scipy's
    float32 sums) lose the spread of a gene whose level is high and nearly constant. The
    implicit zeros of a row each add ``mean^2`` to the squared deviations.
    """
    n, g = X.shape
    data = X.data.astype(np.float64)
    mean = np.bincount(X.indices, weights=data, minlength=g) / max(n, 1)
    dev = np.bincount(X.indices, weights=(data - mean[X.indices]) ** 2, minlength=g)
    zeros = n - np.bincount(X.indices, minlength=g)
    return mean, np.sqrt((dev + zeros * mean**2) / max(n, 1))


#: the spread below which a reference gene counts as flat (log1p CP10k units): it divides
#: z-scores, so a gene seen in one row does not get a huge one
SD_FLOOR = 1e-3


def seen_zscores(
    ref: Reference, seen: Sequence[str], *, max_rows: int = 50_000, seed: int = 0
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """The reference rows used, every gene's mean and spread there, and the seen genes' z-scores.

    Returns ``(X, mean, sd, seen_in, Z)``: ``X`` the rows (a seeded random subset of
    ``max_rows`` for a larger atlas), ``mean`` and ``sd`` ``(n_genes,)`` over them, ``seen_in``
    the seen genes the reference has (in order) and ``Z`` ``(n_rows, len(seen_in))`` their
    z-scores (dense; the spread floored at :data:`SD_FLOOR`). The one rule behind
    :func:`gene_axes` and :func:`geneshot.genes.coexpression_vectors`.

    Raises
    ------
    InputError
        The reference shares fewer than 10 of the seen genes (all, when fewer; at least 2).
    """
    cols = {g: i for i, g in enumerate(ref.genes)}
    seen_in = [g for g in dict.fromkeys(seen) if g in cols]
    if len(seen_in) < min(10, len(seen)) or len(seen_in) < 2:
        raise InputError(
            ref.source,
            f"reference shares only {len(seen_in)} genes with the {len(seen)} seen genes",
            "give a reference of the same species that measured the training genes (gene symbols)",
        )
    X = ref.X
    if X.shape[0] > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_rows, replace=False))
        X = X[rows]
    if not X.has_canonical_format:  # the two-pass spread reads each stored value once
        X = X.copy()
        X.sum_duplicates()
    mean, sd = _column_moments(X)
    sc = np.asarray([cols[g] for g in seen_in])
    Z = (X[:, sc].toarray().astype(np.float64) - mean[sc]) / np.maximum(sd[sc], SD_FLOOR)
    return X, mean, sd, seen_in, Z


def gene_axes(
    ref: Reference,
    seen: Sequence[str],
    k: int = 30,
    *,
    ridge: float = 1e-3,
    max_rows: int = 50_000,
    seed: int = 0,
) -> GeneAxes:
    """Top-``k`` axes of the seen genes in ``ref`` and every reference gene's loadings on them.

    Parameters
    ----------
    ref
        The reference.
    seen
        Seen (training) genes; the reference must share at least 10 of them (all, when
        fewer; at least 2).
    k
        Number of axes (capped by the shared genes and rows).
    ridge
        Relative ridge on the score Gram matrix (``ridge * trace / k``).
    max_rows
        Rows used (a seeded random subset of a larger atlas): the seen-gene block is dense.
    """
    from sklearn.utils.extmath import randomized_svd

    X, mean, sd, seen_in, Z = seen_zscores(ref, seen, max_rows=max_rows, seed=seed)
    sd_safe = np.maximum(sd, SD_FLOOR)
    n = X.shape[0]
    k = int(max(1, min(k, Z.shape[1] - 1, n - 1)))
    U, sv, Vt = randomized_svd(Z, k, random_state=seed)
    scores = U * sv  # (n, k); centred because Z is
    gram = scores.T @ scores
    gram += ridge * np.trace(gram) / k * np.eye(k)
    # scores' X (k, G) without densifying X: the scores are centred, so centring X adds nothing
    sx = np.asarray(X.T @ scores, np.float64).T
    loadings = np.linalg.solve(gram, sx) / sd_safe
    m = Z.mean(1)
    m = (m - m.mean()) / max(float(m.std()), 1e-9)
    common = np.asarray(X.T @ m, np.float64).ravel() / n / sd_safe
    return GeneAxes(seen_in, list(ref.genes), Vt.T, loadings, mean, sd, common)
