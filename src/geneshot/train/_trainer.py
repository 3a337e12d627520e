"""The torch trainer behind :meth:`GeneshotModel.train`: steps, validation, model selection.

One optimiser step sees every training section (gradients accumulated over them, or
``slides_per_step`` of them) and one shared sample of ``genes_per_step`` seen genes, drawn
with probability growing with each gene's spatial signal on the fitting sections. Model
selection is on a HELD-OUT training section (``data.validation_split``; a spot hold-out only
when there is a single training section) and, zero-shot, on held-out seen genes, scored
gene-specifically: per-gene PCC after removing each spot's mean over the validation genes from
both target and prediction, so that a model predicting only the shared per-spot pattern (what
the ``depth`` control predicts) scores zero, however high its plain PCC. A head that reads the
seen genes' fits (ALIGN-ST's kernel head) fits each step's context genes on the other training
sections and is scored on its own (``support_from="sections"``), or on half of the section's
spots and is scored on the other half (``"spots"``).

Knobs reproducing the earlier trainer (one section per step, uniform gene draws, spot hold-out,
selection on plain PCC): ``slides_per_step=1, gene_sampling="uniform", val_strategy="spots",
select_on="pcc"``. Every epoch's history row records the cumulative training (``train_s``)
and validation (``val_s``) seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time

import numpy as np
import torch

from geneshot._progress import progress_bar
from geneshot.data import validation_split, validation_spot_mask
from geneshot.errors import InputError
from geneshot.models import GeneInputs, gene_specific_loss, mse_pcc_loss
from geneshot.train._distributed import (
    all_reduce_grads,
    average_buffers,
    broadcast_params,
    rank_world,
)

log = logging.getLogger(__name__)


def _pcc_cols(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-column Pearson r; a constant column gives 0 (it carries no gene-specific pattern)."""
    yc, pc = y - y.mean(0), p - p.mean(0)
    den = np.sqrt((yc**2).sum(0) * (pc**2).sum(0))
    return np.where(den > 1e-12, (yc * pc).sum(0) / np.where(den > 1e-12, den, 1.0), 0.0)


def gene_specific_pcc(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-gene PCC after removing each spot's mean over the given genes from both sides.

    A prediction ``c_g + a * m(spot)`` (the common pattern, one shape for every gene) scores 0.
    """
    return float(_pcc_cols(y - y.mean(1, keepdims=True), pred - pred.mean(1, keepdims=True)).mean())


def spatial_signal(ys: list[torch.Tensor], masks: list[torch.Tensor]) -> np.ndarray:
    """Per-gene std over loss spots of the target with each spot's mean over genes removed."""
    y = torch.cat([yy[m] for yy, m in zip(ys, masks) if m.any()]).cpu().double()
    return (y - y.mean(1, keepdim=True)).std(0).numpy()


def split_training(gm, slides, names: list[str], rng) -> tuple[list[torch.Tensor], list[int]]:
    """Loss masks per slide and the indices of the validation slides.

    With >= 2 training sections one whole section (``validation_split``) is held out of the
    loss; with one, a random ``val_spot_frac`` of its spots.
    """
    tc = gm.train_config
    if len(slides) >= 2 and tc.val_strategy == "section":
        split = validation_split(names, strategy="section", frac=tc.val_frac, seed=tc.seed)
        val = [i for i, n in enumerate(names) if n in set(split["val"])]
        masks = [
            torch.full((s.n_spots,), i not in val, dtype=torch.bool) for i, s in enumerate(slides)
        ]
        return masks, val
    masks = [
        torch.from_numpy(~validation_spot_mask(n, s.n_spots, tc.val_spot_frac, tc.seed))
        for n, s in zip(names, slides)
    ]
    return masks, list(range(len(slides)))


@contextlib.contextmanager
def deterministic():
    """Deterministic torch kernels inside the block (the previous setting is restored).

    Without it two runs of the same seed differ from the first steps (parallel scatter-adds
    in the spot graph and the gene-graph gathers sum in varying order), and an unstable model
    amplifies that into different results. On CPU it costs nothing measurable here; on CUDA
    it warns where no deterministic kernel exists instead of failing.
    """
    was, warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn)


def fit_torch(
    gm, slides, ys, genes, seen: list[str], names: list[str], device, progress: bool
) -> None:
    """Train ``gm.module`` in place; keep the weights of the best validation epoch."""
    with deterministic():
        _fit_torch(gm, slides, ys, genes, seen, names, device, progress)


