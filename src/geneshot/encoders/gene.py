"""Gene encoders: how a gene becomes the token sequence and pooled vector the models read.

Registered like the image and text encoders (``create_gene_encoder(name)``); every entry
runs on top of a text encoder (``FeatureConfig.text_encoder``) and returns
:class:`~geneshot.encoders.text.TextEmbeddings` (``pooled``, ``tokens``, ``mask``), so
every model takes any of them:

``description``
    The gene's description (the shipped knowledge table, or the user's own / LLM text)
    through the text encoder: tokens are the encoder's word states.
``go-tokens``
    The gene's annotation as a *set*: each GO biological process, molecular function and
    cellular component it carries and its full name become one token, embedded by the
    text encoder as a short sentence; its Pfam domains and cytobands, which the table
    names by id only, get a fixed random unit vector each (seeded by the id), so they add
    plain set overlap. Tokens are weighted by how specific they are (IDF over the table)
    and ordered most specific first; ``pooled`` is their IDF-weighted mean, unit length.
    A gene described by the user (or with no annotation) has its description's pooled
    vector as its single token.
``description+go-tokens``
    Both token sequences, one after the other; ``pooled`` the mean of the two unit vectors.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from geneshot.cache import Cache
from geneshot.encoders._text_cache import encode_gene_texts, encode_sentences
from geneshot.encoders.text import TextEmbeddings, TextEncoder
from geneshot.errors import InputError
from geneshot.genes._knowledge import load_knowledge, resolve_symbol, split_list

GO_FIELDS = ("go_bp", "go_mf", "go_cc")
ID_FIELDS = ("pfam", "cytoband")  # named by id only: fixed random vectors
MAX_GO_TOKENS = 48  # the table keeps at most 12 terms per ontology; + name, domains, bands


@lru_cache(maxsize=1)
def annotation_idf() -> dict[str, float]:
    """IDF of every annotation term over the annotated genes of the knowledge table.

    ``log(N / df)``, N = genes with at least one GO term, Pfam domain or cytoband. Keys are
    ``"<field>:<term>"`` so that a GO term and a band never share a weight.
    """
    kb = load_knowledge()
    df: dict[str, int] = {}
    n = 0
    for row in kb[[*GO_FIELDS, *ID_FIELDS]].itertuples(index=False):
        terms = {f"{f}:{t}" for f, v in zip(GO_FIELDS + ID_FIELDS, row) for t in split_list(v)}
        if terms:
            n += 1
            for t in terms:
                df[t] = df.get(t, 0) + 1
    return {t: math.log(n / c) for t, c in df.items()}


def _id_vector(term: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(term.encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def gene_terms(symbol: str) -> list[tuple[str, float]]:
    """The annotation terms of one gene (``"<field>:<term>"``) with their IDF, most specific first.

    The full gene name comes first with the gene's mean term IDF (it names the family,
    e.g. "keratin 19"); genes outside the table have no terms.
    """
    canon = resolve_symbol(symbol)
    if canon is None:
        return []
    row = load_knowledge().loc[canon]
    idf = annotation_idf()
    terms = [
        (f"{f}:{t}", idf[f"{f}:{t}"])
        for f in GO_FIELDS + ID_FIELDS
        for t in dict.fromkeys(split_list(row[f]))
        if f"{f}:{t}" in idf
    ]
    terms.sort(key=lambda tw: -tw[1])
    terms = terms[: MAX_GO_TOKENS - 1]
    name = row["name"] or canon
    weight = float(np.mean([w for _, w in terms])) if terms else 1.0
    return [(f"name:{name}", weight), *terms]


def _pad(rows: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    tokens = np.zeros((len(rows), width, dim), np.float16)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        mask[i, : len(r)] = True
    return tokens, mask


def _description(
    text_encoder: TextEncoder, texts: Mapping[str, str], cache: Cache, progress: bool, **_: object
) -> TextEmbeddings:
    _, emb = encode_gene_texts(text_encoder, dict(texts), cache, progress=progress)
    return emb


def _go_tokens(
    text_encoder: TextEncoder,
    texts: Mapping[str, str],
    cache: Cache,
    progress: bool,
    described: frozenset[str] = frozenset(),
) -> TextEmbeddings:
    symbols = list(texts)
    terms = {s: ([] if s in described else gene_terms(s)) for s in symbols}
    named = sorted({t for ts in terms.values() for t, _ in ts if not t.startswith(ID_FIELDS)})
    # user-described or unannotated genes: their own text is their one token
    own_text = {s: texts[s] for s in symbols if not terms[s]}
    # a term key is "<field>:<name>"; the text encoder reads the name
    sentences = [t.split(":", 1)[1] for t in named] + list(own_text.values())
    vectors = encode_sentences(text_encoder, sentences, cache, progress=progress)
    dim = vectors.shape[1]
    lookup = dict(zip(named, vectors[: len(named)]))
    own = dict(zip(own_text, vectors[len(named) :]))
    rows, pooled = [], np.zeros((len(symbols), dim), np.float32)
    for i, s in enumerate(symbols):
        if not terms[s]:
            rows.append(own[s][None])
            pooled[i] = own[s]
            continue
        vecs = np.stack([lookup[t] if t in lookup else _id_vector(t, dim) for t, _ in terms[s]])
        w = np.array([w for _, w in terms[s]], np.float32)
        rows.append(vecs)
        pooled[i] = _unit(w @ vecs)
    tokens, mask = _pad(rows, dim)
    return TextEmbeddings(pooled, tokens, mask)


def _both(
    text_encoder: TextEncoder,
    texts: Mapping[str, str],
    cache: Cache,
    progress: bool,
    described: frozenset[str] = frozenset(),
) -> TextEmbeddings:
    a = _description(text_encoder, texts, cache, progress)
    b = _go_tokens(text_encoder, texts, cache, progress, described)
    tokens = np.concatenate([a.tokens, b.tokens.astype(a.tokens.dtype)], axis=1)
    mask = np.concatenate([a.mask, b.mask], axis=1)
    pooled = _unit(_unit(a.pooled) + _unit(b.pooled)).astype(np.float32)
    return TextEmbeddings(pooled, tokens, mask)


@dataclass(frozen=True)
class GeneEncoderSpec:
    """A registered gene encoder."""

    name: str
    encode: Callable[..., TextEmbeddings]
    description: str


GENE_ENCODERS: dict[str, GeneEncoderSpec] = {
    s.name: s
    for s in (
        GeneEncoderSpec(
            "description", _description, "the gene's description through the text encoder"
        ),
        GeneEncoderSpec(
            "go-tokens",
            _go_tokens,
            "one token per GO term / domain / band, IDF-weighted (annotation as a set)",
        ),
        GeneEncoderSpec(
            "description+go-tokens", _both, "description tokens followed by annotation tokens"
        ),
    )
}


def encode_genes(
    name: str,
    text_encoder: TextEncoder,
    texts: Mapping[str, str],
    cache: Cache,
    *,
    described: Sequence[str] = (),
    progress: bool = False,
) -> TextEmbeddings:
    """Encode genes with the gene encoder ``name`` (rows follow ``texts``).

    Parameters
    ----------
    name
        A key of :data:`GENE_ENCODERS`.
    text_encoder
        Embeds descriptions and term names (cached per text).
    texts
        Symbol -> description (used by ``description``, and by ``go-tokens`` for genes in
        ``described`` or outside the knowledge table).
    described
        Genes whose text came from the user (their own or an LLM's description): the
        annotation table does not speak for them.
    """
    if name not in GENE_ENCODERS:
        raise InputError(
            None, f"unknown gene encoder {name!r}", f"use one of: {', '.join(GENE_ENCODERS)}"
        )
    if not texts:
        raise InputError(None, "no genes to encode", "give at least one gene")
    return GENE_ENCODERS[name].encode(
        text_encoder, texts, cache, progress, described=frozenset(described)
    )
