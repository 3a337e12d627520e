"""Gene-text embeddings through the on-disk cache (a set entry plus one entry per text)."""

from __future__ import annotations

import hashlib

import numpy as np

from geneshot.cache import Cache, save_npz_atomic
from geneshot.encoders.text import TextEmbeddings, TextEncoder
from geneshot.errors import InputError


def text_hash(text: str) -> str:
    """Hash of one text (cache key part)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_NS_SET = "text-embeddings"  # one entry per gene set
_NS_ONE = "text-embeddings-one"  # one entry per text


def _unragged(z: dict[str, np.ndarray]) -> TextEmbeddings:
    """Padded arrays from concatenated per-text tokens (one scatter, no Python loop)."""
    lengths = z["lengths"].astype(np.int64)
    width = int(lengths.max()) if len(lengths) else 0
    mask = np.arange(width)[None, :] < lengths[:, None]
    tokens = np.zeros((len(lengths), width, z["flat"].shape[1]), np.float16)
    tokens[mask] = z["flat"]  # row-major True cells are exactly the concatenation order
    return TextEmbeddings(z["pooled"].astype(np.float32, copy=False), tokens, mask)


def encode_gene_texts(
    encoder: TextEncoder,
    texts: dict[str, str],
    cache: Cache,
    progress: bool = True,
    batch_size: int = 64,
) -> tuple[list[str], TextEmbeddings]:
    """Encode gene descriptions through the cache.

    Two levels: one entry for the whole set (keyed by the encoder and the sorted text
    hashes, so the same genes load in one read), and one entry per text, reused when a
    new gene set overlaps an old one. Both store tokens unpadded, so the result is padded
    to the longest text of *this* set whatever the batches were.

    Parameters
    ----------
    encoder
        From :func:`create_text_encoder`.
    texts
        Symbol -> description.
    cache
        The on-disk cache.
    progress
        Progress bar while encoding texts that are not cached.
    batch_size
        Texts per forward pass.

    Returns
    -------
    symbols, embeddings
        The symbols in the order of ``texts`` and their rows.
    """
    if not texts:
        raise InputError(None, "no gene texts to encode", "describe at least one gene")
    symbols = list(texts)
    hashes = [text_hash(texts[s]) for s in symbols]
    unique = sorted(set(hashes))
    key = encoder.cache_key

    def compute_set() -> dict[str, np.ndarray]:
        by_hash = {h: t for h, t in zip(hashes, (texts[s] for s in symbols))}
        got: dict[str, dict[str, np.ndarray]] = {}
        todo: list[str] = []
        for h in unique:
            p = cache.path(_NS_ONE, {"enc": key, "text": h})
            if p.exists():
                try:
                    with np.load(p, allow_pickle=False) as z:
                        got[h] = {k: z[k] for k in z.files}
                    continue
                except (OSError, ValueError, EOFError):
                    p.unlink(missing_ok=True)
            todo.append(h)
        if todo:
            emb = encoder.encode(
                [by_hash[h] for h in todo], batch_size=batch_size, progress=progress
            )
            for i, h in enumerate(todo):
                n = int(emb.mask[i].sum())
                one = {"pooled": emb.pooled[i], "tokens": emb.tokens[i, :n]}
                save_npz_atomic(cache.path(_NS_ONE, {"enc": key, "text": h}), one)
                got[h] = one
        pooled = np.stack([got[h]["pooled"] for h in unique]).astype(np.float32)
        lengths = np.array([got[h]["tokens"].shape[0] for h in unique], np.int32)
        flat = np.concatenate([got[h]["tokens"] for h in unique]).astype(np.float16)
        return {"pooled": pooled, "flat": flat, "lengths": lengths}

    z = cache.arrays(_NS_SET, {"enc": key, "texts": unique}, compute_set)
    emb = _unragged(z)
    row = {h: i for i, h in enumerate(unique)}
    take = np.array([row[h] for h in hashes])
    if len(take) == len(unique) and np.array_equal(take, np.arange(len(unique))):
        return symbols, emb
    return symbols, TextEmbeddings(emb.pooled[take], emb.tokens[take], emb.mask[take])


_NS_SENTENCE = "sentence-embeddings"  # one growing store per encoder, pooled vectors only


def encode_sentences(
    encoder: TextEncoder,
    sentences: list[str],
    cache: Cache,
    progress: bool = False,
    batch_size: int = 128,
) -> np.ndarray:
    """Pooled embeddings of short texts (e.g. GO term names), ``(n, D) float32``, cached.

    Only sentence vectors are kept (no token states), in one store per encoder that grows
    with every new text: the gene sets of benchmark folds differ but share most of their
    terms, so a fold reads one file and encodes only the terms it adds. The store is
    replaced atomically; two processes adding at once may drop each other's additions,
    which costs a re-encoding later, never a wrong vector (rows are keyed by text hash).
    """
    if not sentences:
        return np.zeros((0, encoder.dim), np.float32)
    key = {"enc": encoder.cache_key, "store": 1}
    path = cache.path(_NS_SENTENCE, key)
    known: dict[str, np.ndarray] = {}
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                known = dict(zip(z["hashes"].tolist(), z["pooled"]))
        except (OSError, ValueError, EOFError, KeyError):
            path.unlink(missing_ok=True)
    hashes = [text_hash(t) for t in sentences]
    todo = sorted({h: t for h, t in zip(hashes, sentences) if h not in known}.items())
    cache._count(_NS_SENTENCE, hit=not todo)
    if todo:
        emb = encoder.encode([t for _, t in todo], batch_size=batch_size, progress=progress)
        known.update(zip([h for h, _ in todo], emb.pooled.astype(np.float32)))
        save_npz_atomic(
            path, {"hashes": np.array(list(known)), "pooled": np.stack(list(known.values()))}
        )
    return np.stack([known[h] for h in hashes]).astype(np.float32)
