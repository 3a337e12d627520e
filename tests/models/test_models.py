"""Every registered model on a tiny synthetic slide, plus the ALIGN-ST stages, graphs and losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geneshot.errors import InputError
from geneshot.models import (
    ASIG,
    MODELS,
    Estimator,
    GeneExpressionModule,
    GeneInputs,
    SlideInputs,
    create_model,
    default_config,
    list_models,
    mse_pcc_loss,
    near_edges,
    pearson_loss,
)

N_ROWS, N_COLS, D_IMG, C, S, G, L, D_T = 6, 5, 16, 4, 16, 12, 6, 8

TINY = {
    "align-st": {
        "d_img": D_IMG,
        "d_text": D_T,
        "nuclei_size": S,
        "d_model": 16,
        "top_k": 3,
        "n_prompts": 2,
        "n_support": 8,  # the kernel head's stored fits: the 8 seen genes of the test below
    },
    "permuted-text": {"d_img": D_IMG, "d_text": D_T, "nuclei_size": S, "d_model": 16, "top_k": 3, "n_support": 8},
    "sgn": {"d_img": D_IMG, "d_text": D_T, "hidden": 32, "d_model": 16},
    "ridge": {"n_components": 8},
    "text-knn": {"n_components": 8, "k": 3},
    "depth": {"n_components": 8},
    "gene-kernel": {"n_components": 8, "cv_spots": 50, "cv_top": 0},
}
# a stacked model's module is ALIGN-ST (its base is tested under the base's own name)
TINY["align-st-paper"] = TINY["align-st+kernel"] = TINY["align-st+ref"] = TINY["align-st"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: with 2 OpenMP threads on a busy 2-core box, barrier waits cost 10-50x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_slide(seed: int = 0, nuclei: bool = True) -> SlideInputs:
    g = torch.Generator().manual_seed(seed)
    r, c = torch.meshgrid(torch.arange(N_ROWS), torch.arange(N_COLS), indexing="ij")
    grid = torch.stack([r.flatten(), c.flatten()], 1)
    n = grid.shape[0]
    maps = torch.rand(n, C, S, S, generator=g) if nuclei else None
    return SlideInputs(torch.randn(n, D_IMG, generator=g), maps, grid)


def make_genes(n: int = G, seed: int = 1) -> GeneInputs:
    g = torch.Generator().manual_seed(seed)
    mask = torch.arange(L).expand(n, L) < torch.randint(2, L + 1, (n, 1), generator=g)
    return GeneInputs(torch.randn(n, L, D_T, generator=g), mask, torch.randn(n, D_T, generator=g))


def linear_targets(slide: SlideInputs, genes: GeneInputs) -> np.ndarray:
    """Targets that depend on image features through gene-specific (text-derived) weights."""
    w = torch.tanh(genes.pooled @ torch.ones(D_T, D_IMG) / D_T + genes.pooled[:, :1])
    return (slide.image @ w.T).numpy()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model(name):
    torch.manual_seed(0)
    spec = MODELS[name]
    if spec.needs_reference:
        pytest.skip("needs a reference expression matrix: tests/models/test_ref_impute.py")
    model = create_model(name, **TINY[name])
    slides = [make_slide(0), make_slide(1)]
    genes = make_genes()
    # real symbols, so that models reading gene knowledge by name (the locus kernel) do
    genes.symbols = ["ERBB2", "GRB7", "KRT19", "KRT17", "IGKC", "CD74", "COL1A1", "HLA-A"] * (G // 8) + ["ACTB"] * (G % 8)
    seen, unseen = genes.select(range(8)), genes.select(range(8, G))
    test = make_slide(2)
    n = test.n_spots
    if spec.kind == "torch":
        assert isinstance(model, GeneExpressionModule)
        extra = {}
        if getattr(model, "uses_support", False):
            # a head over the seen genes' fits: context genes carry their seen-gene slots, the
            # training forward fits them on the given spots, prediction reads the stored fits
            seen.ids = torch.arange(8)
            model.set_anchor(torch.cat([s.image for s in slides]).numpy())
            model.fit_support(slides, [torch.rand(s.n_spots, 8) for s in slides], [torch.ones(s.n_spots, dtype=torch.bool) for s in slides])
            extra = {"context": seen, "support": (torch.rand(n, 8), torch.arange(n) % 2 == 0)}
        pred = model(test, seen, **extra)
        assert pred.shape == (n, 8) and torch.isfinite(pred).all()
        target = torch.rand(n, 8)
        mse_pcc_loss(pred, target).backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
        # predictions decompose as spots @ weights.T + bias
        model.eval()
        with torch.no_grad():
            w, b = model.encode_genes(unseen, test, context=seen)
            z = model.encode_spots(test)
            full = model(test, unseen, context=seen)
        assert full.shape == (n, G - 8) and torch.isfinite(full).all()
        torch.testing.assert_close(z @ w.T + b, full, rtol=1e-4, atol=1e-4)
    else:
        assert isinstance(model, Estimator)
        model.fit(slides, [linear_targets(s, seen) for s in slides], seen)
        pred = model.predict(test, seen)
        assert pred.shape == (n, 8) and np.isfinite(pred).all()
        if spec.zero_shot:
            zs = model.predict(test, unseen)
            assert zs.shape == (n, G - 8) and np.isfinite(zs).all()
        else:
            with pytest.raises(InputError, match="not fit on"):
                model.predict(test, unseen)


@pytest.mark.parametrize(
    "flag", ["use_ndaife", "use_text_prompts", "use_visual_prompts", "use_asig", "use_spot_graph"]
)
def test_align_st_ablation_switches(flag):
    torch.manual_seed(0)
    model = create_model("align-st-paper", **TINY["align-st"], **{flag: False})
    pred = model(make_slide(), make_genes(), context=make_genes(5, seed=3))
    assert pred.shape == (N_ROWS * N_COLS, G) and torch.isfinite(pred).all()
    pred.sum().backward()
    if flag == "use_ndaife":
        assert not hasattr(model.ndaife, "conv")
    if flag == "use_asig":
        assert model.asig is None
    if flag == "use_visual_prompts":
        assert model.pggp.visual_stream(torch.zeros(3, 16)) is None


def test_text_and_visual_prompts_both_off_runs_plain_encoder():
    model = create_model(
        "align-st-paper", **TINY["align-st"], use_text_prompts=False, use_visual_prompts=False
    )
    assert model.pggp.n_prompts == 0
    assert model(make_slide(), make_genes()).shape == (N_ROWS * N_COLS, G)


def test_asig_topk_neighbours_include_context_and_exclude_self():
    asig = ASIG(d=2, top_k=2)
    # genes 0, 1 output; rows 2-4 context. Gene 0 points along x, gene 1 along y.
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0], [1.0, -0.05]])
    nb = asig.neighbours(z, n_out=2)
    assert nb.shape == (2, 2)
    assert set(nb[0].tolist()) == {2, 4} and 0 not in nb[0].tolist()
    assert set(nb[1].tolist()) == {3, 2} or set(nb[1].tolist()) == {3, 0}
    assert 1 not in nb[1].tolist() and nb[1, 0] == 3
    assert asig(z, 2).shape == (2, 2)


def test_context_changes_align_st_output_but_not_sgn():
    torch.manual_seed(0)
    slide, genes, ctx = make_slide(), make_genes(4), make_genes(8, seed=5)
    for name, changes in [("align-st-paper", True), ("sgn", False)]:
        model = create_model(name, **TINY[name]).eval()
        with torch.no_grad():
            a, b = model(slide, genes), model(slide, genes, context=ctx)
        assert a.shape == b.shape == (slide.n_spots, 4)
        assert (not torch.allclose(a, b)) == changes


def test_gradient_reaches_nuclei_branch_and_nuclei_none_falls_back():
    torch.manual_seed(0)
    model = create_model("align-st-paper", **TINY["align-st"])
    # the branch's output projection starts at zero: one step opens it, the next reaches the convs
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(make_slide(), make_genes()).pow(2).mean().backward()
        opt.step()
    conv_w = model.ndaife.conv[0].weight
    assert conv_w.grad is not None and conv_w.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    pred = model(make_slide(nuclei=False), make_genes())
    assert torch.isfinite(pred).all()
    pred.sum().backward()
    assert conv_w.grad is None


def test_wrong_nuclei_size_raises():
    model = create_model("align-st-paper", **{**TINY["align-st"], "nuclei_size": 56})
    with pytest.raises(InputError, match="nuclei_size"):
        model(make_slide(), make_genes())


def test_losses_match_numpy():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(40, 7)), rng.normal(size=(40, 7))
    p[:, 0] = 2 * t[:, 0] + 1  # PCC exactly 1
    r = np.array([np.corrcoef(p[:, g], t[:, g])[0, 1] for g in range(7)])
    pt, tt = torch.tensor(p), torch.tensor(t)
    assert float(pearson_loss(pt, tt)) == pytest.approx(1 - r.mean(), abs=1e-6)
    expected = np.mean((p - t) ** 2) + 0.3 * (1 - r.mean())
    assert float(mse_pcc_loss(pt, tt, pcc_weight=0.3)) == pytest.approx(expected, abs=1e-6)
    # sampled genes: the loss must use the same columns as the prediction
    idx = [5, 0, 3]
    assert float(pearson_loss(pt[:, idx], tt[:, idx])) == pytest.approx(1 - r[idx].mean(), abs=1e-6)
    with pytest.raises(InputError, match="sampled gene columns"):
        pearson_loss(pt[:, :3], tt)


def test_near_edges_square_and_hex_grids():
    slide = make_slide()
    e = near_edges(slide.grid, max_neighbors=8)
    indeg = torch.bincount(e[1], minlength=slide.n_spots)
    interior = (slide.grid[:, 0] % (N_ROWS - 1) != 0) & (slide.grid[:, 1] % (N_COLS - 1) != 0)
    assert (indeg[interior] == 8).all() and indeg[0] == 3
    capped = torch.bincount(near_edges(slide.grid, 5)[1], minlength=slide.n_spots)
    assert (capped[interior] == 5).all() and capped[0] == 3
    # Visium-style hex grid: columns step by 2 with alternating row offsets -> 6 neighbours
    hexgrid = torch.tensor([[r, c] for r in range(5) for c in range(r % 2, 12, 2)])
    e = near_edges(hexgrid, max_neighbors=8)
    centre = int(((hexgrid[:, 0] == 2) & (hexgrid[:, 1] == 6)).nonzero())
    assert int((e[1] == centre).sum()) == 6


def test_ridge_recovers_linear_signal_and_text_knn_copies_identical_text():
    slides = [make_slide(s) for s in range(3)]
    genes = make_genes()
    targets = [linear_targets(s, genes) for s in slides]
    ridge = create_model("ridge", n_components=D_IMG).fit(slides, targets, genes)
    test = make_slide(7)
    truth = linear_targets(test, genes)
    pred = ridge.predict(test, genes)
    assert min(np.corrcoef(pred[:, g], truth[:, g])[0, 1] for g in range(G)) > 0.95
    # a gene subset in another order is matched by its text embedding
    np.testing.assert_allclose(ridge.predict(test, genes.select([3, 1])), pred[:, [3, 1]])
    knn = create_model("text-knn", n_components=D_IMG, k=3, temperature=1e-3)
    knn.fit(slides, [t[:, :8] for t in targets], genes.select(range(8)))
    twin = genes.select([2, 5])  # "unseen" genes whose text equals seen genes 2 and 5
    np.testing.assert_allclose(knn.predict(test, twin), pred[:, [2, 5]], rtol=1e-3, atol=1e-3)
    depth = create_model("depth", n_components=D_IMG).fit(slides, targets, genes)
    d = depth.predict(test, make_genes(4, seed=9))
    assert d.shape == (test.n_spots, 4) and np.allclose(d, d[:, :1])
    assert np.corrcoef(d[:, 0], truth.mean(1))[0, 1] > 0.95


def test_estimator_rejects_bad_targets():
    with pytest.raises(InputError, match=r"targets\[0\]"):
        create_model("ridge").fit([make_slide()], [np.zeros((3, G))], make_genes())


def test_registry_api():
    assert set(list_models()) == {"align-st", "sgn", "permuted-text", "ridge", "text-knn", "depth", "gene-kernel", "gene-kernel+ref", "permuted-reference", "ref-impute", "align-st+ref", "align-st+kernel", "align-st-paper"}
    assert "ridge" not in list_models("zero-shot") and "ridge" in list_models("supervised")
    assert default_config("permuted-text")["permute_text"] is True
    assert default_config("align-st")["permute_text"] is False
    cfg = default_config("align-st")
    cfg["alpha"] = 0.9  # a copy: the registry default is unchanged
    assert default_config("align-st")["alpha"] == 0.5
    model = create_model("align-st", **TINY["align-st"], alpha=0.2)
    assert model.name == "align-st" and model.config["alpha"] == 0.2 and model.pggp.alpha == 0.2
    with pytest.raises(InputError, match="no config field"):
        create_model("sgn", bogus=1)
    with pytest.raises(InputError, match="unknown model"):
        create_model("nope")


def test_gene_inputs_select_and_concat():
    genes = make_genes()
    sub = genes.select([4, 1])
    torch.testing.assert_close(sub.tokens, genes.tokens[[4, 1]])
    short = GeneInputs(
        torch.ones(2, 3, D_T), torch.ones(2, 3, dtype=torch.bool), torch.ones(2, D_T)
    )
    both = GeneInputs.concat([short, genes])
    assert both.tokens.shape == (G + 2, L, D_T) and not both.mask[:2, 3:].any()
    with pytest.raises(InputError, match="mask"):
        GeneInputs(genes.tokens, genes.mask[:, :2], genes.pooled).validate()
