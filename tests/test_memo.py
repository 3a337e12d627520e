"""The in-process memo: reuse only for the same content, bounded, and equal to computing."""

import numpy as np
import pytest
from sklearn.decomposition import PCA

from geneshot._memo import clear_memo, fitted_pca, memo_stats, memoized


@pytest.fixture(autouse=True)
def _fresh():
    clear_memo()
    yield
    clear_memo()


def test_same_content_is_reused_and_changed_content_is_not():
    calls = []
    x = np.arange(12.0).reshape(3, 4)

    def compute(a):
        calls.append(1)
        return a.sum()

    assert memoized("t", (x, 1), lambda: compute(x)) == 66
    assert memoized("t", (x.copy(), 1), lambda: compute(x)) == 66  # a copy: same content
    assert len(calls) == 1
    y = x.copy()
    y[0, 0] = 100.0
    assert memoized("t", (y, 1), lambda: compute(y)) == 166  # changed content: recomputed
    assert memoized("t", (x, 2), lambda: compute(x)) == 66  # another parameter: recomputed
    assert memoized("t", (x.astype(np.float32), 1), lambda: compute(x)) == 66  # dtype counts
    assert len(calls) == 4
    assert memo_stats()["t"] == (1, 4)


def test_least_recently_used_entry_goes_first():
    calls = []
    for i in [0, 1, 0, 2, 1]:  # maxsize 2: after 0,1,0,2 the store holds {0, 2}; 1 is recomputed
        memoized("lru", (i,), lambda i=i: calls.append(i), maxsize=2)
    assert calls == [0, 1, 2, 1]


def test_unkeyable_parts_are_refused():
    with pytest.raises(TypeError, match="cannot key"):
        memoized("t", (object(),), lambda: 0)


def test_fitted_pca_equals_fitting_and_is_shared():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 30))
    p = fitted_pca(x, 5)
    ref = PCA(n_components=5, random_state=0).fit(x)
    np.testing.assert_allclose(p.components_, ref.components_)
    assert fitted_pca(x.copy(), 5) is p
    # whitening changes only transform: the shift statistics read the unwhitened fit
    white = PCA(n_components=5, whiten=True, random_state=0).fit(x)
    np.testing.assert_allclose(
        (x - p.mean_) @ (p.components_.T / np.sqrt(p.explained_variance_)), white.transform(x)
    )


def test_max_bytes_bounds_what_is_kept():
    calls = []

    def get(n):
        return memoized("bytes", (n,), lambda: calls.append(n) or np.zeros(n, np.uint8), 10, 64)

    get(40), get(30)  # 70 B > 64: the 40 goes
    get(30), get(40)  # the 30 was kept; the 40 is computed again (and the 30 goes)
    get(100), get(100)  # larger than the bound: returned, never kept
    assert calls == [40, 30, 40, 100, 100]
