"""Tune on training-side validation only: train on C2, C3, C4 and score C5 (never C6).

The 250 most expressed genes of C2–C4 are unseen (as in the benchmark); the next 2,000 are seen.

    python scripts/tune_inner_fold.py '[{"model": "depth"}, {"model": "align-st", "cfg": {"alpha": 0.2}, "train": {"max_epochs": 15}}]'

Each run: {"model": name, "setting": "zero-shot"|"supervised", "cfg": model config overrides,
"train": train config overrides, "seeds": [0, 1, ...]} (several seeds also score their mean).
Optional 2nd argument: FeatureConfig overrides as JSON; 3rd/4th: train and validation sections.
Set GENESHOT_DATA (folder holding her2st/) and optionally NT (torch threads, default 1).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

from geneshot.cache import Cache
from geneshot.data import TargetTransform
from geneshot.prepare import FeatureConfig
from geneshot.workflow import evaluate, load_sections, split_and_describe, train_model


def main() -> None:
    torch.set_num_threads(int(os.environ.get("NT", "1")))  # two threads stall when the cores are shared
    runs = json.loads(sys.argv[1])
    features = FeatureConfig(**json.loads(sys.argv[2])) if len(sys.argv) > 2 else FeatureConfig()
    train_ids = (sys.argv[3] if len(sys.argv) > 3 else "C2,C3,C4").split(",")
    val_ids = (sys.argv[4] if len(sys.argv) > 4 else "C5").split(",")
    if "C6" in val_ids or "C6" in train_ids:
        print("warning: C6 is a benchmark test section; tune without it", file=sys.stderr)
    cache = Cache()
    data = os.path.join(os.environ["GENESHOT_DATA"], "her2st")
    secs = load_sections("her2st", data, train_ids + val_ids, features, cache=cache, progress=False)
    train, val = secs[: len(train_ids)], secs[len(train_ids) :]
    split, genes = split_and_describe(train, features, cache=cache, progress=False)
    target = TargetTransform.fit([s.adata for s in train], "libsize")
    for run in runs:
        name, setting = run.get("model", "align-st"), run.get("setting", "zero-shot")
        t0 = time.time()
        scores, preds_all = [], []
        for seed in run.get("seeds", [0]):
            model = train_model(
                name, setting, train, genes, split, target, features,
                train_config={**run.get("train", {}), "seed": seed}, model_config=run.get("cfg", {}), progress=False,
            )
            summary, _, _, preds = evaluate(model, val, genes, split.unseen)
            scores.append(round(summary["per_section"]["pcc_m"], 3))
            preds_all.append(preds)
        line = {"run": run, "pcc_m": scores, "seconds": round(time.time() - t0)}
        if len(preds_all) > 1:
            mean = [np.mean([p[i] for p in preds_all], axis=0) for i in range(len(val))]
            summary, *_ = evaluate(model, val, genes, split.unseen, predictions=mean)
            line["ensemble_pcc_m"] = round(summary["per_section"]["pcc_m"], 3)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
