"""Text encoder registry, the offline MiniLM encoder and the gene-text cache."""

from __future__ import annotations

import time
import zlib

import numpy as np
import pytest

from geneshot.cache import Cache
from geneshot.encoders import encode_gene_texts
from geneshot.encoders.text import (
    TEXT_ENCODERS,
    TextEmbeddings,
    TextEncoder,
    create_text_encoder,
    native_bf16,
)
from geneshot.errors import InputError, MissingDependencyError

TEXTS = [
    "ERBB2 (erb-b2 receptor tyrosine kinase 2) is a protein-coding gene on 17q12.",
    "hello",
    "Keratin 5 is a type II intermediate filament protein of basal epithelial cells, " * 12,
]


@pytest.fixture(scope="module")
def minilm():
    # float32: the exactness checks below compare against sentence-transformers itself
    return create_text_encoder("minilm", precision="float32").load()


def test_registry_and_lazy_creation():
    assert {"minilm", "pubmedbert", "biolinkbert"} <= set(TEXT_ENCODERS)
    assert TEXT_ENCODERS["minilm"].offline
    enc = create_text_encoder("minilm", max_tokens=64)
    assert enc._model is None  # nothing loaded until needed
    assert (enc.name, enc.dim, enc.max_tokens) == ("minilm", 384, 64)
    assert enc._model is None
    with pytest.raises(InputError, match="unknown text encoder"):
        create_text_encoder("word2vec")
    with pytest.raises(InputError, match="empty model id"):
        create_text_encoder("hf:")


