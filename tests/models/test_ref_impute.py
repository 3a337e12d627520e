"""``ref-impute``: a planted co-expression in the reference carries to unseen genes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from geneshot.errors import InputError
from geneshot.genes import Reference
from geneshot.models import MODELS, GeneInputs, SlideInputs, create_model

N_SEEN = 40


def _world(seed=0, n_ref=600, shuffle_unseen=False):
    """Hidden programmes drive seen genes, unseen genes and the image features alike."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, N_SEEN))
    u = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # U0 follows programme 0, U1 programme 1

    def expr(h, noise):
        seen = 2.0 + 0.5 * h @ w + noise * rng.normal(size=(len(h), N_SEEN))
        unseen = 1.5 + 0.7 * h @ u + noise * rng.normal(size=(len(h), 2))
        return seen, unseen

    hr = rng.normal(size=(n_ref, 3))
    rs, ru = expr(hr, 0.3)
    if shuffle_unseen:
        ru = rng.permutation(ru)
    genes = [f"S{i}" for i in range(N_SEEN)] + ["U0", "U1"]
    ref = Reference(
        sp.csr_matrix(np.hstack([rs, ru]).astype(np.float32)),
        genes,
        np.full(n_ref, "R1"),
        "test",
        "x",
    )
    slides, ys, truth = [], [], []
    for _ in range(3):
        h = rng.normal(size=(150, 3))
        img = np.hstack([h, 0.2 * rng.normal(size=(150, 13))])  # the image sees the programmes
        s, un = expr(h, 0.3)
        slides.append(
            SlideInputs(
                torch.tensor(img, dtype=torch.float32), None, torch.zeros(150, 2, dtype=torch.long)
            )
        )
        ys.append(s.astype(np.float32))
        truth.append(un)
    return ref, slides, ys, truth


def _genes(names):
    g = len(names)
    return GeneInputs(
        torch.zeros(g, 2, 4),
        torch.ones(g, 2, dtype=torch.bool),
        torch.zeros(g, 4),
        symbols=list(names),
    )


def _pcc(a, b):
    return np.mean([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])])


def test_ref_impute_predicts_unseen_genes_from_the_reference():
    assert MODELS["ref-impute"].needs_reference and not MODELS["ref-impute"].supervised
    ref, slides, ys, truth = _world()
    seen = [f"S{i}" for i in range(N_SEEN)]
    m = create_model("ref-impute", k=5).fit(slides[:2], ys[:2], _genes(seen), reference=ref)
    pred = m.predict(slides[2], _genes(["U1", "U0"]))
    assert pred.shape == (150, 2)
    assert _pcc(truth[2][:, ::-1], pred) > 0.6
    # level from the reference (log1p CP10k units there): the unseen genes' mean is 1.5
    assert abs(pred.mean() - 1.5) < 0.3
    # a reference where the unseen genes do not co-vary with the seen ones carries nothing
    ref0, *_ = _world(shuffle_unseen=True)
    m0 = create_model("ref-impute", k=5).fit(slides[:2], ys[:2], _genes(seen), reference=ref0)
    assert abs(_pcc(truth[2], m0.predict(slides[2], _genes(["U0", "U1"])))) < 0.3
    # pickles (run folders store estimators so)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(
        m2.predict(slides[2], _genes(["U0"])), m.predict(slides[2], _genes(["U0"]))
    )


def test_ref_impute_uses_only_seen_gene_targets():
    ref, slides, ys, _ = _world()
    seen = [f"S{i}" for i in range(N_SEEN)]
    a = create_model("ref-impute", k=5).fit(slides[:2], ys[:2], _genes(seen), reference=ref)
    # changing the reference's unseen genes changes their loadings only, never the fit
    ref2 = Reference(ref.X.copy(), ref.genes, ref.samples, "t", "y")
    ref2.X = sp.csr_matrix(
        np.hstack(
            [ref.X.toarray()[:, :N_SEEN], np.random.default_rng(1).normal(size=(ref.n_obs, 2))]
        ).astype(np.float32)
    )
    b = create_model("ref-impute", k=5).fit(slides[:2], ys[:2], _genes(seen), reference=ref2)
    np.testing.assert_allclose(
        a._predict_fitted(slides[2]), b._predict_fitted(slides[2]), rtol=1e-4, atol=1e-5
    )


def test_shrink_blends_toward_the_common_pattern():
    ref, slides, ys, _ = _world()
    seen = [f"S{i}" for i in range(N_SEEN)]
    m = create_model("ref-impute", k=5).fit(slides[:2], ys[:2], _genes(seen), reference=ref)
    g = _genes(["U0", "U1", "S3"])
    p0, p1, ph = (m.predict(slides[2], g, shrink=s) for s in (0.0, 1.0, 0.5))
    np.testing.assert_allclose(ph, (p0 + p1) / 2, rtol=1e-5, atol=1e-5)
    common = m.predict_common(slides[2])
    cols = m.columns(["U0", "U1", "S3"])
    expect = m.mean_[cols] + m.sd_[cols] * m.common_[cols] * common[:, None]
    np.testing.assert_allclose(p1, expect, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="shrink"):
        m.predict(slides[2], g, shrink=1.5)


def test_clear_errors():
    ref, slides, ys, _ = _world()
    seen = [f"S{i}" for i in range(N_SEEN)]
    with pytest.raises(InputError, match="needs a reference"):
        create_model("ref-impute").fit(slides[:2], ys[:2], _genes(seen))
    no_sym = GeneInputs(
        torch.zeros(N_SEEN, 2, 4), torch.ones(N_SEEN, 2, dtype=torch.bool), torch.zeros(N_SEEN, 4)
    )
    with pytest.raises(InputError, match="symbols"):
        create_model("ref-impute").fit(slides[:2], ys[:2], no_sym, reference=ref)
    m = create_model("ref-impute", k=5).fit(slides[:2], ys[:2], _genes(seen), reference=ref)
    with pytest.raises(InputError, match="no expression for 2 requested gene.*NOPE1, NOPE2"):
        m.predict(slides[2], _genes(["U0", "NOPE1", "NOPE2"]))


def test_gene_inputs_carry_symbols_through_select_and_concat():
    g = _genes(["A", "B", "C"])
    assert g.select([2, 0]).symbols == ["C", "A"]
    assert g.select(torch.tensor([False, True, True])).symbols == ["B", "C"]
    assert g.select(slice(0, 2)).symbols == ["A", "B"]
    assert GeneInputs.concat([g, g.select([1])]).symbols == ["A", "B", "C", "B"]
    assert g.to("cpu").symbols == ["A", "B", "C"]
    with pytest.raises(InputError, match="symbols"):
        GeneInputs(g.tokens, g.mask, g.pooled, symbols=["A"]).validate()
