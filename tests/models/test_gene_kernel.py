"""gene-kernel: kernel ridge in gene space over seen-gene ridge fits (zero-shot baseline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geneshot.errors import InputError
from geneshot.models import GeneInputs, SlideInputs, create_model

D_IMG, D_T = 6, 5


def _slides(rng, n_slides=3, n=120):
    out = []
    for _ in range(n_slides):
        grid = torch.stack(torch.meshgrid(torch.arange(n // 10), torch.arange(10), indexing="ij"), -1).reshape(-1, 2)
        out.append(SlideInputs(torch.from_numpy(rng.normal(size=(n, D_IMG)).astype(np.float32)), None, grid))
    return out


def _genes(vectors: np.ndarray) -> GeneInputs:
    v = torch.from_numpy(vectors.astype(np.float32))
    return GeneInputs(v[:, None, :], torch.ones(len(v), 1, dtype=torch.bool), v)


def _task(rng, smooth: bool, n_genes=150):
    """Gene g's map is ``f . w_g + common + noise``; ``w_g`` a smooth function of the gene vector (or not)."""
    vec = rng.normal(size=(n_genes, D_T))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    a = rng.normal(size=(D_IMG, D_T))
    w = vec @ a.T if smooth else rng.normal(size=(n_genes, D_IMG))
    common = 0.3 * rng.normal(size=D_IMG)
    slides = _slides(rng, 4)
    ys = [s.image.numpy() @ (w + common).T + 3.0 + 0.3 * rng.normal(size=(s.n_spots, n_genes)) for s in slides]
    return slides, ys, vec, w, common


def _pcc(y, p):
    yc, pc = y - y.mean(0), p - p.mean(0)
    return (yc * pc).sum(0) / np.sqrt((yc**2).sum(0) * (pc**2).sum(0))


def test_recovers_a_kernel_smooth_signal_on_unseen_genes():
    rng = np.random.default_rng(0)
    slides, ys, vec, _, _ = _task(rng, smooth=True)
    seen, unseen = np.arange(30, 150), np.arange(30)
    # the kernel ridge itself (the default departure factor is tuned to real data, where
    # the ridge's departures come out too small; this one is exact)
    est = create_model(
        "gene-kernel", n_components=D_IMG, gammas=[0.0], departure_scale=1.0, departure_shrink=0.0
    )
    est.fit(slides[:3], [y[:, seen] for y in ys[:3]], _genes(vec[seen]))
    pred = est.predict(slides[3], _genes(vec[unseen]))
    y = ys[3][:, unseen]
    assert pred.shape == y.shape
    r = _pcc(y, pred)
    depth = _pcc(y, np.repeat(y.mean(1, keepdims=True), len(unseen), 1))
    assert r.mean() > 0.9, r.mean()
    assert r.mean() > depth.mean() + 0.3
    # predictions are on the target scale (the per-gene level is kept)
    assert abs(pred.mean() - y.mean()) < 0.2


def test_lambda_is_chosen_by_gene_cv():
    rng = np.random.default_rng(1)
    lambdas = [1e-3, 1e-1, 10.0, 1e3]
    chosen = {}
    for smooth in (True, False):
        slides, ys, vec, _, _ = _task(rng, smooth=smooth)
        est = create_model("gene-kernel", n_components=D_IMG, gammas=[0.0], lambdas=lambdas)
        est.fit(slides, ys, _genes(vec))
        scores = {r["lambda"]: r["score"] for r in est.cv_}
        assert est.lambda_ == max(scores, key=scores.get)  # the CV's best is the one used
        chosen[smooth] = est.lambda_
    # a gene vector that carries the map -> little shrinkage; one that does not -> fall back
    # to the common pattern (the largest lambda)
    assert chosen[True] <= 0.1 and chosen[False] == 1e3, chosen


