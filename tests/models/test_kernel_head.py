"""ALIGN-ST's kernel head: unseen genes read off the seen genes' fits by kernel ridge in gene space."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geneshot.errors import InputError
from geneshot.models import create_model
from geneshot.models._gene_cv import departure_factor
from geneshot.models._kernel_head import KernelHead
from geneshot.train import GeneshotModel
from tests.models.test_models import TINY, make_genes, make_slide
from tests.models.test_planted_signal import CONFIGS, FIT, fit_planted, mean_pcc, planted

KERNEL = {"head": "kernel", "kernel_anchor": 4}


def _head(n_support=6, d_img=16, d=8, **extra):
    cfg = {
        "d_img": d_img,
        "d_model": d,
        "kernel_anchor": 4,
        "kernel_gamma": 5.0,
        "kernel_lambda": 0.1,
        "ridge_alpha": 1e-3,
        "n_support": n_support,
        **extra,
    }
    return KernelHead(cfg)


def test_the_head_is_kernel_ridge_over_the_support_fits():
    torch.manual_seed(0)
    head = _head()
    u = torch.randn(40, 12)
    y = torch.randn(40, 6)
    w = head.fit(u, y)
    # the ridge: centred normal equations with the mean loss
    uc, yc = u - u.mean(0), y - y.mean(0)
    expect = torch.linalg.solve(uc.T @ uc / 40 + 1e-3 * torch.eye(12), uc.T @ yc / 40)
    assert torch.allclose(w[:-1], expect, atol=1e-4)
    tq, ts, zq, zs = torch.randn(3, 5), torch.randn(6, 5), torch.randn(3, 4), torch.randn(6, 4)
    a = head.mixing(tq, zq, ts, zs)
    f = u @ w[:-1] + w[-1]
    m = f.mean(1, keepdim=True)
    kss = torch.exp(
        5.0
        * (
            torch.nn.functional.normalize(ts, dim=1) @ torch.nn.functional.normalize(ts, dim=1).T
            - 1
        )
    )
    # beta starts near zero: the kernel is (almost) the text kernel alone
    kqs = torch.exp(
        5.0
        * (
            torch.nn.functional.normalize(tq, dim=1) @ torch.nn.functional.normalize(ts, dim=1).T
            - 1
        )
    )
    a_text = kqs @ torch.linalg.inv(kss + 0.1 * torch.eye(6))
    assert torch.allclose(a, a_text, atol=0.05)
    pred = m + (f - m) @ a.T
    assert pred.shape == (40, 3)


def test_predictions_decompose_over_spot_vectors_and_need_seen_context():
    torch.manual_seed(0)
    model = create_model("align-st", **{**TINY["align-st"], **KERNEL, "n_support": 8}).eval()
    genes = make_genes()
    seen, unseen = genes.select(range(8)), genes.select(range(8, genes.n_genes))
    seen.ids = torch.arange(8)
    slide = make_slide(2)
    model.set_anchor(slide.image.numpy())
    y = torch.randn(slide.n_spots, 8)
    model.fit_support([slide], [y], [torch.ones(slide.n_spots, dtype=torch.bool)])
    with torch.no_grad():
        pred = model(slide, unseen, seen)
        w, b = model.encode_genes(unseen, slide, context=seen)
        z = model.encode_spots(slide)
    assert torch.allclose(pred, z @ w.T + b, atol=1e-4)
    with pytest.raises(InputError, match="no context genes"):
        model(slide, unseen)
    stranger = genes.select(range(8))
    stranger.ids = torch.full((8,), -1)
    with pytest.raises(InputError, match="not its seen genes"):
        model(slide, unseen, stranger)


@pytest.fixture(scope="module")
def kernel_run():
    data = planted(seed=0)
    m = fit_planted(
        "align-st",
        data,
        {**FIT, "time_budget_s": 0, "val_context": 100},
        **{**CONFIGS["align-st"], **KERNEL},
    )
    _, test, pg, _, unseen = data
    return m, test, pg, unseen, m.target.transform(test.adata, unseen)


def test_kernel_head_predicts_held_out_genes_from_text(kernel_run):
    m, test, pg, unseen, y = kernel_run
    assert m.module.kernel.support_w.abs().sum() > 0  # the stored fits were made
    depth = fit_planted("depth", planted(seed=0), {}, n_components=4)
    assert (
        mean_pcc(y, m.predict(test, pg, unseen, shrink=0.0))
        > mean_pcc(y, depth.predict(test, pg, unseen)) + 0.3
    )


def test_kernel_run_round_trips(kernel_run, tmp_path):
    m, test, pg, unseen, _ = kernel_run
    again = GeneshotModel.load(m.save(tmp_path / "run"))
    assert torch.equal(again.module.kernel.support_w, m.module.kernel.support_w)
    assert np.allclose(again.predict(test, pg, unseen), m.predict(test, pg, unseen), atol=1e-5)


def _as_before_the_departure_factor(run):
    """A saved run as one saved before the departure factor: no config keys, no spot stats."""
    meta = json.loads((run / "run.json").read_text())
    for key in ("departure_scale", "departure_shrink"):
        meta["model_config"].pop(key)
    (run / "run.json").write_text(json.dumps(meta))
    state = torch.load(run / "weights.pt", weights_only=True)
    for key in ("kernel.spot_mean", "kernel.spot_cov"):
        del state[key]
    torch.save(state, run / "weights.pt")
    return run


def test_a_run_saved_before_the_gcv_common_pattern_loads_with_the_mean(kernel_run, tmp_path):
    m, test, pg, unseen, _ = kernel_run
    assert m.module.kernel.common_fit == "gcv"  # the default
    run = _as_before_the_departure_factor(m.save(tmp_path / "run"))
    # what such a run held: no common_fit in its config, no common_w in its weights
    meta = json.loads((run / "run.json").read_text())
    del meta["model_config"]["common_fit"]
    (run / "run.json").write_text(json.dumps(meta))
    state = torch.load(run / "weights.pt", weights_only=True)
    del state["kernel.common_w"]
    torch.save(state, run / "weights.pt")
    old = GeneshotModel.load(run)
    assert old.module.kernel.common_fit == "mean"
    new = GeneshotModel.load(_as_before_the_departure_factor(m.save(tmp_path / "new")))
    diff = old.predict(test, pg, unseen, shrink=0.0) - new.predict(test, pg, unseen, shrink=0.0)
    assert np.abs(diff).max() > 1e-4  # the common pattern differs ...
    assert np.allclose(diff, diff[:, :1], atol=1e-4)  # ... and it is all that differs


def test_the_locus_kernel_joins_the_text_kernel_by_symbol():
    torch.manual_seed(0)
    ts, zs = torch.randn(4, 5), torch.randn(4, 8)
    tq, zq = torch.randn(2, 5), torch.randn(2, 8)
    seen, query = ["ERBB2", "KRT19", "IGKC", "CD74"], ["GRB7", "NOT-A-GENE"]
    cfg = {"d_img": 16, "d_model": 8, "kernel_anchor": 4, "kernel_gamma": 5.0, "kernel_lambda": 0.1, "ridge_alpha": 1e-3, "n_support": 4}
    off, on = KernelHead(cfg), KernelHead({**cfg, "kernel_locus": 0.5})
    assert off.log_locus is None and on.log_locus is not None
    with torch.no_grad():
        a_text = off.mixing(tq, zq, ts, zs, (query, seen))
        a_none = on.mixing(tq, zq, ts, zs)  # no symbols: the text kernel alone
        a_locus = on.mixing(tq, zq, ts, zs, (query, seen))
    assert torch.allclose(a_text, a_none)
    # GRB7 shares ERBB2's band: it leans on ERBB2 more; a gene without a band changes only
    # through the seen genes' kernel
    assert a_locus[0, 0] > a_text[0, 0] + 0.05
    assert not torch.allclose(a_locus, a_text)


def test_the_kernel_starts_at_the_gene_cv_choice():
    rng = np.random.default_rng(0)
    u = torch.from_numpy(rng.normal(size=(300, 12)))
    vec = rng.normal(size=(60, 5))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    rows = torch.arange(0, 300, 2)
    chosen = {}
    for informative in (True, False):
        # maps smooth in the text vectors (or not), plus noise
        w = vec @ rng.normal(size=(5, 12)) if informative else rng.normal(size=(60, 12))
        y = u @ torch.from_numpy(w.T) + 0.5 * torch.from_numpy(rng.normal(size=(300, 60)))
        cfg = {"d_img": 16, "d_model": 8, "kernel_anchor": 4, "kernel_gamma": 10.0, "kernel_lambda": 0.1, "ridge_alpha": 1e-3, "n_support": 60, "kernel_locus": 0.5}
        head = KernelHead(cfg)
        best = head.choose_start(u.float(), y.float(), torch.from_numpy(vec).float(), None, rows)
        assert float(head.log_gamma.exp()) == pytest.approx(best["gamma"], rel=1e-5)
        assert float(head.log_lambda.exp()) == pytest.approx(best["lambda"], rel=1e-5)
        assert best["locus"] == 0.0  # no symbols: no locus
        chosen[informative] = best["lambda"]
    # text that carries the maps is trusted more (less shrinkage toward the common pattern)
    assert chosen[True] < chosen[False], chosen


def test_gcv_stored_fits_shrink_the_genes_the_image_cannot_predict():
    rng = np.random.default_rng(1)
    u = torch.from_numpy(rng.normal(size=(200, 12))).float()
    signal = u @ torch.from_numpy(rng.normal(size=(12, 1))).float()
    # gene 0 follows the spots; gene 1 is noise the spots cannot predict
    y = torch.cat([signal, torch.from_numpy(rng.normal(size=(200, 1))).float()], dim=1)
    learned = _head(n_support=2)
    gcv = _head(n_support=2, support_fit="gcv")
    w_learned, w_gcv = learned.fit_stored(u, y), gcv.fit_stored(u, y)
    assert w_gcv.shape == w_learned.shape == (13, 2)
    assert torch.allclose(w_learned, learned.fit(u, y))  # "learned": the training fit itself
    # the predictable gene keeps its fit; the noise gene's coefficients shrink toward zero
    assert torch.allclose(w_gcv[:-1, 0], w_learned[:-1, 0], rtol=0.05, atol=0.02)
    assert w_gcv[:-1, 1].norm() < 0.5 * w_learned[:-1, 1].norm()
    with pytest.raises(InputError, match="support_fit"):
        _head(support_fit="loo")



def test_out_of_section_start_shrinks_maps_that_do_not_transfer():
    """Every section has its own gene-specific maps: read in-sample they look carried by the
    text; predicted from the other sections they are not, and the start shrinks more."""
    rng = np.random.default_rng(5)
    vec = rng.normal(size=(60, 5))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    section = np.repeat(np.arange(3), 100)
    u = torch.from_numpy(rng.normal(size=(300, 12))).float()
    y = torch.cat(
        [
            u[section == s] @ torch.from_numpy(vec @ rng.normal(size=(5, 12))).float().T
            for s in range(3)
        ]
    )
    y = y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    rows = torch.arange(0, 300, 2)
    chosen = {}
    for name, sec in (("in-sample", None), ("out-of-section", section)):
        head = _head(n_support=60)
        chosen[name] = head.choose_start(u, y, torch.from_numpy(vec).float(), None, rows, section=sec)["lambda"]
    assert chosen["out-of-section"] > chosen["in-sample"], chosen


def test_align_st_rejects_an_unknown_cv_fits_rule():
    with pytest.raises(InputError, match="cv_fits"):
        create_model("align-st", **{**TINY["align-st"], "cv_fits": "sometimes"})


@pytest.mark.parametrize("name", ["align-st", "align-st-paper"])  # the dot head too
def test_align_st_rejects_an_unknown_support_fit_rule(name):
    with pytest.raises(InputError, match="support_fit"):
        create_model(name, **{**TINY["align-st"], "support_fit": "loo"})


def test_gcv_common_pattern_replaces_only_the_mean_of_the_fits():
    rng = np.random.default_rng(2)
    # few spots for the spot vector's width: the nearly unpenalised fits overfit
    u = torch.from_numpy(rng.normal(size=(50, 40))).double()
    common = u[:, :1] * 0.5  # every gene carries the same per-spot pattern ...
    y = common + torch.from_numpy(rng.normal(size=(50, 6)))  # ... and noise of its own
    a = torch.from_numpy(rng.normal(size=(3, 6)))  # any mixing of 3 query genes over 6 fits
    head = _head(n_support=6, d_img=40, d=36, common_fit="gcv").double()
    assert "common_w" not in _head().state_dict()  # the default head saves what it saved
    with torch.no_grad():
        w = head.fit(u, y)
    # the fits' own mean as `common` is the default: the two forms agree
    for got, want in zip(head.gene_weights(w, a, w.mean(1)), head.gene_weights(w, a), strict=True):
        assert torch.allclose(got, want)
    head.store_common(u, y)
    weights, bias = head.gene_weights(w, a, head.stored_common)
    mean_w, mean_b = head.gene_weights(w, a)
    # a query gene's own part (F - m) A^T is the same; only m differs, by one shared map
    shift = (u @ (weights - mean_w).T + (bias - mean_b)).numpy()
    assert np.allclose(shift, shift[:, :1])
    # and that m is the GCV ridge of the spots' mean target: closer to the true pattern than
    # the nearly unpenalised mean of the fits
    m_gcv = (u @ head.common_w[:-1] + head.common_w[-1]).numpy()
    m_fit = (u @ w[:-1] + w[-1]).mean(1).numpy()
    truth = common[:, 0].numpy()
    assert np.mean((m_gcv - truth) ** 2) < np.mean((m_fit - truth) ** 2)
    with pytest.raises(InputError, match="common_fit"):
        _head(common_fit="depth")
    with pytest.raises(InputError, match="common_fit"):
        create_model("align-st", **{**TINY["align-st"], "common_fit": "depth"})


def _support_task():
    """Seen (context, with slots) and unseen genes, a slide, seen-gene targets, all its spots."""
    torch.manual_seed(0)
    genes = make_genes()
    seen, unseen = genes.select(range(8)), genes.select(range(8, genes.n_genes))
    seen.ids = torch.arange(8)
    slide = make_slide(2)
    y = torch.randn(slide.n_spots, 8)
    return seen, unseen, slide, y, torch.ones(slide.n_spots, dtype=torch.bool)


def test_departure_scale_scales_only_the_departure_and_only_at_prediction():
    seen, unseen, slide, y, every = _support_task()
    preds, train_preds = {}, {}
    for c in (1.0, 1.5):
        torch.manual_seed(0)  # the same weights for both scales
        model = create_model(
            "align-st",
            **{**TINY["align-st"], **KERNEL, "n_support": 8, "departure_scale": c},
            departure_shrink=0.0,
        ).eval()
        model.set_anchor(slide.image.numpy())
        model.fit_support([slide], [y], [every], final=True)
        with torch.no_grad():
            preds[c] = model(slide, unseen, seen)
            # training fits the context genes and scores them: no scale there
            train_preds[c] = model(slide, unseen, seen, support=(y, every))
    assert torch.allclose(train_preds[1.0], train_preds[1.5], atol=1e-5)
    # the common pattern m (the GCV ridge of the spots' mean target) and each gene's level
    # are kept ...
    model.kernel.departure_scale = 1e-9
    with torch.no_grad():
        m = model(slide, unseen, seen)
    level = m - m[:, :1]
    assert torch.allclose(level, level[:1], atol=1e-5)
    # ... and only the departure from it is scaled
    dep = preds[1.0] - m
    assert dep.abs().mean() > 1e-3
    assert torch.allclose(preds[1.5] - m, 1.5 * dep, atol=1e-4)


def test_a_run_saved_before_the_departure_scale_loads_with_scale_one(kernel_run, tmp_path):
    m, test, pg, unseen, _ = kernel_run
    assert m.module.kernel.spot_stats is not None  # the default keeps them
    old = GeneshotModel.load(_as_before_the_departure_factor(m.save(tmp_path / "run")))
    kernel = old.module.kernel
    assert (kernel.departure_scale, kernel.departure_shrink, kernel.spot_stats) == (1.0, 0.0, None)
    assert np.isfinite(old.predict(test, pg, unseen)).all()


def test_departure_factor_is_shared_by_numpy_and_torch():
    r2 = np.array([0.0, 0.01, 0.25, 4.0])
    f = departure_factor(r2, 1.0, 2.0, 0.5)
    assert np.allclose(f, 2.0 * np.sqrt(r2) / (np.sqrt(r2) + 0.5))
    assert np.allclose(departure_factor(torch.from_numpy(r2), 1.0, 2.0, 0.5).numpy(), f)
    assert np.allclose(departure_factor(r2, 1.0, 2.0, 0.0), 2.0)  # no shrink: the scale


def test_departure_shrink_waits_for_the_final_fits_and_reads_the_spots_covariance():
    seen, unseen, slide, y, every = _support_task()
    cfg = {**TINY["align-st"], **KERNEL, "n_support": 8, "departure_scale": 1.0}
    preds, epochs = {}, {}
    for shrink in (0.0, 0.3):
        torch.manual_seed(0)
        model = create_model("align-st", **{**cfg, "departure_shrink": shrink}).eval()
        model.set_anchor(slide.image.numpy())
        model.fit_support([slide], [y], [every])  # an epoch's fits: no factor yet
        with torch.no_grad():
            epochs[shrink] = model(slide, unseen, seen)
        model.fit_support([slide], [y], [every], final=True)
        with torch.no_grad():
            preds[shrink] = model(slide, unseen, seen)
        assert ("kernel.spot_cov" in model.state_dict()) == (shrink > 0)  # scale 1: none
    assert torch.allclose(epochs[0.3], epochs[0.0], atol=1e-5)
    model.kernel.departure_scale = 1e-9  # the common pattern and each gene's level alone
    with torch.no_grad():
        m = model(slide, unseen, seen)
    dep0, dep = preds[0.0] - m, preds[0.3] - m
    kept = (dep * dep0).sum(0) / (dep0**2).sum(0)
    assert torch.allclose(dep, kept * dep0, atol=1e-4)
    assert bool(((kept > 0) & (kept < 1)).all())
    # the spread over the training spots decides: here the prediction slide is the training one
    r = dep0.std(0) / (m[:, 0] - m[0, 0]).std()
    assert torch.allclose(kept, r / (r + 0.3), atol=1e-3)


def test_each_epochs_validation_predicts_with_the_common_pattern_it_will_keep():
    seen, unseen, slide, y, every = _support_task()
    cfg = {**TINY["align-st"], **KERNEL, "n_support": 8, "common_fit": "gcv"}
    torch.manual_seed(0)
    model = create_model(
        "align-st", **cfg, support_fit="learned", departure_scale=1.0, departure_shrink=0.0
    ).eval()
    model.set_anchor(slide.image.numpy())
    model.fit_support([slide], [y], [every])  # an epoch's fits, for validation
    assert model.kernel.common_w.abs().sum() > 0
    with torch.no_grad():
        epoch = model(slide, unseen, seen)
    model.fit_support([slide], [y], [every], final=True)  # learned fits, factor 1: the same
    with torch.no_grad():
        final = model(slide, unseen, seen)
    assert torch.allclose(epoch, final, atol=1e-5)


def test_sections_episodes_fit_on_the_other_sections_and_score_the_whole_section(monkeypatch):
    """``support_from="sections"``: each step fits its context genes on the other training
    sections' loss spots (never its own) and scores every loss spot of its section."""
    from geneshot.models._align_st import AlignST

    calls = []
    forward = AlignST.forward

    def spy(self, slide, genes, context=None, support=None, fit_on=None):
        if self.training:
            calls.append((slide.n_spots, support, None if fit_on is None else len(fit_on[0])))
        return forward(self, slide, genes, context, support, fit_on)

    monkeypatch.setattr(AlignST, "forward", spy)
    data = planted(seed=0)
    train_config = {**FIT, "time_budget_s": 0, "val_context": 100, "max_epochs": 3}
    m = fit_planted(
        "align-st", data, {**train_config, "support_from": "sections"}, **{**CONFIGS["align-st"], **KERNEL}
    )
    val = set(m.validation["slides"])
    spots = [s.adata.n_obs for s in data[0]]
    fitting = sum(n for i, n in enumerate(spots) if i not in val)
    assert calls and all(support is None for _, support, _ in calls)
    # the fits read every loss spot of the other fitting sections (the planted ones: 100 each)
    assert all(rows == fitting - n for n, _, rows in calls)
    _, test, pg, _, unseen = data
    y = m.target.transform(test.adata, unseen)
    depth = fit_planted("depth", planted(seed=0), {}, n_components=4)
    assert mean_pcc(y, m.predict(test, pg, unseen, shrink=0.0)) > mean_pcc(
        y, depth.predict(test, pg, unseen)
    ) + 0.3

    calls.clear()
    with pytest.raises(InputError, match="support_from"):
        fit_planted("align-st", data, {**train_config, "support_from": "genes"}, **{**CONFIGS["align-st"], **KERNEL})