@pytest.mark.parametrize("name", ["biolinkbert", "pubmedbert", "hf:someone/some-bert"])
def test_hub_models_fail_clearly_offline(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = create_text_encoder(name)
    with pytest.raises(MissingDependencyError) as err:
        enc.encode(["text"])
    msg = str(err.value)
    assert enc.model_id in msg and "HF_TOKEN" in msg and "'minilm'" in msg


@pytest.mark.slow
def test_minilm_encode(minilm):
    emb = minilm.encode(TEXTS, batch_size=2)
    n, width, d = emb.tokens.shape
    assert (n, d) == (3, 384) and emb.pooled.shape == (3, 384)
    assert (
        emb.pooled.dtype == np.float32 and emb.tokens.dtype == np.float16 and emb.mask.dtype == bool
    )
    assert width == minilm.max_tokens == 128  # the long text is truncated at max_tokens
    lengths = emb.lengths
    assert lengths[1] == 3 and lengths[2] == 128  # [CLS] hello [SEP]
    assert not emb.tokens[~emb.mask].any()  # padding is zero
    np.testing.assert_allclose(np.linalg.norm(emb.pooled, axis=1), 1, atol=1e-5)  # model normalises
    # pooled vectors are the model's own sentence embeddings
    ref = minilm._model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(emb.pooled, ref, atol=1e-5)
    # a text's rows do not depend on the batch it shared
    alone = minilm.encode([TEXTS[0]])
    np.testing.assert_allclose(alone.pooled[0], emb.pooled[0], atol=1e-5)
    k = int(alone.mask[0].sum())
    np.testing.assert_allclose(
        alone.tokens[0, :k].astype(np.float32), emb.tokens[0, :k].astype(np.float32), atol=2e-2
    )
    short = create_text_encoder("minilm", max_tokens=8, precision="float32")
    short._model, short._prep, short._dim = minilm._model, minilm._prep, minilm._dim
    short._model.max_seq_length = 8
    try:
        assert short.encode(TEXTS).tokens.shape[1] == 8
    finally:
        minilm._model.max_seq_length = minilm.max_tokens


def test_native_bf16_agrees_with_torch():
    import torch

    assert native_bf16() == torch.cpu._is_amx_tile_supported()


def test_precision_resolution_and_cache_key(monkeypatch):
    import geneshot.encoders.text as text

    monkeypatch.setattr(text, "native_bf16", lambda: True)
    assert create_text_encoder("minilm").precision == "bfloat16"
    assert create_text_encoder("minilm", device="cuda").precision == "float32"
    monkeypatch.setattr(text, "native_bf16", lambda: False)
    fp32 = create_text_encoder("minilm")
    assert fp32.precision == "float32"
    bf16 = create_text_encoder("minilm", precision="bfloat16")
    # another precision is another cache entry; float32 keys are unchanged
    assert "precision" not in fp32.cache_key and bf16.cache_key["precision"] == "bfloat16"
    with pytest.raises(InputError, match="precision"):
        create_text_encoder("minilm", precision="int4")
    pinned = create_text_encoder("minilm-fp32")
    assert pinned.precision == "float32" and pinned.cache_key["name"] == "minilm-fp32"


@pytest.mark.slow
@pytest.mark.skipif(
    not native_bf16(),
    reason="no native bfloat16 on this CPU",
)
def test_minilm_bfloat16_matches_float32(minilm):
    bf16 = create_text_encoder("minilm", precision="bfloat16").load()
    a, b = minilm.encode(TEXTS), bf16.encode(TEXTS)
    np.testing.assert_array_equal(a.mask, b.mask)
    cos = (
        (a.pooled * b.pooled).sum(1)
        / np.linalg.norm(a.pooled, axis=1)
        / np.linalg.norm(b.pooled, axis=1)
    )
    assert cos.min() > 0.999
    ta, tb = a.tokens[a.mask].astype(np.float32), b.tokens[b.mask].astype(np.float32)
    tcos = (ta * tb).sum(1) / np.linalg.norm(ta, axis=1) / np.linalg.norm(tb, axis=1)
    assert np.percentile(tcos, 1) > 0.99
    assert not np.array_equal(a.pooled, b.pooled)  # it really ran in another precision


class FakeEncoder(TextEncoder):
    """Deterministic per-text vectors; counts the texts it encodes."""

    def __init__(self, **kw):
        super().__init__("fake", "fake/model", dim=8, **kw)
        self.calls = 0

    def _load(self):
        self._model = object()

    def _token_lengths(self, texts):
        return np.array([min(len(t.split()) + 2, self.max_tokens) for t in texts])

    def _encode_batch(self, texts):
        self.calls += len(texts)
        lengths = self._token_lengths(texts)
        width = int(lengths.max())
        pooled = np.zeros((len(texts), 8), np.float32)
        hidden = np.zeros((len(texts), width, 8), np.float16)
        for i, (t, n) in enumerate(zip(texts, lengths)):
            rng = np.random.default_rng(zlib.crc32(t.encode()))
            pooled[i] = rng.normal(size=8)
            hidden[i, :n] = rng.normal(size=(n, 8))
        return pooled, hidden, np.arange(width)[None] < lengths[:, None]


def test_encode_gene_texts_cache(tmp_path):
    cache = Cache(tmp_path)
    enc = FakeEncoder()
    texts = {"B": "beta gene text here", "A": "alpha", "C": "alpha"}  # A and C share a text
    syms, emb = encode_gene_texts(enc, texts, cache, progress=False)
    assert syms == ["B", "A", "C"]
    assert isinstance(emb, TextEmbeddings) and emb.tokens.shape == (3, 6, 8)
    assert enc.calls == 2  # identical texts encoded once
    np.testing.assert_array_equal(emb.pooled[1], emb.pooled[2])
    direct = enc.encode(list(texts.values()))
    np.testing.assert_array_equal(emb.tokens, direct.tokens)
    np.testing.assert_array_equal(emb.mask, direct.mask)

    # warm: nothing encoded, same result
    enc.calls = 0
    _, again = encode_gene_texts(enc, texts, cache, progress=False)
    assert enc.calls == 0
    np.testing.assert_array_equal(again.tokens, emb.tokens)
    # an overlapping set reuses per-text entries and pads to its own longest text
    _, sub = encode_gene_texts(enc, {"A": "alpha", "D": "delta"}, cache, progress=False)
    assert enc.calls == 1 and sub.tokens.shape == (2, 3, 8)
    np.testing.assert_array_equal(sub.pooled[0], emb.pooled[1])
    # a changed text is a new entry; another max_tokens is another encoder
    encode_gene_texts(enc, {"A": "alpha v2"}, cache, progress=False)
    assert enc.calls == 2
    other = FakeEncoder(max_tokens=4)
    encode_gene_texts(other, {"A": "alpha"}, cache, progress=False)
    assert other.calls == 1
    with pytest.raises(InputError, match="no gene texts"):
        encode_gene_texts(enc, {}, cache)


def test_encode_gene_texts_warm_speed(tmp_path):
    cache = Cache(tmp_path)
    enc = FakeEncoder(max_tokens=128)
    words = " ".join(f"w{i}" for i in range(140))
    texts = {f"G{i}": f"gene {i} " + words[: 40 + (i * 7) % 700] for i in range(3000)}
    encode_gene_texts(enc, texts, cache, progress=False)
    t0 = time.perf_counter()
    syms, emb = encode_gene_texts(enc, texts, cache, progress=False)
    warm = time.perf_counter() - t0
    assert len(syms) == 3000 and emb.tokens.shape[0] == 3000
    assert warm < 1.0, f"warm load of 3000 gene texts took {warm:.2f} s"