def test_uninformative_vectors_fall_back_to_the_common_pattern():
    rng = np.random.default_rng(2)
    slides, ys, vec, _, _ = _task(rng, smooth=False)
    est = create_model("gene-kernel", n_components=D_IMG, gammas=[0.0], lambdas=[1e6])
    est.fit(slides[:3], ys[:3], _genes(vec))
    pred = est.predict(slides[3], _genes(rng.normal(size=(5, D_T))))
    # every gene gets the same map: the mean of the seen genes' fits
    assert np.allclose(pred - pred[:, :1], 0.0, atol=1e-3)
    assert _pcc(ys[3].mean(1), pred[:, 0]) > 0.9


def test_gcv_common_fit_falls_back_to_the_depth_controls_map():
    """``common_fit="gcv"``: a gene the kernel knows nothing of gets depth's map exactly."""
    rng = np.random.default_rng(3)
    slides, _, vec, _, common = _task(rng, smooth=False)
    # noisy genes sharing one pattern: each gene's own fit is shrunk hard (penalty by GCV),
    # the mean over the genes much less
    ys = [(s.image.numpy() @ common)[:, None] + 6.0 * rng.normal(size=(s.n_spots, len(vec))) for s in slides]
    kw = {"n_components": D_IMG}
    depth = create_model("depth", **kw).fit(slides[:3], ys[:3], _genes(vec))
    est = create_model("gene-kernel", **kw, gammas=[0.0], lambdas=[1e6], common_fit="gcv")
    est.fit(slides[:3], ys[:3], _genes(vec))
    pred = est.predict(slides[3], _genes(rng.normal(size=(5, D_T))))
    np.testing.assert_allclose(pred, depth.predict(slides[3], _genes(vec[:5])), atol=1e-3)
    # the default keeps the mean of the seen genes' fits, a different map
    mean = create_model("gene-kernel", **kw, gammas=[0.0], lambdas=[1e6])
    mean.fit(slides[:3], ys[:3], _genes(vec))
    other = mean.predict(slides[3], _genes(rng.normal(size=(5, D_T))))
    assert other[:, 0].std() < 0.9 * pred[:, 0].std()
    with pytest.raises(InputError, match="common_fit"):
        create_model("gene-kernel", common_fit="median")


def test_locus_weight_is_chosen_by_gene_cv():
    """Maps shared by genes of one chromosome band: the CV takes the locus kernel, and it helps."""
    from geneshot.genes import load_knowledge

    rng = np.random.default_rng(3)
    kb = load_knowledge()
    # genes of four well-populated bands; within a band every gene has the band's map
    bands = ["17q12", "6p21.33", "19q13.2", "1q21.3"]
    symbols = [s for b in bands for s in kb.index[kb["cytoband"] == b][:30]]
    band_of = np.array([b for b in bands for s in kb.index[kb["cytoband"] == b][:30]])
    maps = {b: rng.normal(size=D_IMG) for b in bands}
    w = np.stack([maps[b] for b in band_of])
    vec = rng.normal(size=(len(symbols), D_T))  # text says nothing
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    slides = _slides(rng, 4)
    ys = [s.image.numpy() @ w.T + 0.3 * rng.normal(size=(s.n_spots, len(symbols))) for s in slides]
    unseen = np.arange(0, len(symbols), 6)
    seen = np.setdiff1d(np.arange(len(symbols)), unseen)

    def genes(idx):
        g = _genes(vec[idx])
        g.symbols = [symbols[i] for i in idx]
        return g

    scores = {}
    for weights in ([0.0], [0.0, 0.5, 1.0]):
        est = create_model("gene-kernel", n_components=D_IMG, gammas=[0.0], locus_weights=weights)
        est.fit(slides[:3], [y[:, seen] for y in ys[:3]], genes(seen))
        scores[len(weights)] = _pcc(ys[3][:, unseen], est.predict(slides[3], genes(unseen))).mean()
    assert est.locus_weight_ > 0
    assert scores[3] > scores[1] + 0.3, scores
    # without symbols the locus kernel cannot be read: text only, and nothing breaks
    est = create_model("gene-kernel", n_components=D_IMG, gammas=[0.0])
    est.fit(slides[:3], [y[:, seen] for y in ys[:3]], _genes(vec[seen]))
    assert est.locus_weight_ == 0.0
    assert est.predict(slides[3], _genes(vec[unseen])).shape == (slides[3].n_spots, len(unseen))


