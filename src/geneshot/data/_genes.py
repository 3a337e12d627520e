"""Gene universe across sections, symbol clean-up and gene selection."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geneshot.errors import InputError

log = logging.getLogger(__name__)

_VERSION_SUFFIX = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+$")  # Ensembl ids carry a ".N" version


def clean_symbol(name: str) -> str:
    """Strip whitespace and Ensembl version suffixes; keep symbol case (e.g. C1orf159)."""
    name = str(name).strip()
    m = _VERSION_SUFFIX.match(name)
    return m.group(1) if m else name


def clean_var_names(adata: ad.AnnData) -> ad.AnnData:
    """Clean gene names and merge duplicates by summing their counts (with a warning)."""
    names = pd.Index([clean_symbol(g) for g in adata.var_names])
    if not names.has_duplicates:
        if not names.equals(adata.var_names):
            adata = adata.copy()
            adata.var_names = names
        return adata
    dups = names[names.duplicated()].unique()
    warnings.warn(
        f"{len(dups)} duplicated gene names merged by summing counts (e.g. {', '.join(map(str, dups[:5]))})",
        stacklevel=2,
    )
    uniq, inverse = np.unique(names.to_numpy(), return_inverse=True)
    # genes x unique-genes indicator: X @ M sums the columns that share a name
    m = sp.csr_matrix((np.ones(len(names), np.float32), (np.arange(len(names)), inverse)), shape=(len(names), len(uniq)))
    x = sp.csr_matrix(adata.X) @ m
    out = ad.AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(uniq, name=adata.var_names.name)), obsm=dict(adata.obsm), uns=adata.uns)
    return out


def gene_universe(sections: Sequence[ad.AnnData], how: str = "union") -> list[ad.AnnData]:
    """Align sections to one gene list.

    Parameters
    ----------
    sections
        Section AnnData objects (raw counts in X).
    how
        ``"union"``: every gene of any section, zero-filled where absent (SGN convention);
        ``"intersection"``: genes measured in every section.

    Returns
    -------
    The sections with identical, alphabetically sorted ``var_names``.
    """
    if how not in ("union", "intersection"):
        raise InputError(None, f"gene universe {how!r} is not known", "use 'union' or 'intersection'")
    sections = [clean_var_names(a) for a in sections]
    sets = [set(a.var_names) for a in sections]
    genes = set.union(*sets) if how == "union" else set.intersection(*sets)
    if not genes:
        raise InputError(None, "the sections share no gene", "check that all sections use gene symbols of one species")
    return [align_genes(a, sorted(genes)) for a in sections]


def align_genes(adata: ad.AnnData, genes: Sequence[str]) -> ad.AnnData:
    """Reorder (and zero-fill) an AnnData's columns to ``genes``."""
    genes = pd.Index(genes)
    if adata.var_names.equals(genes):
        return adata
    pos = adata.var_names.get_indexer(genes)
    present = pos >= 0
    x = sp.csc_matrix(adata.X)
    cols = np.where(present, pos, 0)
    xs = x[:, cols].tocsr()
    if not present.all():
        keep = sp.diags(present.astype(np.float32))
        xs = (xs @ keep).tocsr()
    out = ad.AnnData(X=xs.astype(np.float32), obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(genes, name="gene")), obsm=dict(adata.obsm), uns=adata.uns)
    return out


def gene_means(sections: Sequence[ad.AnnData]) -> pd.Series:
    """Mean raw count per gene over all spots of aligned sections."""
    tot = sum(np.asarray(a.X.sum(axis=0)).ravel() for a in sections)
    n = sum(a.n_obs for a in sections)
    return pd.Series(tot / n, index=sections[0].var_names)


def gene_variances(sections: Sequence[ad.AnnData]) -> pd.Series:
    """Variance of log1p counts per gene over all spots of aligned sections."""
    x = sp.vstack([sp.csr_matrix(a.X) for a in sections]).log1p()
    mean = np.asarray(x.mean(axis=0)).ravel()
    sq = np.asarray(x.multiply(x).mean(axis=0)).ravel()
    return pd.Series(sq - mean**2, index=sections[0].var_names)