def _fit_torch(
    gm, slides, ys, genes, seen: list[str], names: list[str], device, progress: bool
) -> None:
    tc = gm.train_config
    rng = np.random.default_rng(tc.seed)
    n_genes = len(seen)
    if gm.setting == "zero-shot":
        # validation genes never enter the loss, as the unseen test genes; drawn from the most
        # expressed seen genes (the caller orders them by training mean), as the test genes are
        n_val = min(tc.n_val_genes, max(2, n_genes // 5))
        val_genes = np.sort(rng.choice(min(n_genes, 4 * n_val), n_val, replace=False))
        train_genes = np.setdiff1d(np.arange(n_genes), val_genes)
    else:
        val_genes = train_genes = np.arange(n_genes)
    masks, val_slides = split_training(gm, slides, names, rng)
    fit_slides = [i for i in range(len(slides)) if bool(masks[i].any())]
    gin = gm._genes(genes, seen).to(device)
    p_gene = None
    if tc.gene_sampling == "signal":
        signal = spatial_signal(ys, masks)[train_genes]
        p_gene = signal / signal.sum() if signal.sum() > 0 else None
    slides = [s.to(device) for s in slides]
    ys = [y.to(device) for y in ys]
    masks = [m.to(device) for m in masks]
    mod = gm.module.to(device)
    # a head that reads the seen genes' fits (ALIGN-ST's kernel head): its fixed spot axes
    # come from the fitting sections' features, and each step fits the context genes on half
    # of the section's loss spots and scores the output genes on the other half
    support = bool(getattr(mod, "uses_support", False))
    if support:
        mod.set_anchor(torch.cat([slides[i].image for i in fit_slides]).cpu().numpy())
    if support and mod.config.get("kernel_cv_start"):
        # the kernel starts where the closed-form gene CV puts it, on the training genes only
        cols = torch.from_numpy(train_genes).to(device)
        start = mod.choose_kernel_start(
            [slides[i] for i in fit_slides],
            [ys[i][:, cols] for i in fit_slides],
            [masks[i] for i in fit_slides],
            gin.select(torch.from_numpy(train_genes)),
        )
        log.info("%s: kernel starts at the gene CV's choice %s", gm.name, start)
    opt = torch.optim.AdamW(mod.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    rank, world = rank_world()
    # slides per optimiser step over all processes: all fitting sections by default, else
    # slides_per_step; a multiple of the world size, so W processes == 1 process with W slides
    group = tc.slides_per_step or len(fit_slides)
    group = int(math.ceil(max(group, world) / world) * world)
    if world > 1:
        broadcast_params(mod)
    val_ctx = None
    if gm.setting == "zero-shot":
        n_ctx = min(len(train_genes), tc.val_context)
        val_ctx = np.sort(np.random.default_rng(0).choice(train_genes, n_ctx, replace=False))
    shuffle = np.random.default_rng(tc.seed + 1).permutation(len(val_genes))
    best, best_state, bad, queue = -math.inf, None, 0, []
    t0 = time.perf_counter()
    t_train = t_val = slowest = 0.0
    exact_shuffle = True  # run the shuffled-text pass until it is seen to be a column permutation
    bar = progress_bar(
        range(tc.max_epochs), progress=progress and rank == 0, desc=f"train {gm.name}", leave=False
    )
    for epoch in bar:
        mod.train()
        losses = []
        t1 = time.perf_counter()
        for _ in range(tc.steps_per_epoch):
            if not queue:
                queue = [fit_slides[i] for i in rng.permutation(len(fit_slides))]
            step, queue = queue[:group], queue[group:]
            # every rank draws the same genes for the step (one shared sample for all slides)
            k = min(tc.genes_per_step, len(train_genes))
            pick = np.sort(rng.choice(train_genes, k, replace=False, p=p_gene))
            ctx_idx = None
            if support and not (gm.setting == "zero-shot" and tc.context_per_step):
                raise InputError(None, f"model {gm.name!r} reads the seen genes' fits but the trainer passes no context genes", "train zero-shot with context_per_step > 0")
            if gm.setting == "zero-shot" and tc.context_per_step:
                rest = np.setdiff1d(train_genes, pick)
                if len(rest):
                    ctx_idx = rng.choice(rest, min(tc.context_per_step, len(rest)), replace=False)
            if support and ctx_idx is None:
                # every training gene is an output gene of the step (a small gene set): half
                # of them are fitted, the other half predicted from those fits
                if len(pick) < 2:
                    raise InputError(None, f"model {gm.name!r} needs at least 2 training genes, got {len(pick)}", "train on more seen genes (--seen-pool)")
                pick, ctx_idx = pick[len(pick) // 2 :], pick[: len(pick) // 2]
            out_genes = gin.select(torch.from_numpy(pick))
            ctx = None if ctx_idx is None else gin.select(torch.from_numpy(ctx_idx))
            cols = torch.from_numpy(pick).to(device)
            # the spots each slide fits its context genes on (support heads), drawn for every
            # slide of the step on every rank so that the ranks' random streams stay in step;
            # drawn under support_from="sections" too (unused there), so that both modes draw
            # the same genes step by step
            fits = {i: torch.from_numpy(rng.random(slides[i].n_spots) < 0.5).to(device) for i in step} if support else {}
            across = support and tc.support_from == "sections" and len(fit_slides) > 1
            ctx_cols = torch.from_numpy(ctx_idx).to(device) if support else None
            opt.zero_grad()
            for r, i in enumerate(step):
                if r % world != rank:
                    continue
                m = masks[i]
                if across:
                    others = [j for j in fit_slides if j != i]
                    u_fit = torch.cat([mod.kernel_spots(slides[j])[masks[j]] for j in others])
                    y_fit = torch.cat([ys[j][masks[j]][:, ctx_cols] for j in others])
                    pred = mod(slides[i], out_genes, ctx, fit_on=(u_fit, y_fit))
                elif support:
                    pred = mod(slides[i], out_genes, ctx, support=(ys[i][:, ctx_cols], m & fits[i]))
                    m = m & ~fits[i]
                else:
                    pred = mod(slides[i], out_genes, ctx)
                target = ys[i][m][:, cols]
                loss = mse_pcc_loss(pred[m], target, tc.pcc_weight)
                if tc.gene_specific_weight:
                    loss = loss + tc.gene_specific_weight * gene_specific_loss(
                        pred[m], target, tc.pcc_weight
                    )
                (loss / len(step)).backward()
                losses.append(loss.item())
            if world > 1:
                all_reduce_grads(mod)
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(mod.parameters(), tc.grad_clip)
            opt.step()
        if world > 1:
            # identical BatchNorm statistics -> identical validation on all ranks
            average_buffers(mod)
        t2 = time.perf_counter()
        if support:  # the seen genes' fits under this epoch's weights, from the loss spots
            mod.fit_support([slides[i] for i in fit_slides], [ys[i] for i in fit_slides], [masks[i] for i in fit_slides])
        scores = validate(
            mod, slides, ys, masks, val_slides, gin, val_genes, val_ctx, shuffle, exact_shuffle
        )
        exact_shuffle = not scores.pop("shuffle_is_permutation")
        t3 = time.perf_counter()
        t_train, t_val = t_train + t2 - t1, t_val + t3 - t2
        loss_mean = float(np.mean(losses)) if losses else float("nan")
        elapsed = t3 - t0
        gm.history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_mean,
                **scores,
                "elapsed_s": round(elapsed, 2),
                "train_s": round(t_train, 2),
                "val_s": round(t_val, 2),
            }
        )
        # the selection criterion: gene-specific PCC (default) or plain per-gene PCC
        val = scores["val_score"] if tc.select_on == "gene_specific" else scores["val_pcc"]
        bar.set_postfix(loss=f"{loss_mean:.3f}", val=f"{val:.3f}")
        if rank == 0:
            log.info(
                "%s epoch %d/%d: loss %.4f, validation gene-specific PCC %.3f (shuffled text %.3f, plain PCC %.3f), gene-vector cosine %.3f (centred %.3f), map correlation %.3f",
                gm.name,
                epoch + 1,
                tc.max_epochs,
                loss_mean,
                val,
                scores["val_shuffled"],
                scores["val_pcc"],
                scores["gene_cosine"],
                scores["gene_cosine_centred"],
                scores["map_corr"],
            )
        if val > best + 1e-4:
            best, bad = val, 0
            best_state = {k: v.detach().clone() for k, v in mod.state_dict().items()}
        else:
            bad += 1
        stop = bad >= tc.patience
        # budget: stop when another epoch as slow as the slowest so far would not fit (decided
        # on rank 0 for all ranks); on shared cores an epoch's time varies several-fold
        slowest = max(slowest, t3 - t1)
        if tc.time_budget_s and elapsed + slowest > tc.time_budget_s:
            stop = True
        if world > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(stop)])
            dist.broadcast(flag, src=0)
            stop = bool(flag.item())
        if stop:
            log.info(
                "%s: stopped after epoch %d (%.0f s; best validation %.3f)",
                gm.name,
                epoch + 1,
                elapsed,
                best,
            )
            break
    if best_state is not None:
        mod.load_state_dict(best_state)  # with the support fits made for that epoch's validation
    gm.best_val = best
    # what was held out of the loss, for choices made after training (train._composite)
    gm.validation = {
        "slides": list(val_slides),
        "genes": np.asarray(val_genes).tolist(),
        "held_out": [(~m).cpu().numpy() for m in masks],
    }
    mod.eval()