def test_out_of_section_fits_never_see_the_section_they_predict():
    from geneshot.models._gene_cv import out_of_section_fits

    section = np.repeat([0, 1, 2], [5, 4, 6])
    rows = np.array([0, 3, 6, 9, 14])
    calls = []

    def fit_predict(train, at):
        calls.append((train.copy(), at.copy()))
        return np.repeat(at[:, None], 2, 1).astype(float)

    out = out_of_section_fits(section, rows, 2, fit_predict)
    assert np.array_equal(out[:, 0], rows)  # each row's value lands in its place
    for train, at in calls:
        assert len(np.unique(section[at])) == 1 and not train[section == section[at][0]].any()
        assert train[section != section[at][0]].all()


def test_out_of_section_cv_shrinks_maps_that_do_not_transfer_between_sections():
    """Each section has its own gene-specific maps (smooth in the gene vectors): in-sample fits
    make them look carried by the text; fits from the other sections show they are not."""
    rng = np.random.default_rng(4)
    n_genes = 120
    vec = rng.normal(size=(n_genes, D_T))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    slides = _slides(rng, 4)
    common = rng.normal(size=D_IMG)
    ys = [
        s.image.numpy() @ (vec @ rng.normal(size=(D_IMG, D_T)).T + common).T
        + 0.3 * rng.normal(size=(s.n_spots, n_genes))
        for s in slides
    ]
    lambdas = [1e-3, 1e-1, 10.0, 1e3]
    chosen = {}
    for rule in ("in-sample", "out-of-section"):
        est = create_model("gene-kernel", n_components=D_IMG, gammas=[0.0], lambdas=lambdas, cv_fits=rule)
        est.fit(slides, ys, _genes(vec))
        chosen[rule] = est.lambda_
    assert chosen["out-of-section"] > chosen["in-sample"], chosen
    with pytest.raises(InputError, match="cv_fits"):
        create_model("gene-kernel", cv_fits="leave-one-out")


def _departures(seed: int):
    """``departure(scale, shrink)``: unseen genes' predictions minus the common pattern.

    gene-kernel fitted once on a kernel-smooth task; the common pattern is the prediction of a
    gene unlike every seen gene (no kernel weight on any).
    """
    slides, ys, vec, _, _ = _task(np.random.default_rng(seed), smooth=True)
    seen, unseen = np.arange(30, 150), np.arange(30)
    est = create_model("gene-kernel", n_components=D_IMG, gammas=[0.0])
    est.fit(slides[:3], [y[:, seen] for y in ys[:3]], _genes(vec[seen]))
    m = est.predict(slides[3], _genes(np.zeros((1, D_T))))[:, :1]

    def departure(scale: float, shrink: float) -> np.ndarray:
        est.config.update(departure_scale=scale, departure_shrink=shrink)
        return est.predict(slides[3], _genes(vec[unseen])) - m

    return departure


def test_departure_scale_multiplies_the_departure_from_the_common_pattern():
    departure = _departures(5)
    deps = {c: departure(c, 0.0) for c in (1.0, 2.0, 3.0)}
    spatial = deps[2.0] - deps[1.0]
    assert np.abs(spatial).mean() > 0.1  # the genes do depart from the common pattern
    assert np.allclose(deps[3.0], deps[1.0] + 2.0 * spatial, atol=1e-6)
    # what is not scaled is each gene's level: one value per gene
    level = deps[1.0] - spatial
    assert np.allclose(level, level[:1], atol=1e-6)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "two"])
def test_departure_scale_must_be_a_positive_number(bad):
    with pytest.raises(InputError, match="departure_scale"):
        create_model("gene-kernel", departure_scale=bad)
    with pytest.raises(InputError, match="departure_scale"):
        create_model("align-st", departure_scale=bad)