def select_genes(
    sections: Sequence[ad.AnnData],
    method: str = "top_mean",
    k: int = 250,
    genes: Sequence[str] | None = None,
) -> list[str]:
    """Choose genes from (training) sections.

    Parameters
    ----------
    sections
        Aligned sections; pass TRAINING sections only, so that no test data leaks in.
    method
        ``"top_mean"`` (SGN: highest mean raw count), ``"top_var"`` (highest variance of
        log1p counts) or ``"list"`` (``genes``, kept in the given order, missing ones reported).
    k
        Number of genes for the top-k methods.
    """
    if method == "list":
        if not genes:
            raise InputError(None, "gene selection 'list' needs a gene list", "pass genes=[...] or --gene-list FILE")
        have = set(sections[0].var_names)
        missing = [g for g in genes if g not in have]
        if missing:
            log.warning("%d of %d listed genes are not measured and are skipped (e.g. %s)", len(missing), len(genes), ", ".join(missing[:5]))
        return [g for g in genes if g in have]
    if method == "top_mean":
        score = gene_means(sections)
    elif method == "top_var":
        score = gene_variances(sections)
    else:
        raise InputError(None, f"gene selection {method!r} is not known", "use top_mean, top_var or list")
    # stable tie-break by name so that selections are reproducible
    order = sorted(score.index, key=lambda g: (-score[g], g))
    return order[:k]


def load_gene_list(path) -> list[str]:
    """Read a gene list file; the one reader behind every ``--gene-list``-like option.

    Formats, by suffix:

    - ``.npy``: a 1-D array of strings, read WITHOUT pickle (an object array is refused, with
      how to re-save it: ``np.save(path, np.asarray(genes, dtype=str))``).
    - ``.csv`` / ``.tsv``: the column named ``gene`` (any case); without such a column the
      file is read as headerless and its first column is taken, so no gene is lost as a header.
    - anything else: one gene per line (several on a line split at commas, tabs or spaces);
      blank lines and ``#`` comments are skipped.

    Names are stripped; duplicates keep their first position.

    Returns
    -------
    Gene names in file order.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "gene list does not exist", "check the path")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        out = _read_npy_list(path)
    elif suffix in (".csv", ".tsv"):
        out = _read_table_list(path, "," if suffix == ".csv" else "\t")
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputError(path, "gene list is not UTF-8 text", "save it as plain text, one gene per line") from None
        # gene symbols hold no spaces or commas, so a line may also list several genes
        out = [g for ln in lines for g in re.split(r"[\s,]+", ln.split("#", 1)[0])]
    out = list(dict.fromkeys(g for g in out if g))
    if not out:
        raise InputError(path, "gene list is empty", "give one gene symbol per line")
    return out


def _read_npy_list(path) -> list[str]:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            # an object array needs pickle to load, which can run code: refuse it
            raise InputError(
                path,
                "gene list is a numpy object array, which cannot be read without pickle",
                "re-save it as strings: np.save(PATH, np.asarray(np.load(PATH, allow_pickle=True), dtype=str))",
            ) from None
        raise InputError(path, f"cannot read .npy gene list ({err})", "save the list as a numpy array of strings") from None
    except OSError as err:
        raise InputError(path, f"cannot read .npy gene list ({err})", "save the list as a numpy array of strings") from None
    if arr.dtype.kind not in "US":
        raise InputError(path, f"gene list array holds {arr.dtype} values, not gene names", "save a numpy array of strings")
    return [(g.decode() if isinstance(g, bytes) else str(g)).strip() for g in np.ravel(arr)]


def _read_table_list(path, sep: str) -> list[str]:
    try:
        df = pd.read_csv(path, sep=sep, header=None, dtype=str, comment="#", skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        return []
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(path, f"gene list table is unreadable ({err})", "save one gene per row, in a column named 'gene'") from None
    header = [str(h).strip().lower() for h in df.iloc[0]] if len(df) else []
    if "gene" in header:
        col = df.iloc[1:, header.index("gene")]
    else:
        col = df.iloc[:, 0]  # headerless: the first row is a gene, not a title
    return [str(g).strip() for g in col.dropna()]