@torch.no_grad()
def validate(
    mod,
    slides,
    ys,
    masks,
    val_slides,
    gin: GeneInputs,
    val_genes,
    val_ctx,
    shuffle,
    exact_shuffle: bool = True,
) -> dict:
    """Scores on the held-out spots of ``val_slides`` for ``val_genes``.

    ``val_score`` (gene-specific PCC, the selection criterion), ``val_pcc`` (plain per-gene
    PCC), ``val_shuffled`` (gene-specific PCC with descriptions shuffled among the validation
    genes: what the model gets from text identity), ``gene_cosine`` (mean pairwise cosine
    of the validation genes' output vectors), ``gene_cosine_centred`` (the same after removing
    their mean vector: a shared part that all genes carry is the common pattern, and the
    gene-specific loss leaves it in place while the genes spread around it) and ``map_corr``
    (mean pairwise correlation of the validation genes' predicted maps; near 1 = every gene
    has the same map).
    """
    mod.eval()
    vg = torch.from_numpy(val_genes)
    genes = gin.select(vg)
    shuffled = gin.select(vg[torch.from_numpy(shuffle)])
    ctx = None if val_ctx is None else gin.select(torch.from_numpy(val_ctx))
    ys_, ps, pss, cos, cos_c, same = [], [], [], [], [], True
    # shuffling descriptions among the validation genes only relabels the same set of gene
    # inputs (the gene graph sees the same texts), so an eval-mode model's shuffled prediction
    # is its prediction with permuted columns; checked once, then read off for free
    perm = torch.from_numpy(shuffle)
    for i in val_slides:
        hold = ~masks[i]
        if int(hold.sum()) < 3:
            continue
        y = ys[i][hold][:, vg.to(ys[i].device)].cpu().numpy()
        ys_.append(y)
        p = mod(slides[i], genes, ctx)[hold]
        ps.append(p.cpu().numpy())
        ps_ = p[:, perm.to(p.device)]
        if exact_shuffle:
            real = mod(slides[i], shuffled, ctx)[hold]
            same = same and bool(torch.allclose(real, ps_, atol=1e-4, rtol=1e-3))
            ps_ = real
        pss.append(ps_.cpu().numpy())
        w = getattr(mod, "last_gene_vectors", None)  # this forward's gene vectors, if kept
        # one section is enough for a diagnostic
        if w is None and hasattr(mod, "encode_genes") and not cos:
            w, _ = mod.encode_genes(genes, slides[i], ctx)
        if w is not None and not cos:
            cos.append(_mean_pairwise_cosine(w.float()))
            cos_c.append(_mean_pairwise_cosine(w.float() - w.float().mean(0, keepdim=True)))
    if not ys_:
        nan = float("nan")
        return {
            "val_score": nan,
            "val_pcc": nan,
            "val_shuffled": nan,
            "gene_cosine": nan,
            "gene_cosine_centred": nan,
            "map_corr": nan,
            "shuffle_is_permutation": False,
        }
    # per section, then averaged: sections differ in depth and composition
    return {
        "val_score": float(np.mean([gene_specific_pcc(y, p) for y, p in zip(ys_, ps)])),
        "val_pcc": float(np.mean([_pcc_cols(y, p).mean() for y, p in zip(ys_, ps)])),
        "val_shuffled": float(np.mean([gene_specific_pcc(y, p) for y, p in zip(ys_, pss)])),
        "gene_cosine": float(np.mean(cos)) if cos else float("nan"),
        "gene_cosine_centred": float(np.mean(cos_c)) if cos_c else float("nan"),
        "map_corr": float(np.mean([_mean_map_corr(p) for p in ps])),
        "shuffle_is_permutation": same,
    }


def _mean_pairwise_cosine(w: torch.Tensor) -> float:
    w = torch.nn.functional.normalize(w, dim=1)
    c = w @ w.T
    n = c.shape[0]
    return float((c.sum() - c.diagonal().sum()) / max(n * (n - 1), 1))


def _mean_map_corr(p: np.ndarray) -> float:
    """Mean pairwise Pearson correlation between the columns (gene maps) of ``p``."""
    keep = p.std(0) > 0
    if keep.sum() < 2:
        return float("nan")
    c = np.corrcoef(p[:, keep].T)
    n = c.shape[0]
    return float((c.sum() - np.trace(c)) / (n * (n - 1)))