def test_departure_shrink_keeps_less_of_small_departures():
    departure = _departures(6)
    deps = {shrink: departure(2.0, shrink) for shrink in (0.0, 0.5)}
    # per gene, the shrunk departure is the same map times a factor in (0, 1) (around the
    # gene's level, which stays) ...
    deps = {k: d - d.mean(0) for k, d in deps.items()}
    kept = (deps[0.5] * deps[0.0]).sum(0) / (deps[0.0] ** 2).sum(0)
    assert np.allclose(deps[0.5], kept * deps[0.0], atol=1e-6)
    assert np.all((kept > 0) & (kept < 1))
    # ... larger for the genes that depart further: r / (r + r0), r their spread against m's
    spread = deps[0.0].std(0)
    assert np.corrcoef(spread, kept)[0, 1] > 0.8
    with pytest.raises(InputError, match="departure_shrink"):
        create_model("gene-kernel", departure_shrink=-0.1)


def _grouped_task(rng, n_genes=120, n_groups=4, n_ref=300, level_free=False):
    """Genes in groups share a map; the text says nothing, a reference's co-expression tells the groups.

    ``level_free``: the programmes are centred over the reference rows, so a gene's level
    there says nothing of its group (otherwise genes of one group have similar levels).
    """
    import scipy.sparse as sp

    from geneshot.genes import Reference

    group = np.arange(n_genes) % n_groups
    w = rng.normal(size=(n_groups, D_IMG))[group]
    slides = _slides(rng, 4)
    ys = [s.image.numpy() @ w.T + 0.3 * rng.normal(size=(s.n_spots, n_genes)) for s in slides]
    symbols = [f"GENE{i}" for i in range(n_genes)]
    latent = rng.normal(size=(n_ref, n_groups))
    if level_free:
        latent -= latent.mean(0)
    x = 3.0 + latent[:, group] + 0.5 * rng.normal(size=(n_ref, n_genes))
    ref = Reference(sp.csr_matrix(x.astype(np.float32)), symbols, np.array(["r"] * n_ref), "toy", "toy-ref")
    vec = rng.normal(size=(n_genes, D_T))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)

    def genes(idx):
        g = _genes(vec[idx])
        g.symbols = [symbols[i] for i in idx]
        return g

    return slides, ys, ref, genes


def test_reference_coexpression_carries_maps_the_text_cannot():
    rng = np.random.default_rng(6)
    slides, ys, ref, genes = _grouped_task(rng)
    unseen = np.arange(0, 120, 5)
    seen = np.setdiff1d(np.arange(120), unseen)
    cfg = {"n_components": D_IMG, "gammas": [0.0], "departure_scale": 1.0, "departure_shrink": 0.0}
    scores = {}
    for name in ("gene-kernel", "gene-kernel+ref"):
        est = create_model(name, **cfg)
        est.fit(slides[:3], [y[:, seen] for y in ys[:3]], genes(seen), **({"reference": ref} if "ref" in name else {}))
        scores[name] = _pcc(ys[3][:, unseen], est.predict(slides[3], genes(unseen))).mean()
    assert est.reference_weight_ > 0  # the gene CV took the reference
    chosen = est.chosen()  # what run records keep of the choice
    assert chosen["reference_weight"] == est.reference_weight_ and chosen["lambda"] == est.lambda_
    assert chosen["cv_score"] > chosen["cv_score_without_reference"]
    assert {r["reference"] for r in est.cv_} >= {0.0, est.reference_weight_}
    assert scores["gene-kernel+ref"] > 0.8 and scores["gene-kernel+ref"] > scores["gene-kernel"] + 0.3, scores
    # levels: a gene the model did not train on takes the reference's (about 3 here), a seen
    # gene keeps its own training level (about 0), and a gene the reference lacks the kernel's
    g = genes(np.r_[unseen[:2], seen[:1]])
    g.symbols = ["NOT_IN_REF", *g.symbols[1:]]
    pred = est.predict(slides[3], g)
    assert pred.shape == (slides[3].n_spots, 3)
    assert abs(pred[:, 1].mean() - 3.0) < 0.3 and abs(pred[:, 2].mean()) < 0.5
    assert abs(pred[:, 0].mean()) < 0.5, pred.mean(0)


