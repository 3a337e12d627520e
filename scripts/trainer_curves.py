"""Training curves of ALIGN-ST on an INNER split of the training sections (no test section is scored).

Trains on C2–C4 (default); the trainer holds out one of them (``data.validation_split``) and
150 seen genes for model selection. Per epoch it logs the gene-specific validation PCC, the
same with descriptions shuffled among genes, and the mean pairwise cosine of the gene vectors;
this script plots them. It then scores the 250 "unseen" genes of the inner split (the most
expressed genes of C2–C4, as in the benchmark) on the held-out inner section, for ALIGN-ST
variants and the closed-form controls fitted on the remaining inner sections. C5/C6 are never read.

    GENESHOT_DATA=../shared/data python scripts/trainer_curves.py --out out/curves \\
        --variants '{"align-st": {}, "align-st+common": {"common_component": true}}'
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from geneshot.cache import Cache
from geneshot.data import TargetTransform, validation_split
from geneshot.prepare import FeatureConfig
from geneshot.train._trainer import _pcc_cols, gene_specific_pcc
from geneshot.workflow import load_sections, split_and_describe, train_model

TEST_SECTIONS = {"C5", "C6"}  # benchmark folds' test sections: never scored here


def plot(histories: dict[str, list[dict]], out: Path) -> None:
    """One PNG: validation criterion, shuffled-text validation and gene-vector cosine per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        (line,) = axes[0].plot(ep, [h["val_score"] for h in hist], label=name)
        axes[0].plot(ep, [h["val_shuffled"] for h in hist], ls="--", color=line.get_color())
        axes[1].plot(ep, [h["val_pcc"] for h in hist], label=name)
        (line2,) = axes[2].plot(ep, [h["gene_cosine"] for h in hist], label=name)
        axes[2].plot(
            ep,
            [h.get("gene_cosine_centred", np.nan) for h in hist],
            ls="--",
            color=line2.get_color(),
        )
    axes[0].set_title("validation gene-specific PCC\n(dashed: descriptions shuffled)")
    axes[1].set_title("validation plain PCC")
    axes[2].set_title("mean pairwise cosine of gene vectors\n(dashed: after removing their mean)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "trainer_curves.png", dpi=120)
    plt.close(fig)


def score(y: np.ndarray, p: np.ndarray) -> dict:
    return {
        "pcc_m": round(float(_pcc_cols(y, p).mean()), 4),
        "gene_specific": round(gene_specific_pcc(y, p), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sections", default="C2,C3,C4")
    ap.add_argument(
        "--variants",
        default='{"align-st": {}}',
        help='JSON {label: ALIGN-ST model config overrides, or {"model": {...}, "train": {...}}}',
    )
    ap.add_argument("--train", default="{}", help="JSON train config overrides for every variant")
    ap.add_argument("--controls", default="depth,text-knn,gene-kernel")
    ap.add_argument(
        "--features",
        default="{}",
        help='JSON FeatureConfig overrides, e.g. {"gene_encoder": "go-tokens"}',
    )
    ap.add_argument("--threads", type=int, default=int(os.environ.get("NT", "2")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ids = args.sections.split(",")
    if TEST_SECTIONS & set(ids):
        raise SystemExit(
            f"{sorted(TEST_SECTIONS & set(ids))} are benchmark test sections; use training sections only"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    features, cache = FeatureConfig(**json.loads(args.features)), Cache()
    secs = load_sections(
        "her2st",
        os.path.join(os.environ["GENESHOT_DATA"], "her2st"),
        ids,
        features,
        cache=cache,
        progress=False,
    )
    split, genes = split_and_describe(secs, features, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in secs], "libsize")
    val_name = validation_split(ids, strategy="section", frac=0.2, seed=0)["val"][
        0
    ]  # the trainer's choice
    val = next(s for s in secs if s.name == val_name)
    inner = [s for s in secs if s.name != val_name]
    y_val = target.transform(val.adata, split.unseen)
    results: dict = {"train_sections": ids, "inner_validation_section": val_name, "runs": {}}
    histories = {}
    for label, cfg in json.loads(args.variants).items():
        t0 = time.perf_counter()
        # a variant is model config overrides, or {"model": {...}, "train": {...}}
        tcfg = (
            {**json.loads(args.train), **cfg.get("train", {})}
            if "model" in cfg or "train" in cfg
            else json.loads(args.train)
        )
        cfg = cfg.get("model", {}) if "model" in cfg or "train" in cfg else cfg
        # ALIGN-ST trains on all inner sections and its trainer holds the validation section out;
        # with spot hold-out validation (the old trainer) it would fit that section's spots, so
        # it then trains on the remaining inner sections only
        train_secs = inner if tcfg.get("val_strategy") == "spots" else secs
        m = train_model(
            "align-st",
            "zero-shot",
            train_secs,
            genes,
            split,
            target,
            features,
            train_config=tcfg,
            model_config=cfg,
            progress=False,
        )
        hist = [h for h in m.history if "epoch" in h]
        histories[label] = hist
        best = max(
            hist,
            key=lambda h: h[
                "val_score" if m.train_config.select_on == "gene_specific" else "val_pcc"
            ],
        )
        results["runs"][label] = {
            "config": cfg,
            "train_config": tcfg,
            "seconds": round(time.perf_counter() - t0),
            "epochs": len(hist),
            "best_epoch": best["epoch"],
            "best_val": {
                k: round(best[k], 4)
                for k in (
                    "val_score",
                    "val_shuffled",
                    "val_pcc",
                    "gene_cosine",
                    "gene_cosine_centred",
                    "map_corr",
                )
            },
            "steps": len(hist) * m.train_config.steps_per_epoch,
            "train_s": hist[-1].get("train_s"),
            "val_s": hist[-1].get("val_s"),
            "unseen_on_inner_val": score(y_val, m.predict(val, genes, split.unseen)),
            "history": hist,
        }
        print(
            label,
            json.dumps({k: v for k, v in results["runs"][label].items() if k != "history"}),
            flush=True,
        )
    for name in filter(None, args.controls.split(",")):
        t0 = time.perf_counter()
        m = train_model(
            name,
            "zero-shot",
            inner,
            genes,
            split,
            TargetTransform.fit([s.adata for s in inner], "libsize"),
            features,
            progress=False,
        )
        res = {
            "seconds": round(time.perf_counter() - t0),
            "unseen_on_inner_val": score(y_val, m.predict(val, genes, split.unseen)),
        }
        if name == "gene-kernel":
            res.update(lambda_=m.module.lambda_, gamma=m.module.gamma_)
        results["runs"][name] = res
        print(name, json.dumps(res), flush=True)
    (args.out / "trainer_curves.json").write_text(json.dumps(results, indent=1))
    if histories:
        plot(histories, args.out)


if __name__ == "__main__":
    main()
