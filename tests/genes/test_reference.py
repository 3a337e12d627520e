"""An expression atlas as gene knowledge: reader checks, normalisation, caching, low-rank summary."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from geneshot.cache import Cache
from geneshot.errors import InputError
from geneshot.genes import (
    Reference,
    gene_axes,
    permute_reference,
    read_reference,
    reference_from_sections,
    write_reference_h5ad,
)
from geneshot.genes import _reference as refmod

GENES = [f"G{i}" for i in range(40)]


def _counts(n=60, g=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(rng.gamma(1.0, 2.0, size=(n, g))).astype(np.float32)


def _write(path, X, var_names=GENES, obs=None, var=None, layer=False):
    obs = obs if obs is not None else pd.DataFrame(index=[f"c{i}" for i in range(X.shape[0])])
    var = var if var is not None else pd.DataFrame(index=list(var_names))
    a = ad.AnnData(X=np.zeros_like(X) if layer else X, obs=obs, var=var)
    if layer:
        a.layers["counts"] = X
    a.write_h5ad(path)
    return path


def _expected(X):
    tot = X.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # all-zero rows: dropped by the caller
        return np.log1p(X / tot * 1e4)


@pytest.mark.parametrize("sparse", [False, True])
def test_read_normalises_like_the_targets_in_chunks(tmp_path, monkeypatch, sparse):
    X = _counts()
    X[3] = 0  # a row without counts is dropped
    obs = pd.DataFrame({"patient": ["A"] * 30 + ["B"] * 30}, index=[f"c{i}" for i in range(60)])
    monkeypatch.setattr(refmod, "_CHUNK", 7)  # several chunks
    path = _write(tmp_path / "r.h5ad", sp.csr_matrix(X) if sparse else X, obs=obs)
    ref = read_reference(path, cache=Cache(tmp_path / "c"))
    keep = np.ones(60, bool)
    keep[3] = False
    np.testing.assert_allclose(ref.X.toarray(), _expected(X[keep]), rtol=1e-5)
    assert ref.X.dtype == np.float32 and sp.isspmatrix_csr(ref.X)
    assert ref.genes == GENES and list(ref.samples[:2]) == ["A", "A"] and ref.n_obs == 59
    d = ref.describe()
    assert d["samples"] == ["A", "B"] and d["n_genes"] == 40 and len(d["sha256"]) == 32


def test_counts_layer_wins_and_cache_is_hit(tmp_path):
    X = _counts()
    path = _write(tmp_path / "r.h5ad", X, layer=True)
    cache = Cache(tmp_path / "c")
    a = read_reference(path, cache=cache)
    b = read_reference(path, cache=cache)
    assert cache.misses.get("reference") == 1 and cache.hits.get("reference") == 1
    np.testing.assert_allclose(a.X.toarray(), _expected(X), rtol=1e-5)
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
    # another content -> another entry
    _write(tmp_path / "r.h5ad", X + 1, layer=True)
    read_reference(path, cache=cache)
    assert cache.misses.get("reference") == 2


def test_ensembl_ids_use_a_symbol_column_and_duplicates_add_up(tmp_path):
    X = _counts(g=4)
    ids = ["ENSG00000000003", "ENSG00000000005", "ENSG00000000419", "ENSG00000000457"]
    var = pd.DataFrame({"gene_symbols": ["TSPAN6", "TNMD", "TNMD", "DPM1"]}, index=ids)
    ref = read_reference(_write(tmp_path / "r.h5ad", X, var=var), cache=Cache(tmp_path / "c"))
    assert ref.genes == ["TSPAN6", "TNMD", "DPM1"]
    merged = np.stack([X[:, 0], X[:, 1] + X[:, 2], X[:, 3]], 1)
    np.testing.assert_allclose(ref.X.toarray(), _expected(merged)[merged.sum(1) > 0], rtol=1e-5)


def _err(path, tmp_path):
    with pytest.raises(InputError) as e:
        read_reference(path, cache=Cache(tmp_path / "c"))
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "Fix:" in msg
    return msg


def test_bad_references_are_one_line_errors(tmp_path):
    assert "does not exist" in _err(tmp_path / "missing.h5ad", tmp_path)
    (tmp_path / "empty.h5ad").write_bytes(b"")
    assert "empty" in _err(tmp_path / "empty.h5ad", tmp_path)
    (tmp_path / "text.h5ad").write_text("gene,count\nA,1\n")
    assert "not an .h5ad" in _err(tmp_path / "text.h5ad", tmp_path)
    X = _counts()
    assert "negative" in _err(_write(tmp_path / "neg.h5ad", X - 5), tmp_path)
    assert "not counts" in _err(_write(tmp_path / "log.h5ad", np.log1p(X)), tmp_path)
    ids = [f"ENSG{i:011d}" for i in range(40)]
    msg = _err(_write(tmp_path / "ens.h5ad", X, var_names=ids), tmp_path)
    assert "Ensembl" in msg and "gene_symbols" in msg
    num = [str(i) for i in range(40)]
    assert "neither symbols nor Ensembl" in _err(
        _write(tmp_path / "num.h5ad", X, var_names=num), tmp_path
    )
    assert "0 rows" in _err(_write(tmp_path / "rows.h5ad", np.zeros((0, 40), np.float32)), tmp_path)
    assert "zero counts" in _err(
        _write(tmp_path / "zero.h5ad", np.zeros((5, 40), np.float32)), tmp_path
    )


def _section(name, X, genes=GENES, patient="P"):
    a = ad.AnnData(X=sp.csr_matrix(X), var=pd.DataFrame(index=genes))
    a.obs["patient"] = patient
    a.obs["total_counts"] = X.sum(1) * 2.0  # half the library is in genes not listed here
    a.uns["spatial"] = {name: {"metadata": {}}}
    return a


def test_reference_from_sections_uses_total_counts_and_union_of_genes(tmp_path):
    X1, X2 = _counts(10, 40, 1), _counts(8, 30, 2)
    s1, s2 = _section("D1", X1), _section("E1", X2, GENES[10:])
    cache = Cache(tmp_path / "c")
    ref = reference_from_sections([s1, s2], cache=cache)
    assert ref.genes == sorted(GENES) and list(ref.samples) == ["D1"] * 10 + ["E1"] * 8
    col = {g: i for i, g in enumerate(ref.genes)}
    dense = ref.X.toarray()
    np.testing.assert_allclose(
        dense[:10, [col[g] for g in GENES]],
        np.log1p(X1 / (2 * X1.sum(1, keepdims=True)) * 1e4),
        rtol=1e-5,
    )
    assert np.all(dense[10:, [col[g] for g in GENES[:10]]] == 0)
    assert reference_from_sections([s1, s2], cache=cache).digest == ref.digest
    assert cache.hits.get("reference") == 1
    s2.X = sp.csr_matrix(X2 + 1)
    assert reference_from_sections([s1, s2], cache=cache).digest != ref.digest
    # the written h5ad reads back to the same rows (library = row sums of the written genes)
    path = write_reference_h5ad([s1], tmp_path / "ref.h5ad")
    back = read_reference(path, cache=cache)
    assert back.genes == sorted(GENES) and set(back.samples) == {"D1"}
    np.testing.assert_allclose(
        back.X.toarray()[:, [col[g] for g in GENES]], _expected(X1), rtol=1e-5
    )


def test_gene_axes_recover_a_planted_coexpression(tmp_path):
    # rows driven by 3 hidden programmes; gene U (not seen) follows programme 0
    rng = np.random.default_rng(0)
    n, g = 400, 60
    h = rng.normal(size=(n, 3))
    w = rng.normal(size=(3, g))
    rate = np.exp(1.0 + 0.6 * (h @ w) / np.sqrt(3))
    u = np.exp(1.5 + 0.8 * h[:, :1])
    X = rng.poisson(np.hstack([rate, u])).astype(np.float32)
    genes = [f"S{i}" for i in range(g)] + ["U"]
    ref = read_reference(
        _write(tmp_path / "r.h5ad", X, var_names=genes), cache=Cache(tmp_path / "c")
    )
    ax = gene_axes(ref, genes[:g] + ["NOT_THERE"], k=5)
    assert ax.seen == genes[:g] and ax.loadings.shape == (5, g + 1)
    # U reconstructed from its loadings and the row scores correlates with its real values
    Z = (ref.X[:, :g].toarray() - ax.mean[:g]) / ax.sd[:g]
    scores = Z @ ax.axes
    z_u = scores @ ax.loadings[:, ax.columns(["U"])[0]]
    real = ref.X[:, g].toarray().ravel()
    assert np.corrcoef(z_u, real)[0, 1] > 0.5
    # a shuffled U (no co-expression) is not reconstructed
    perm = X.copy()
    perm[:, g] = rng.permutation(perm[:, g])
    ref2 = read_reference(
        _write(tmp_path / "r2.h5ad", perm, var_names=genes), cache=Cache(tmp_path / "c")
    )
    ax2 = gene_axes(ref2, genes[:g], k=5)
    z2 = ((ref2.X[:, :g].toarray() - ax2.mean[:g]) / ax2.sd[:g]) @ ax2.axes @ ax2.loadings[:, g]
    assert abs(np.corrcoef(z2, ref2.X[:, g].toarray().ravel())[0, 1]) < 0.3
    assert ax.columns(["U", "nope"]).tolist() == [g, -1]
    assert -1 <= ax.common.min() and ax.common.max() <= 1


def test_gene_axes_need_shared_seen_genes(tmp_path):
    ref = read_reference(_write(tmp_path / "r.h5ad", _counts()), cache=Cache(tmp_path / "c"))
    with pytest.raises(InputError, match="shares only 2 genes"):
        gene_axes(ref, ["G1", "G2", "OTHER1", "OTHER2"] + [f"X{i}" for i in range(30)])


def _levelled_reference(n=50, g=100, seed=0) -> Reference:
    """Gene i's values lie around level i / 10, so a label's level tells where it came from."""
    rng = np.random.default_rng(seed)
    x = np.arange(g) / 10 + 0.1 * rng.random((n, g))
    return Reference(sp.csr_matrix(x.astype(np.float32)), [f"G{i}" for i in range(g)], np.array(["s"] * n), "toy", "d0")


def test_permuted_reference_keeps_levels_and_breaks_identity():
    ref = _levelled_reference()
    perm = permute_reference(ref, seed=1, block=10)
    assert perm.X is ref.X and sorted(perm.genes) == sorted(ref.genes)
    assert perm.digest != ref.digest and perm.describe()["permuted"] == {"seed": 1, "block": 10}
    assert "permuted" not in ref.describe()
    moved = [g for g, h in zip(perm.genes, ref.genes) if g != h]
    assert len(moved) > 80  # almost every label names another gene's column
    # each label stays within its block of 10 levels (the columns are ordered by level here)
    for column, label in enumerate(perm.genes):
        assert int(label[1:]) // 10 == column // 10
    assert permute_reference(ref, seed=1, block=10).genes == perm.genes
    assert permute_reference(ref, seed=2, block=10).genes != perm.genes
    with pytest.raises(InputError, match="block"):
        permute_reference(ref, block=1)


def test_spread_is_exact_for_a_high_flat_gene():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, size=(3000, 6)) * (rng.random((3000, 6)) < 0.6)
    x[:, 0] = 7.3  # one gene flat at a high level: E[x^2] - mean^2 in float32 leaves noise
    x = x.astype(np.float32)
    ref = Reference(sp.csr_matrix(x), [f"G{i}" for i in range(6)], np.array(["s"] * 3000), "toy", "d1")
    _, mean, sd, _, _ = refmod.seen_zscores(ref, [f"G{i}" for i in range(6)])
    dense = x.astype(np.float64)
    np.testing.assert_allclose(mean, dense.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sd[1:], dense[:, 1:].std(0), rtol=1e-10)
    assert sd[0] < 1e-9 < refmod.SD_FLOOR  # flat: counted as such, not as a spread of ~1e-3