def test_gene_kernel_ref_needs_a_reference_and_symbols():
    rng = np.random.default_rng(7)
    slides, ys, ref, genes = _grouped_task(rng)
    est = create_model("gene-kernel+ref", n_components=D_IMG)
    with pytest.raises(InputError, match="needs an expression reference"):
        est.fit(slides[:3], ys[:3], genes(np.arange(120)))
    with pytest.raises(InputError, match="gene symbols"):
        est.fit(slides[:3], ys[:3], _genes(np.eye(120, D_T)), reference=ref)


def test_a_reference_whose_gain_is_noise_is_left_out():
    # references of independent noise per gene: the gene CV's best point takes some of them
    # (weights 2-16 on gains of +0.001 to +0.005, under their standard errors); the gain rule
    # drops every one, and the maps are then gene-kernel's
    import scipy.sparse as sp

    from geneshot.genes import Reference

    cfg = {"n_components": D_IMG, "gammas": [0.0], "departure_scale": 1.0, "departure_shrink": 0.0}
    unseen = np.arange(0, 120, 5)
    seen = np.setdiff1d(np.arange(120), unseen)
    taken = {"any gain": 0, "clear gain": 0}
    for seed in range(8):
        rng = np.random.default_rng(seed)
        slides, ys, ref, genes = _grouped_task(rng)
        x = 3.0 + rng.normal(size=(300, 120))
        noise = Reference(sp.csr_matrix(x.astype(np.float32)), ref.genes, np.array(["r"] * 300), "toy", f"noise{seed}")
        for key, min_se in (("any gain", 0.0), ("clear gain", 1.0)):
            est = create_model("gene-kernel+ref", **cfg, reference_min_gain_se=min_se)
            est.fit(slides[:3], [y[:, seen] for y in ys[:3]], genes(seen), reference=noise)
            taken[key] += est.reference_weight_ > 0
            assert (est.reference_weight_ > 0) == (est.reference_gain_["gain"] > min_se * est.reference_gain_["se"])
    assert taken["any gain"] >= 2 and taken["clear gain"] == 0, taken
    plain = create_model("gene-kernel", **cfg)
    plain.fit(slides[:3], [y[:, seen] for y in ys[:3]], genes(seen))
    # the same maps; only the levels differ (an unseen gene takes the reference's level)
    a, b = (m.predict(slides[3], genes(unseen)) for m in (est, plain))
    np.testing.assert_allclose(a - a.mean(0), b - b.mean(0), atol=1e-5)


def test_clear_gain_keeps_a_gain_the_genes_agree_on():
    from geneshot.models._gene_cv import clear_gain

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.5, 400)
    assert clear_gain(base + 0.01 + 0.01 * rng.normal(size=400), base)["keep"]
    noisy = clear_gain(base + 0.001 + 0.2 * rng.normal(size=400), base)
    assert not noisy["keep"] and noisy["se"] == pytest.approx(0.01, rel=0.15)
    assert not clear_gain(base[:1] + 1.0, base[:1])["keep"]  # one gene: no noise estimate


@pytest.mark.parametrize(
    ("name", "control", "config"),
    [
        ("gene-kernel+ref", "permuted-reference", {"gammas": [0.0], "departure_scale": 1.0, "departure_shrink": 0.0}),
        ("ref-impute", "ref-impute", {"k": 4}),
    ],
)
def test_a_permuted_reference_takes_the_reference_gain_away(name, control, config):
    # the control keeps each label's level; here levels say nothing of the groups, so
    # nothing of the reference's knowledge survives the shuffle
    rng = np.random.default_rng(3)
    slides, ys, ref, genes = _grouped_task(rng, level_free=True)
    unseen = np.arange(0, 120, 5)
    seen = np.setdiff1d(np.arange(120), unseen)
    scores = {}
    for key, model, extra in (("real", name, {}), ("permuted", control, {"permute_reference": True})):
        est = create_model(model, n_components=D_IMG, **config, **extra)
        est.fit(slides[:3], [y[:, seen] for y in ys[:3]], genes(seen), reference=ref)
        scores[key] = _pcc(ys[3][:, unseen], est.predict(slides[3], genes(unseen))).mean()
    assert scores["real"] > 0.8 and scores["permuted"] < scores["real"] - 0.3, scores
