"""Gene encoders: every registered entry, and what go-tokens must capture."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from geneshot.cache import Cache
from geneshot.encoders.gene import GENE_ENCODERS, annotation_idf, encode_genes, gene_terms
from geneshot.encoders.text import TextEncoder
from geneshot.errors import InputError
from tests.encoders.test_text import FakeEncoder


class WideFake(TextEncoder):
    """Unrelated texts get nearly orthogonal 256-d vectors (no meaning in the text)."""

    def __init__(self, **kw):
        super().__init__("wide-fake", "fake/wide", dim=256, **kw)

    def _load(self):
        self._model = object()

    def _token_lengths(self, texts):
        return np.ones(len(texts), int)

    def _encode_batch(self, texts):
        pooled = np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).normal(size=256) for t in texts]
        ).astype(np.float32)
        return pooled, pooled[:, None].astype(np.float16), np.ones((len(texts), 1), bool)


TEXTS = {
    "KRT8": "keratin 8",
    "KRT18": "keratin 18",
    "COL1A1": "collagen type I alpha 1 chain",
    "ERBB2": "erb-b2 receptor tyrosine kinase 2",
    "GRB7": "growth factor receptor bound protein 7",
    "NOTAGENE1": "NOTAGENE1",
}


def _cos(emb, symbols, a, b):
    p = emb.pooled / np.linalg.norm(emb.pooled, axis=1, keepdims=True)
    return float(p[symbols.index(a)] @ p[symbols.index(b)])


@pytest.mark.parametrize("name", list(GENE_ENCODERS))
def test_every_gene_encoder(tmp_path, name):
    cache = Cache(tmp_path)
    enc = FakeEncoder()
    emb = encode_genes(name, enc, TEXTS, cache)
    n = len(TEXTS)
    assert emb.pooled.shape == (n, 8) and emb.tokens.shape[0] == n and emb.tokens.shape[2] == 8
    assert emb.mask.any(1).all() and np.isfinite(emb.pooled).all()
    # padding is zero and every real token is a real vector
    assert not emb.tokens[~emb.mask].any() and np.abs(emb.tokens[emb.mask]).sum(1).min() > 0
    # warm: nothing is encoded again, the same arrays come back
    enc.calls = 0
    again = encode_genes(name, enc, TEXTS, cache)
    assert enc.calls == 0
    np.testing.assert_array_equal(again.pooled, emb.pooled)
    # rows follow the input order
    rev = dict(reversed(list(TEXTS.items())))
    back = encode_genes(name, enc, rev, cache)
    np.testing.assert_allclose(back.pooled[::-1], emb.pooled, atol=1e-6)


def test_go_tokens_share_what_the_annotation_shares(tmp_path):
    # the fake text encoder gives unrelated texts unrelated vectors, so any similarity
    # between genes comes from the annotation terms they share
    syms = list(TEXTS)
    emb = encode_genes("go-tokens", WideFake(), TEXTS, Cache(tmp_path))
    assert _cos(emb, syms, "KRT8", "KRT18") > _cos(emb, syms, "KRT8", "COL1A1") + 0.2
    # ERBB2 and GRB7 share the 17q12 band (the HER2 amplicon) and receptor signalling terms
    assert _cos(emb, syms, "ERBB2", "GRB7") > _cos(emb, syms, "ERBB2", "COL1A1")
    desc = encode_genes("description", WideFake(), TEXTS, Cache(tmp_path))
    assert abs(_cos(desc, syms, "KRT8", "KRT18")) < _cos(emb, syms, "KRT8", "KRT18")


def test_go_tokens_specific_terms_first_and_fallbacks(tmp_path):
    terms = gene_terms("ERBB2")
    assert terms[0][0].startswith("name:erb-b2")
    weights = [w for _, w in terms[1:]]
    assert weights == sorted(weights, reverse=True) and len(terms) > 10
    idf = annotation_idf()
    assert idf["go_cc:cytosol"] < idf["go_cc:ERBB3:ERBB2 complex"]  # common terms weigh less
    assert gene_terms("NOTAGENE1") == []
    # user-described and unknown genes: one token, their description's vector
    enc = FakeEncoder()
    emb = encode_genes("go-tokens", enc, TEXTS, Cache(tmp_path), described=["KRT8"])
    own = enc.encode([TEXTS["KRT8"], TEXTS["NOTAGENE1"]]).pooled
    for row, sym in ((0, "KRT8"), (1, "NOTAGENE1")):
        i = list(TEXTS).index(sym)
        assert emb.mask[i].sum() == 1
        np.testing.assert_allclose(emb.tokens[i, 0], own[row], atol=1e-2)


def test_unknown_gene_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="unknown gene encoder 'go'"):
        encode_genes("go", FakeEncoder(), TEXTS, Cache(tmp_path))
    with pytest.raises(InputError, match="no genes"):
        encode_genes("go-tokens", FakeEncoder(), {}, Cache(tmp_path))


def test_term_store_encodes_only_new_terms(tmp_path):
    from geneshot.encoders.gene import gene_terms as terms_of

    cache = Cache(tmp_path)
    enc = FakeEncoder()
    encode_genes("go-tokens", enc, {"KRT8": "k8", "KRT18": "k18"}, cache)
    enc.calls = 0
    encode_genes("go-tokens", enc, {"KRT8": "k8", "KRT19": "k19"}, cache)
    old = {t for g in ("KRT8", "KRT18") for t, _ in terms_of(g)}
    new = {t for t, _ in terms_of("KRT19") if not t.startswith(("pfam", "cytoband"))} - old
    assert 0 < enc.calls == len(new)
