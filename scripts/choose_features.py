"""Choose a feature default (image context, or the gene encoder) by nested CV.

Usage::

    GENESHOT_DATA=/path/to/data python scripts/choose_features.py --csv choose_features.csv
    python scripts/choose_features.py --what gene-encoder --csv choose_gene_encoder.csv

For each outer leave-one-section-out fold over the imaged HER2+ sections (C2-C6), an
inner leave-one-section-out over ITS training sections only scores every candidate
feature config; the candidate with the best inner mean is that outer fold's pick, and the
picked config is then scored once on the outer test section. The outer test section is
never used to choose. Scores are per-section PCC@M on the unseen genes (the 250 most
expressed genes of the fold's training sections, libsize targets) of two models trained
through :func:`geneshot.workflow.train_model`, exactly as the benchmark trains them:

- ``ridge``, setting ``supervised`` (PCA + ridge on the unseen genes: the ceiling);
- ``depth``, setting ``zero-shot`` (one per-spot value from the seen genes: the control).

The selection score is the mean of the two. With ``--what gene-encoder`` the candidates
are the registered gene encoders (on the default image features) and the models the two
closed-form zero-shot baselines that read nothing but the gene vectors and the seen genes'
image fits: ``text-knn`` and ``gene-kernel``. With ``--what trainer`` / ``--what head`` the
candidates are ALIGN-ST training losses / heads with and without the validation keep rule,
scored by ``align-st`` alone; ``--what locus`` / ``--what kernel-start`` score ALIGN-ST with and
without the genes' locus kernel / with its kernel started at the gene CV's choice or at its
config values / with its stored seen-gene fits at the learned penalty or at per-gene GCV
penalties (``--what support-fit``), and with its common pattern from the stored fits' mean or
its own GCV ridge (``--what common-fit``), and with its training steps fitting the seen genes on
half of a section's spots or on the other training sections (``--what support-from``; scored
beside ``gene-kernel``), the same way. ``--what cv-fits`` scores ``gene-kernel``
and ALIGN-ST with the gene CV reading in-sample or out-of-section fits of the seen genes.
``--what departure-scale`` scores both with the departure from the common pattern scaled at
prediction (:mod:`geneshot.models._gene_cv`); the scale changes nothing in training, so each
model is trained once per fold and predicts with every candidate. ``--criterion loss-averse``
ranks the inner folds by the mean PCC plus the mean shortfall below the depth control, trained
beside each inner fold (:func:`geneshot.metrics.loss_averse_score`: a loss below depth counts
twice), instead of the mean PCC alone. Every prepared input comes from the geneshot
cache and every fold's scores are kept in ``--scores`` (JSON), so a rerun only fits what
is missing. With ``--what augment`` the candidates add training data to the frozen
features (stain-jittered copies of the training sections; a small adapter trained on the
seen genes; the encoder's last block fine-tuned on them), scored by ridge, gene-kernel and
depth. Prints a markdown table (inner means, picks, outer scores, seconds per
candidate) and writes the long table to ``--csv``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from geneshot.benchmark._fold import RunState, fold_reference
from geneshot.cache import Cache
from geneshot.data import TargetTransform
from geneshot.image import StainJitter
from geneshot.metrics import loss_averse_score, miss_share
from geneshot.models import MODELS as MODEL_SPECS
from geneshot.models._gene_cv import DEPARTURE_SCALES, DEPARTURE_SHRINKS
from geneshot.prepare import FeatureConfig, prepare_sections
from geneshot.workflow import evaluate, load_sections, split_and_describe, train_model

SECTIONS = ["C2", "C3", "C4", "C5", "C6"]
RINGS = (300.0, 500.0)  # legacy ST pitch 200 µm: ring 1 = 8 neighbours, ring 2 = the next 12
CANDIDATES: dict[str, dict] = {
    "patch": {},
    "rings": {"context_um": RINGS},
    "fov": {"fov_um": (224.0, 448.0)},
    "rings+fov": {"fov_um": (224.0, 448.0), "context_um": RINGS},
    "rings(patch)+fov": {"fov_um": (224.0, 448.0), "context_um": RINGS, "context_on": "patch"},
    "fov3": {"fov_um": (224.0, 448.0, 896.0)},
    # larger backbones with the default windows and rings (issue "Image features that see more")
    "lite1": {"image_encoder": "effnet-lite1", "fov_um": (224.0, 448.0), "context_um": RINGS},
    "lite2": {"image_encoder": "effnet-lite2", "fov_um": (224.0, 448.0), "context_um": RINGS},
    # test-time augmentation: features averaged over the 8 flips / rotations of every window
    "lite1+tta": {
        "image_encoder": "effnet-lite1",
        "tta": True,
        "fov_um": (224.0, 448.0),
        "context_um": RINGS,
    },
}
MODELS = {"ridge": "supervised", "depth": "zero-shot"}
GENE_CANDIDATES: dict[str, dict] = {
    name: {"gene_encoder": name} for name in ("description", "go-tokens", "description+go-tokens")
}
GENE_MODELS = {"text-knn": "zero-shot", "gene-kernel": "zero-shot"}
# ALIGN-ST's training loss: candidates are TrainConfig overrides (a fixed epoch count, no
# wall-clock budget, so that a score does not depend on the machine's load)
FIXED_EPOCHS = {"time_budget_s": 0, "max_epochs": 15, "patience": 15}
TRAINER_CANDIDATES: dict[str, dict] = {
    "plain loss": {"train": FIXED_EPOCHS},
    "+ gene-specific loss": {"train": {**FIXED_EPOCHS, "gene_specific_weight": 1.0}},
}
# ALIGN-ST's head and the validation keep rule (train._fallback), at its default 40 epochs:
# candidates are TrainConfig ("train") and model config ("model") overrides
_KERNEL = {"head": "kernel"}
_KERNEL_TRAIN = {"context_per_step": 256, "val_context": 512}
HEAD_CANDIDATES: dict[str, dict] = {
    "dot, keep all": {"train": {"keep_rule": False}},
    "dot + keep rule": {"train": {}},
    "kernel, keep all": {"train": {**_KERNEL_TRAIN, "keep_rule": False}, "model": _KERNEL},
    "kernel + keep rule": {"train": _KERNEL_TRAIN, "model": _KERNEL},
    # how long the kernel head trains (it starts at a closed-form kernel ridge)
    "kernel, keep all, 5 epochs": {
        "train": {**_KERNEL_TRAIN, "keep_rule": False, "max_epochs": 5},
        "model": _KERNEL,
    },
    "kernel, keep all, 15 epochs": {
        "train": {**_KERNEL_TRAIN, "keep_rule": False, "max_epochs": 15},
        "model": _KERNEL,
    },
}
# ALIGN-ST (kernel head, its default training) with and without each stage: a stage stays on
# when it adds >= 0.005 PCC@M to the inner mean (the rule, on inner folds only)
STAGE_CANDIDATES: dict[str, dict] = {
    "all stages": {"model": {}},
    "no_ndaife": {"model": {"use_ndaife": False}},
    "no_prompts": {"model": {"use_text_prompts": False, "use_visual_prompts": False}},
    "no_asig": {"model": {"use_asig": False}},
    "no_spot_graph": {"model": {"use_spot_graph": False}},
}
# ALIGN-ST (kernel head, its default training) with and without the genes' locus kernel
LOCUS_CANDIDATES: dict[str, dict] = {
    "locus": {"model": {}},
    "no locus": {"model": {"kernel_locus": 0.0}},
}
# ... and with its kernel started at the gene CV's choice or at the config's values
KERNEL_START_CANDIDATES: dict[str, dict] = {
    "cv start": {"model": {"kernel_cv_start": True}},
    "config start": {"model": {"kernel_cv_start": False}},
}
# ... and with the seen genes' stored fits at its learned penalty or at a penalty per gene by GCV
SUPPORT_FIT_CANDIDATES: dict[str, dict] = {
    "learned fits": {"model": {"support_fit": "learned"}},
    "gcv fits": {"model": {"support_fit": "gcv"}},
}
# ... and with its common pattern at prediction from the mean of the stored fits or from its own
# ridge of the spots' mean target, penalty by GCV (the depth control's rule)
COMMON_FIT_CANDIDATES: dict[str, dict] = {
    "mean of fits": {"model": {"common_fit": "mean"}},
    "gcv common": {"model": {"common_fit": "gcv"}},
}
# the seen genes' maps that the gene CV (gene-kernel's choice, ALIGN-ST's kernel start) reads:
# fitted in-sample, or each training section predicted from the other training sections
CV_FITS_CANDIDATES: dict[str, dict] = {
    "in-sample": {"model": {"cv_fits": "in-sample"}},
    "out-of-section": {"model": {"cv_fits": "out-of-section"}},
}
CV_FITS_MODELS = {"gene-kernel": "zero-shot", "align-st": "zero-shot"}
# the reference-assisted gene-kernel (co-expression in the fold's expression reference: every
# section of the patients in neither the training nor the test sections, the benchmark's rule)
REFERENCE_MODELS = {"gene-kernel+ref": "zero-shot"}
# ... and with their departure from the common pattern scaled at prediction ("predict": set on
# the trained model, so one training per fold serves every candidate)
# (trained with a shrink > 0 so that ALIGN-ST keeps the spots' covariance the shrink reads)
DEPARTURE_SCALE_CANDIDATES: dict[str, dict] = {
    f"scale {c:g}, shrink {r0:g}": {
        "model": {"departure_shrink": 0.2},
        "predict": {"departure_scale": c, "departure_shrink": r0},
    }
    for r0 in DEPARTURE_SHRINKS
    for c in DEPARTURE_SCALES
}
# ALIGN-ST's stored seen-gene fits (learned penalty / per-gene GCV) crossed with the departure
# grid: the factor amplifies the fits' departures, so their smoothness may matter again
SUPPORT_DEPARTURE_CANDIDATES: dict[str, dict] = {
    f"{fit} fits, {name}": {
        "model": {**cand["model"], "support_fit": fit},
        "predict": cand["predict"],
    }
    for fit in ("learned", "gcv")
    for name, cand in DEPARTURE_SCALE_CANDIDATES.items()
}
# ALIGN-ST's training episodes: the context genes fitted on half of the section's spots and
# scored on the other half, or fitted on the other training sections and scored on this one
SUPPORT_FROM_CANDIDATES: dict[str, dict] = {
    "spots": {"train": {"support_from": "spots"}},
    "sections": {"train": {"support_from": "sections"}},
    "sections, 15 epochs": {"train": {"support_from": "sections", "max_epochs": 15}},
    # the head's kernel parameters and spot scale barely leave their start at lr 1e-3 in 20
    # steps; a larger step lets them move (validation keeps improving through 15 epochs)
    "sections, lr 0.01, 15 epochs": {
        "train": {"support_from": "sections", "max_epochs": 15, "lr": 0.01}
    },
    "sections, lr 0.03, 15 epochs": {
        "train": {"support_from": "sections", "max_epochs": 15, "lr": 0.03}
    },
}
# how many principal components of the image features the seen genes' fits read (never chosen
# before session 16: 256 since the first session): ALIGN-ST's spot anchors, gene-kernel's PCA
# (--what components) and gene-kernel+ref's (--what reference-components, session 17)
def _component_candidates(key: str) -> dict[str, dict]:
    return {f"{k} components": {"model": {key: k}} for k in (128, 256, 512)}


ANCHOR_CANDIDATES = _component_candidates("kernel_anchor")
COMPONENTS_CANDIDATES = _component_candidates("n_components")
# SGN with and without the validation keep rule
SGN_CANDIDATES: dict[str, dict] = {
    "sgn + keep rule": {"train": {}},
    "sgn, keep all": {"train": {"keep_rule": False}},
}
TRAINER_MODELS = {"align-st": "zero-shot"}
# what the seen genes' training data may add to the frozen features (issue "Image features
# that see more"): stain-augmented copies of the training sections (one HED jitter per copy
# and section, as another lab's staining), a small adapter trained on the seen genes, or the
# encoder's last block fine-tuned on them. "augment" / "adapter" are settings read by
# score_fold; "finetune" is a FeatureConfig key.
AUGMENT_CANDIDATES: dict[str, dict] = {
    "frozen": {},
    "stain x1": {"augment": {"copies": 1, "sigma": 0.05}},
    "stain x2": {"augment": {"copies": 2, "sigma": 0.05}},
    "features+adapter": {"adapter": {"hidden": 256, "epochs": 30}},
    # the encoder's last block fine-tuned on each model's training genes (train._finetune)
    "finetune": {"finetune": True},
}
AUGMENT_MODELS = {"ridge": "supervised", "gene-kernel": "zero-shot", "depth": "zero-shot"}
# what --what chooses: its candidates and the models that score them
WHAT = {
    "features": (CANDIDATES, MODELS),
    "gene-encoder": (GENE_CANDIDATES, GENE_MODELS),
    "trainer": (TRAINER_CANDIDATES, TRAINER_MODELS),
    "head": (HEAD_CANDIDATES, TRAINER_MODELS),
    "sgn-keep": (SGN_CANDIDATES, {"sgn": "zero-shot"}),
    "stages": (STAGE_CANDIDATES, TRAINER_MODELS),
    "locus": (LOCUS_CANDIDATES, TRAINER_MODELS),
    "kernel-start": (KERNEL_START_CANDIDATES, TRAINER_MODELS),
    "support-fit": (SUPPORT_FIT_CANDIDATES, TRAINER_MODELS),
    "common-fit": (COMMON_FIT_CANDIDATES, TRAINER_MODELS),
    # gene-kernel's own common pattern (session 18; ALIGN-ST's was chosen in session 8)
    "gene-kernel-common-fit": (COMMON_FIT_CANDIDATES, {"gene-kernel": "zero-shot"}),
    "cv-fits": (CV_FITS_CANDIDATES, CV_FITS_MODELS),
    "departure-scale": (DEPARTURE_SCALE_CANDIDATES, CV_FITS_MODELS),
    "reference-departure": (DEPARTURE_SCALE_CANDIDATES, REFERENCE_MODELS),
    "support-departure": (SUPPORT_DEPARTURE_CANDIDATES, TRAINER_MODELS),
    "support-from": (SUPPORT_FROM_CANDIDATES, CV_FITS_MODELS),
    "anchor": (ANCHOR_CANDIDATES, TRAINER_MODELS),
    "components": (COMPONENTS_CANDIDATES, {"gene-kernel": "zero-shot"}),
    "reference-components": (COMPONENTS_CANDIDATES, REFERENCE_MODELS),
    "augment": (AUGMENT_CANDIDATES, AUGMENT_MODELS),
}


def stain_copies(
    sections: list, config: FeatureConfig, cache: Cache, copies: int, sigma: float
) -> list:
    """``copies`` stain-jittered copies of each section (seeded by section and copy; cached)."""
    out = []
    for s in sections:
        for c in range(copies):
            jitter = StainJitter(sigma, seed=zlib.crc32(f"{s.name}:{c}".encode()))
            out += prepare_sections([s.adata], config, cache=cache, progress=False, augment=jitter)
    return out


def with_adapter(
    train: list, test, genes: list[str], target, hidden: int, epochs: int
) -> tuple[list, object]:
    """Append a small adapter's features: an MLP from the frozen features to the seen genes.

    One hidden layer (GELU, dropout) trained on the training sections' z-scored seen-gene
    targets; its hidden units are appended (scaled to the frozen block's spread) to every
    section's features, so the models downstream choose what to use.
    """
    import torch

    torch.manual_seed(0)
    x = np.vstack([s.image for s in train]).astype(np.float32)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    y = np.vstack([target.transform(s.adata, genes) for s in train])
    z = torch.from_numpy(((y - y.mean(0)) / (y.std(0) + 1e-6)).astype(np.float32))
    net = torch.nn.Sequential(
        torch.nn.Dropout(0.2),
        torch.nn.Linear(x.shape[1], hidden),
        torch.nn.GELU(),
        torch.nn.Dropout(0.5),
    )
    head = torch.nn.Linear(hidden, z.shape[1])
    opt = torch.optim.AdamW([*net.parameters(), *head.parameters()], 1e-3, weight_decay=1e-2)
    xt = torch.from_numpy((x - mu) / sd)
    for _ in range(epochs):
        for b in torch.randperm(len(xt)).split(128):
            loss = ((head(net(xt[b])) - z[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()

    def adapted(s):
        with torch.no_grad():
            h = net(torch.from_numpy((s.image.astype(np.float32) - mu) / sd)).numpy()
        return dataclasses.replace(
            s, image=np.hstack([s.image, h * float(sd.mean() / (h.std() + 1e-6))])
        )

    return [adapted(s) for s in train], adapted(test)


def set_departure(model, scale: float, shrink: float) -> None:
    """Predict with this departure scale and shrink (gene-kernel reads its config, ALIGN-ST its head)."""
    module = model.module
    module.config.update(departure_scale=scale, departure_shrink=shrink)
    if getattr(module, "kernel", None) is not None:
        module.kernel.departure_scale, module.kernel.departure_shrink = scale, shrink


def score_fold(
    prepared: dict,
    train: list[str],
    test: str,
    config: FeatureConfig,
    cache: Cache,
    split_memo: dict,
    models: dict[str, str],
    train_config: dict | None = None,
    model_config: dict | None = None,
    augment: dict | None = None,
    adapter: dict | None = None,
    predict: dict | None = None,
    trained: dict | None = None,
    per_gene: bool = False,
    reference=None,
) -> dict:
    """Per-section PCC@M on ``test`` of each model trained on ``train`` with ``config``.

    ``predict`` (``{"departure_scale": c, "departure_shrink": r0}``): set on the trained
    model before predicting;
    ``trained`` memoises the trained models across such candidates (training ignores them);
    ``per_gene``: also keep each model's PCC per unseen gene, under ``"<model>:genes"``;
    ``reference``: the fold's expression reference, for the models that need one.
    """
    tr = [prepared[s] for s in train]
    test_section = prepared[test]
    key = (tuple(train), config.gene_encoder)
    if key not in split_memo:  # the gene split depends on counts only, not on the image features
        split_memo[key] = split_and_describe(tr, config, cache=cache, progress=False)
    split, genes = split_memo[key]
    target = TargetTransform.fit([s.adata for s in tr], "libsize")
    fit_on = tr
    if adapter:
        fit_on, test_section = with_adapter(tr, test_section, list(split.seen), target, **adapter)
    if augment:
        # the split and the target transform stay those of the real sections
        fit_on = tr + stain_copies(tr, config, cache, **augment)
    out = {}
    for name, setting in models.items():
        # a closed-form estimator ignores the trainer's settings: one fit serves every candidate
        trains = None if MODEL_SPECS[name].kind == "estimator" else train_config
        key = (tuple(train), name, json.dumps([trains, model_config], sort_keys=True))
        model = None if trained is None else trained.get(key)
        if model is None:
            model = train_model(
                name,
                setting,
                fit_on,
                genes,
                split,
                target,
                config,
                progress=False,
                train_config=train_config,
                model_config=model_config,
                cache=cache,
                reference=reference if MODEL_SPECS[name].needs_reference else None,
            )
            if trained is not None:
                trained[key] = model
        if predict:
            set_departure(
                model, float(predict["departure_scale"]), float(predict["departure_shrink"])
            )
        summary, table, *_ = evaluate(model, [test_section], genes, split.unseen)
        out[name] = float(summary["per_section"]["pcc_m"])
        if per_gene:
            out[f"{name}:genes"] = table["r_per_section"].dropna().to_dict()
    return out


def keep(scores: dict, path: Path, key: str, fold: tuple, models: dict[str, str], **kw) -> None:
    """``scores[key]``: :func:`score_fold` of ``fold`` (its first six arguments) with ``models``
    and the seconds it took, written to ``path`` at once (a rerun fits only what is missing)."""
    t0 = time.perf_counter()
    scores[key] = score_fold(*fold, models, **kw)
    scores[key]["seconds"] = time.perf_counter() - t0
    path.write_text(json.dumps(scores, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=None, help="her2st folder (default: $GENESHOT_DATA/her2st)"
    )
    ap.add_argument(
        "--what",
        choices=list(WHAT),
        default="features",
        help="choose the image-feature config, the gene encoder, ALIGN-ST's training loss or its head and keep rule",
    )
    ap.add_argument(
        "--inner-folds",
        type=int,
        default=0,
        help="inner folds per outer fold (0 = all; n = hold out each of the last n training sections)",
    )
    ap.add_argument(
        "--skip-outer",
        action="store_true",
        help="choose only: do not score the outer test sections (the benchmark does that)",
    )
    ap.add_argument(
        "--candidates",
        default=None,
        help="candidate names, separated by ';' (or by ',' when no name holds a comma; one name with a comma: end it with ';')",
    )
    ap.add_argument(
        "--select-on",
        default=None,
        help="choose by this model's inner score alone (default: the mean of the candidates' models)",
    )
    ap.add_argument(
        "--criterion",
        choices=["mean", "loss-averse"],
        default="mean",
        help="what the inner folds rank by: PCC@M, or PCC@M plus the mean shortfall below the depth control (geneshot.metrics.loss_averse_score)",
    )
    ap.add_argument("--csv", type=Path, default=Path("choose_features.csv"))
    ap.add_argument(
        "--scores",
        type=Path,
        default=Path("choose_features_scores.json"),
        help="fold scores kept between runs",
    )
    args = ap.parse_args(argv)
    data = args.data or Path(os.environ.get("GENESHOT_DATA", "")) / "her2st"
    if not data.is_dir():
        sys.exit(f"{data}: no her2st folder; pass --data or set GENESHOT_DATA")
    candidates, models = WHAT[args.what]
    sep = ";" if args.candidates and ";" in args.candidates else ","
    names = (
        [n.strip() for n in args.candidates.split(sep) if n.strip()]
        if args.candidates
        else list(candidates)
    )
    unknown = sorted(set(names) - set(candidates))
    if unknown:
        sys.exit(f"unknown candidates {unknown}; use {list(candidates)}")
    cache = Cache()
    scores: dict = json.loads(args.scores.read_text()) if args.scores.exists() else {}
    seconds: dict[str, float] = {}
    dims: dict[str, int] = {}
    fit_s: dict[str, float] = dict.fromkeys(names, 0.0)  # NaN when folds came from --scores
    split_memo: dict = {}
    trained: dict = {}  # models trained once for candidates that differ at prediction only
    # the folds' expression references, by the benchmark's rule (expression_reference: auto)
    references = RunState(
        cfg={"dataset": "her2st", "expression_reference": "auto"},
        out=Path("."),
        cache=cache,
        progress=False,
        data_dir=data,
    )
    needs_reference = any(MODEL_SPECS[m].needs_reference for m in models)
    rows = []
    for cand in names:
        cand_cfg = dict(candidates[cand])
        train_config = cand_cfg.pop("train", None)
        model_config = cand_cfg.pop("model", None)
        extra = {k: cand_cfg.pop(k) for k in ("augment", "adapter", "predict") if k in cand_cfg}
        extra["trained"] = trained
        averse = args.criterion == "loss-averse"
        if averse:
            extra["per_gene"] = True
        config = FeatureConfig(**cand_cfg)
        t0 = time.perf_counter()
        prepared = {
            s.name: s
            for s in load_sections("her2st", data, SECTIONS, config, cache=cache, progress=False)
        }
        prep_s = time.perf_counter() - t0
        dims[cand] = dim = next(iter(prepared.values())).image.shape[1]
        for outer in SECTIONS:
            outer_train = [s for s in SECTIONS if s != outer]
            inners = outer_train[-args.inner_folds :] if args.inner_folds else outer_train
            folds = [(outer, [s for s in outer_train if s != inner], inner) for inner in inners]
            if not args.skip_outer:
                folds.append((outer, outer_train, outer))  # the outer test score itself
            for o, train, test in folds:
                k = f"{cand}|{','.join(train)}|{test}"
                ref = f"depth reference|{config.to_dict()}|{','.join(train)}|{test}"
                fold = (prepared, train, test, config, cache, split_memo)
                if averse and ref not in scores:  # the depth control beside every fold
                    keep(scores, args.scores, ref, fold, {"depth": "zero-shot"}, per_gene=True)
                if k not in scores or (
                    averse and any(f"{m}:genes" not in scores[k] for m in models)
                ):
                    cfgs = {"train_config": train_config, "model_config": model_config}
                    if needs_reference:
                        cfgs["reference"] = fold_reference(references, train, [test])[0]
                    keep(scores, args.scores, k, fold, models, **cfgs, **extra)
                kind = "outer" if test == o else "inner"
                fit_s[cand] += scores[k].get("seconds", np.nan)
                for m in models:
                    v = scores[k][m]
                    row = {"candidate": cand, "outer": o, "kind": kind, "test": test, "model": m}
                    row.update(pcc_m=v, select=v)
                    if averse:
                        genes, depth = scores[k][f"{m}:genes"], scores[ref]["depth:genes"]
                        row["select"] = loss_averse_score(genes, depth)
                        row["miss"] = miss_share(genes, depth)
                    rows.append(row)
        seconds[cand] = time.perf_counter() - t0
        print(
            f"{cand}: {dim} dims, prepare (cache) {prep_s:.1f} s, all folds {seconds[cand]:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    long = pd.DataFrame(rows)
    long.to_csv(args.csv, index=False)

    # the inner folds rank by "select": PCC@M, or the loss-averse score (--criterion)
    inner = long[long.kind == "inner"].pivot_table(
        index=["outer", "candidate"], columns="model", values="select", aggfunc="mean"
    )
    if args.select_on and args.select_on not in models:
        sys.exit(f"--select-on {args.select_on!r}: use one of {list(models)}")
    inner["select"] = inner[[args.select_on] if args.select_on else list(models)].mean(1)
    outer = long[long.kind == "outer"].pivot_table(
        index=["outer", "candidate"], columns="model", values="pcc_m"
    )
    if args.skip_outer:  # no outer scores: report inner means only
        outer = inner[list(models)] * np.nan
    picks = {o: inner.loc[o]["select"].idxmax() for o in SECTIONS}
    print(
        f"Nested CV over {','.join(SECTIONS)}: per-section PCC@M, 250 unseen genes, libsize targets; "
        f"inner cells: {'PCC@M' if args.criterion == 'mean' else 'the loss-averse score'}\n"
    )
    print(
        "| outer test | "
        + " | ".join(f"inner {c} ({' / '.join(models)})" for c in names)
        + " | pick | "
        + " | ".join(f"outer {m}" for m in models)
        + " |"
    )
    print("|---|" + "---:|" * len(names) + "---|" + "---:|" * len(models))
    for o in SECTIONS:
        cells = [" / ".join(f"{inner.loc[(o, c), m]:.3f}" for m in models) for c in names]
        p = picks[o]
        print(
            f"| {o} | "
            + " | ".join(cells)
            + f" | **{p}** | "
            + " | ".join(f"{outer.loc[(o, p), m]:.3f}" for m in models)
            + " |"
        )
    picked = np.array([[outer.loc[(o, picks[o]), m] for m in models] for o in SECTIONS])
    print(
        "\nouter score of the picked configs (mean over folds): "
        + ", ".join(f"{m} {picked[:, j].mean():.3f}" for j, m in enumerate(models))
    )
    print(
        "\n| candidate | dims | "
        + " | ".join(f"outer {m} (mean)" for m in models)
        + " | seconds of the 25 folds x 2 fits (NaN: read from --scores) |"
    )
    print("|---|---:|" + "---:|" * len(models) + "---:|")
    for c in names:
        r = outer.xs(c, level="candidate")
        print(
            f"| {c} | {dims[c]} | "
            + " | ".join(f"{r[m].mean():.3f}" for m in models)
            + f" | {fit_s[c]:.0f} |"
        )
    # most outer folds; a tie goes to the best inner selection score averaged over the outer
    # folds (inner data only, never an outer test score)
    votes = Counter(picks.values())
    inner_mean = inner["select"].groupby(level="candidate").mean()
    default = max(votes, key=lambda c: (votes[c], inner_mean[c]))
    print(f"\npicks per outer fold: {picks}")
    print(
        f"inner selection score ({args.select_on or 'mean of ' + ' and '.join(models)}), mean over outer folds: "
        + ", ".join(f"{c} {inner_mean[c]:.4f}" for c in names)
    )
    if args.criterion == "loss-averse":
        means = long[long.kind == "inner"].groupby(["candidate", "model"])[["pcc_m", "miss"]].mean()
        print("inner means per candidate (PCC@M, share of genes > 0.05 below depth):")
        for c in names:
            print(
                f"  {c}: "
                + ", ".join(
                    f"{m} {means.loc[(c, m), 'pcc_m']:.4f} / {means.loc[(c, m), 'miss']:.3f}"
                    for m in models
                )
            )
    print(
        f"default (most outer folds, ties by that mean): {default} ({votes[default]} of {len(SECTIONS)}): {candidates[default]}"
    )
    print(
        "(the 'outer' rows above are shown for every candidate for reference only; the choice uses inner folds)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
