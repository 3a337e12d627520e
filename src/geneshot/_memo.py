"""In-process memo by content: what several models of one run derive from the same arrays.

A benchmark fold trains nine models on the same training sections, and several derive the
same things from the same inputs: the PCA of the image features, the fine-tuned image top's
features of a section, the principal axes of ALIGN-ST's kernel head. Each is computed once per
process and reused while its inputs are unchanged. The key hashes the inputs' content (not
their identity), so a changed input is a new entry, never a stale one, and a result is the
same whether it was computed or reused.

Results are shared between callers: never modify one in place.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from geneshot.cache import hash_parts

T = TypeVar("T")

_STORE: dict[str, OrderedDict[str, Any]] = {}
_STATS: dict[str, list[int]] = {}  # namespace -> [hits, misses]


def _keyable(part: Any) -> Any:
    """``part`` for :func:`geneshot.cache.hash_parts`, with each array's dtype and shape in it."""
    if isinstance(part, np.ndarray):
        return {"dtype": part.dtype.str, "shape": list(part.shape), "data": part}
    if isinstance(part, (tuple, list)):
        return [_keyable(p) for p in part]
    if isinstance(part, (str, int, float, bool)) or part is None:
        return part
    raise TypeError(f"cannot key a {type(part).__name__}")


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


def memoized(
    namespace: str,
    parts: tuple,
    compute: Callable[[], T],
    maxsize: int = 4,
    max_bytes: int | None = None,
) -> T:
    """``compute()``, or its result for the same ``parts`` from earlier in this process.

    Parameters
    ----------
    namespace
        What is computed (one rule per namespace).
    parts
        Everything the result depends on: arrays, strings and numbers (nested tuples allowed).
    compute
        Computes the result; called only on a miss.
    maxsize
        Entries kept in this namespace; the least recently used goes first.
    max_bytes
        Bound on the arrays kept in this namespace (a result larger than it is returned but
        not kept): a long-lived process that predicts many large slides must not hoard them.
    """
    store = _STORE.setdefault(namespace, OrderedDict())
    stats = _STATS.setdefault(namespace, [0, 0])
    key = hash_parts(_keyable(parts))
    if key in store:
        store.move_to_end(key)
        stats[0] += 1
        return store[key]
    stats[1] += 1
    value = compute()
    if max_bytes is not None and _nbytes(value) > max_bytes:
        return value
    store[key] = value
    while len(store) > maxsize or (
        max_bytes is not None and sum(_nbytes(v) for v in store.values()) > max_bytes
    ):
        store.popitem(last=False)
    return value


def memo_stats() -> dict[str, tuple[int, int]]:
    """``{namespace: (hits, misses)}`` since the process started (or :func:`clear_memo`)."""
    return {k: (v[0], v[1]) for k, v in _STATS.items()}


def clear_memo() -> None:
    """Forget every entry (tests; a long-lived process that wants its memory back)."""
    _STORE.clear()
    _STATS.clear()


def fitted_pca(x: np.ndarray, n_components: int, seed: int = 0):
    """``sklearn.decomposition.PCA(n_components, random_state=seed).fit(x)``, memoised.

    Whitening only changes ``transform``; a caller that whitens reads ``components_`` and
    ``explained_variance_`` of this fit.
    """
    from sklearn.decomposition import PCA

    return memoized(
        "pca",
        (x, int(n_components), int(seed)),
        lambda: PCA(n_components=int(n_components), random_state=seed).fit(x),
    )
