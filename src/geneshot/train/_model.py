"""``GeneshotModel``: the user-facing model (scvi-tools style), separate from the torch modules.

It owns a registered model (:mod:`geneshot.models`), the data contract, feature
standardisation and the trainer, and saves / loads itself as a run folder::

    RUN_DIR/
        run.json      model name + config, train config, data contract, history
        weights.pt    torch state dict (torch models) or pickled estimator
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geneshot import __version__
from geneshot._constants import Key
from geneshot._progress import progress_bar
from geneshot.cache import atomic_path
from geneshot.data import TARGET_KINDS, TargetTransform
from geneshot.errors import InputError
from geneshot.models import (
    MODELS,
    GeneInputs,
    SlideInputs,
    create_model,
    mse_pcc_loss,
    spatial_edges,
)
from geneshot.prepare import PreparedGenes, PreparedSection
from geneshot.train._contract import DataContract
from geneshot.train._distributed import rank_world
from geneshot.train._runfile import RETRAIN, load_estimator, load_state, read_run_file

log = logging.getLogger(__name__)

SETTINGS = ("zero-shot", "supervised")


@dataclass
class TrainConfig:
    """Optimisation settings (SGN's, paper-notes §2.6, except the epoch budget).

    ``max_epochs`` is far below SGN's 300: with early stopping on training-side validation
    the best epoch on HER2+ came well before 30 (see BENCHMARKS.md), and the fold budget is 90 s.
    """

    max_epochs: int = 30
    lr: float = 5e-4
    weight_decay: float = 1e-4
    genes_per_step: int = 64
    context_per_step: int = 64  # extra seen genes joining the gene graph in training (ASIG)
    pcc_weight: float = 0.5
    patience: int = 5
    val_spot_frac: float = 0.2  # validation spots held out of the loss in each training section
    n_val_genes: int = 100  # zero-shot: seen genes held out of training, for model selection
    val_context: int = 256  # zero-shot validation: training genes joining the gene graph
    seed: int = 0
    grad_clip: float = 1.0
    slides_per_step: int = 1  # gradient accumulation; with torchrun, at least the world size

    def to_dict(self) -> dict:
        """Plain dict."""
        return dict(self.__dict__)


# Per-model training defaults, chosen on training-side validation (train C2–C4, validate on
# C5's top-250 genes; never the test folds; see BENCHMARKS.md "Tuning"): ALIGN-ST trains best
# with a strong correlation term and a large (gradient-free) context of seen genes in its gene
# graph. SGN keeps its released settings.
MODEL_TRAIN_DEFAULTS: dict[str, dict] = {
    "align-st": {"pcc_weight": 5.0, "context_per_step": 512},
    "permuted-text": {"pcc_weight": 5.0, "context_per_step": 512},
}


def _std(x: np.ndarray) -> np.ndarray:
    s = x.std(0)
    return np.where(s < 1e-6, 1.0, s)


@dataclass
class TrainingData:
    """Tensors for one training run, built once."""

    slides: list[SlideInputs]
    targets: list[torch.Tensor]  # (N_i, G_all) in the column order of `gene_names`
    train_mask: list[torch.Tensor]  # (N_i,) bool: spot used in the loss
    gene_names: list[str]
    genes: GeneInputs
    history: list[dict] = field(default_factory=list)


class GeneshotModel:
    """A trainable, saveable expression predictor.

    Parameters
    ----------
    model
        Registered model name (``geneshot.models.list_models()``).
    setting
        ``"zero-shot"`` (train on seen genes, predict unseen ones) or ``"supervised"``.
    train_config
        Overrides of :class:`TrainConfig`.
    **model_config
        Overrides of the model's default config.
    """

    def __init__(self, model: str = "align-st", setting: str = "zero-shot", train_config: dict | None = None, **model_config) -> None:
        if model not in MODELS:
            raise InputError(None, f"unknown model {model!r}", f"use one of: {', '.join(MODELS)}")
        if setting not in SETTINGS:
            raise InputError(None, f"unknown setting {setting!r}", "use zero-shot or supervised")
        spec = MODELS[model]
        if setting == "zero-shot" and not spec.zero_shot:
            raise InputError(None, f"model {model!r} cannot predict unseen genes", "use --setting supervised, or a zero-shot model")
        self.name = model
        self.setting = setting
        self.spec = spec
        self.model_config = {**copy.deepcopy(spec.defaults), **model_config}
        self.train_config = TrainConfig(**{**MODEL_TRAIN_DEFAULTS.get(model, {}), **(train_config or {})})
        self.module = None
        self.contract: DataContract | None = None
        self.history: list[dict] = []
        self.text_permutation: dict[str, str] | None = None

    # ------------------------------------------------------------------ inputs
    def _slide(self, s: PreparedSection) -> SlideInputs:
        c = self.contract
        img = (s.image - np.asarray(c.feature_mean, np.float32)) / np.asarray(c.feature_std, np.float32)
        nuc = None
        if c.nuclei_shape is not None:
            nuc = torch.from_numpy(np.asarray(s.nuclei, np.float32))
        obs = s.adata.obs
        near = None
        if Key.ARRAY_ROW in obs and Key.ARRAY_COL in obs:
            grid = obs[[Key.ARRAY_ROW, Key.ARRAY_COL]].to_numpy(np.int64)
        else:
            grid = np.full((s.adata.n_obs, 2), -1, np.int64)
        if (grid < 0).any():
            # no array grid (e.g. a plain AnnData): neighbours from the spot centres instead,
            # since grid distances between -1 indices would link arbitrary spots
            near = spatial_edges(s.adata.obsm[Key.SPATIAL], self.model_config.get("near_max", 8))
        return SlideInputs(torch.from_numpy(img.astype(np.float32)), nuc, torch.from_numpy(grid), near)

    def _genes(self, genes: PreparedGenes, names: Sequence[str]) -> GeneInputs:
        missing = [g for g in names if g not in genes.texts]
        if missing:
            raise InputError(None, f"{len(missing)} genes have no description (e.g. {', '.join(missing[:5])})", "give descriptions (--describe GENE=TEXT or --gene-texts FILE)")
        src = list(names)
        if self.text_permutation is not None:
            # permuted-text control: each gene reads another gene's description
            src = [self.text_permutation.get(g, g) for g in names]
            src = [g if g in genes.texts else n for g, n in zip(src, names)]
        idx = genes.index(src)
        ids = None
        if self.model_config.get("gene_memory"):
            slot = {g: i for i, g in enumerate(self.contract.seen_genes)}
            ids = torch.tensor([slot.get(g, -1) for g in names], dtype=torch.long)
        return GeneInputs(
            torch.from_numpy(np.asarray(genes.tokens[idx], np.float32)),
            torch.from_numpy(np.asarray(genes.mask[idx], bool)),
            torch.from_numpy(np.asarray(genes.pooled[idx], np.float32)),
            ids,
        )

    # ------------------------------------------------------------------ training
    def train(
        self,
        sections: Sequence[PreparedSection],
        genes: PreparedGenes,
        *,
        seen_genes: Sequence[str],
        unseen_genes: Sequence[str] = (),
        target: TargetTransform,
        features: dict,
        accelerator: str = "cpu",
        progress: bool = True,
    ) -> GeneshotModel:
        """Fit on training sections.

        Parameters
        ----------
        sections
            TRAINING sections only (validation spots are drawn inside them).
        genes
            Descriptions and embeddings; must cover ``seen_genes``.
        seen_genes
            Genes whose targets are used: all training genes (zero-shot) or the target genes
            (supervised).
        unseen_genes
            Zero-shot held-out genes; recorded in the contract, never touched here.
        target
            Target transform fitted on the training sections.
        features
            Feature config the inputs were prepared with (saved in the contract).
        accelerator
            ``"cpu"``, ``"gpu"`` (``"cuda"``) or ``"auto"``. One process uses one device;
            several devices or nodes are several processes started by torchrun (see README,
            "Several GPUs or nodes"), which this method joins through ``torch.distributed``.
        """
        tc = self.train_config
        leak = set(seen_genes) & set(unseen_genes)
        if leak:
            raise InputError(None, f"{len(leak)} genes are both seen and unseen (e.g. {sorted(leak)[:3]})", "the gene split must be disjoint")
        image_all = np.concatenate([s.image for s in sections])
        nuc0 = sections[0].nuclei
        use_nuclei = self.spec.kind == "torch" and nuc0 is not None and self.model_config.get("use_ndaife", True)
        self.contract = DataContract(
            features=dict(features),
            image_dim=int(image_all.shape[1]),
            nuclei_shape=list(nuc0.shape[1:]) if use_nuclei else None,
            text_dim=int(genes.pooled.shape[1]),
            target=target.subset(list(seen_genes) + list(unseen_genes)).to_dict(),
            seen_genes=list(seen_genes),
            unseen_genes=list(unseen_genes),
            feature_mean=image_all.mean(0).tolist(),
            feature_std=_std(image_all).tolist(),
            targets={
                kind: (target if kind == target.kind else TargetTransform.fit([s.adata for s in sections], kind)).subset(list(seen_genes) + list(unseen_genes)).to_dict()
                for kind in TARGET_KINDS
            },
            train_sections=[s.name for s in sections],
        )
        if self.model_config.get("permute_text"):
            rng = np.random.default_rng(self.model_config.get("permute_seed", 0))
            pool = sorted(set(genes.symbols))
            self.text_permutation = dict(zip(pool, rng.permutation(pool).tolist()))
        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed)
        slides = [self._slide(s) for s in sections]
        ys = [torch.from_numpy(target.transform(s.adata, list(seen_genes))) for s in sections]
        t0 = time.perf_counter()
        if self.spec.kind == "estimator":
            self.module = create_model(self.name, **self.model_config)
            self.module.fit(slides, [y.numpy() for y in ys], self._genes(genes, seen_genes))
            self.history = [{"fit_s": round(time.perf_counter() - t0, 2)}]
            return self
        device = _device(accelerator)
        if self.model_config.get("gene_memory"):
            self.model_config["gene_memory"] = len(self.contract.seen_genes)  # one slot per seen gene
        self.module = create_model(self.name, **{**self.model_config, **self._dims()})
        self._fit_torch(slides, ys, genes, list(seen_genes), device, progress)
        self.history.append({"train_s": round(time.perf_counter() - t0, 2)})
        return self

    def _dims(self) -> dict:
        c = self.contract
        dims = {"d_img": c.image_dim, "d_text": c.text_dim}
        if c.nuclei_shape is not None:
            dims["nuclei_channels"] = c.nuclei_shape[0]
            dims["nuclei_size"] = c.nuclei_shape[1]
        return {k: v for k, v in dims.items() if k in self.spec.defaults}

    def _fit_torch(self, slides, ys, genes: PreparedGenes, seen: list[str], device, progress: bool) -> None:
        tc = self.train_config
        rng = np.random.default_rng(tc.seed)
        n_genes = len(seen)
        # zero-shot: validation genes never enter the loss, mimicking unseen test genes.
        # They are drawn from the most expressed seen genes (the list is ordered by the
        # caller by training mean), because the test genes are the most expressed ones.
        if self.setting == "zero-shot":
            n_val = min(tc.n_val_genes, max(1, n_genes // 5))
            val_genes = np.sort(rng.choice(min(n_genes, 4 * n_val), n_val, replace=False))
        else:
            val_genes = np.arange(n_genes)
        train_genes = np.setdiff1d(np.arange(n_genes), val_genes) if self.setting == "zero-shot" else np.arange(n_genes)
        gin = self._genes(genes, seen).to(device)
        masks = []
        for s in slides:
            n = s.n_spots
            m = np.ones(n, bool)
            m[rng.choice(n, int(round(tc.val_spot_frac * n)), replace=False)] = False
            masks.append(torch.from_numpy(m))
        slides = [s.to(device) for s in slides]
        ys = [y.to(device) for y in ys]
        mod = self.module.to(device)
        opt = torch.optim.AdamW(mod.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        best, best_state, bad = -math.inf, None, 0
        rank, world = rank_world()
        # slides per optimiser step, over all processes (a multiple of the world size)
        group = max(tc.slides_per_step, world)
        group = int(math.ceil(group / world) * world)
        if world > 1:
            _broadcast_params(mod)
        bar = progress_bar(range(tc.max_epochs), progress=progress and rank == 0, desc=f"train {self.name}", leave=False)
        for epoch in bar:
            mod.train()
            losses = []
            order = rng.permutation(len(slides))
            for start in range(0, len(order), group):
                # randomness is drawn for the whole group on every rank, so that a run on W
                # processes sees exactly the draws of a single-process run with W slides per step
                draws = []
                for i in order[start : start + group]:
                    pick = rng.choice(train_genes, min(tc.genes_per_step, len(train_genes)), replace=False)
                    ctx_idx = None
                    if self.setting == "zero-shot" and tc.context_per_step:
                        rest = np.setdiff1d(train_genes, pick)
                        if len(rest):
                            ctx_idx = rng.choice(rest, min(tc.context_per_step, len(rest)), replace=False)
                    draws.append((i, pick, ctx_idx))
                opt.zero_grad()
                for r, (i, pick, ctx_idx) in enumerate(draws):
                    if r % world != rank:
                        continue
                    ctx = None if ctx_idx is None else gin.select(torch.from_numpy(ctx_idx))
                    pred = mod(slides[i], gin.select(torch.from_numpy(pick)), ctx)
                    m = masks[i].to(device)
                    loss = mse_pcc_loss(pred[m], ys[i][m][:, torch.from_numpy(pick).to(device)], tc.pcc_weight)
                    (loss / len(draws)).backward()
                    losses.append(loss.item())
                if world > 1:
                    _all_reduce_grads(mod)
                if tc.grad_clip:
                    torch.nn.utils.clip_grad_norm_(mod.parameters(), tc.grad_clip)
                opt.step()
            if world > 1:
                _average_buffers(mod)  # identical BatchNorm statistics -> identical validation on all ranks
            val = self._validate(slides, ys, masks, gin, val_genes, train_genes)
            self.history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_pcc": val})
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_pcc=f"{val:.3f}")
            if rank == 0:  # the same numbers as the bar: readable in a redirected log
                log.info("%s epoch %d/%d: loss %.4f, validation PCC %.3f", self.name, epoch + 1, tc.max_epochs, np.mean(losses), val)
            if val > best + 1e-4:
                best, bad = val, 0
                best_state = {k: v.detach().clone() for k, v in mod.state_dict().items()}
            else:
                bad += 1
                if bad >= tc.patience:
                    log.info("%s: early stop after epoch %d (best validation PCC %.3f)", self.name, epoch + 1, best)
                    break
        if best_state is not None:
            mod.load_state_dict(best_state)
        self.best_val = best
        mod.eval()

    @torch.no_grad()
    def _validate(self, slides, ys, masks, gin: GeneInputs, val_genes: np.ndarray, train_genes: np.ndarray) -> float:
        """Mean per-gene PCC on held-out spots (and, zero-shot, held-out genes)."""
        from geneshot.metrics import per_gene_pearson

        mod = self.module
        mod.eval()
        vg = torch.from_numpy(val_genes)
        ctx = None
        if self.setting == "zero-shot":
            # a fixed sample of training genes joins the gene graph; all of them would cost
            # seconds per epoch for little change in the ranking of epochs
            n_ctx = min(len(train_genes), self.train_config.val_context)
            ctx = gin.select(torch.from_numpy(np.sort(np.random.default_rng(0).choice(train_genes, n_ctx, replace=False))))
        rs = []
        for s, y, m in zip(slides, ys, masks):
            hold = ~m.to(y.device)
            if hold.sum() < 3:
                continue
            pred = mod(s, gin.select(vg), ctx)[hold].cpu().numpy()
            r = per_gene_pearson(y[hold][:, vg.to(y.device)].cpu().numpy(), pred, nan_policy="drop")
            rs.append(np.nanmean(r))
        return float(np.mean(rs)) if rs else float("nan")

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(
        self,
        section: PreparedSection,
        genes: PreparedGenes,
        names: Sequence[str],
        *,
        context: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Predictions (n_spots, len(names)) in the model's target units.

        ``context`` genes join the gene graph without being output; by default the seen
        training genes (paper-notes §5.7: unseen + seen).
        """
        if self.module is None or self.contract is None:
            raise InputError(None, "model is not trained", "call train() or GeneshotModel.load(RUN_DIR)")
        self.contract.check_arrays(section.image, section.nuclei, int(genes.pooled.shape[1]), section.name)
        slide = self._slide(section)
        gin = self._genes(genes, names)
        if self.spec.kind == "estimator":
            return np.asarray(self.module.predict(slide, gin), np.float32)
        if context is None:
            context = [g for g in self.contract.seen_genes if g not in set(names) and g in genes.texts]
        ctx = self._genes(genes, context) if (context and self.setting == "zero-shot") else None
        self.module.eval()
        out = self.module(slide, gin, ctx)
        return out.cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def save(self, run_dir: str | os.PathLike) -> Path:
        """Write ``run.json`` and ``weights.pt`` atomically into ``run_dir``."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "geneshot_version": __version__,
            "model": self.name,
            "setting": self.setting,
            "model_config": self.model_config,
            "train_config": self.train_config.to_dict(),
            "contract": self.contract.to_dict(),
            "history": self.history,
            "text_permutation": self.text_permutation,
        }
        with atomic_path(run_dir / "weights.pt") as tmp:
            if self.spec.kind == "torch":
                torch.save(self.module.state_dict(), tmp)
            else:
                with open(tmp, "wb") as fh:
                    pickle.dump(self.module, fh)
        with atomic_path(run_dir / "run.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return run_dir

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> GeneshotModel:
        """Load a model saved with :meth:`save`.

        A folder that is not a complete, readable run of this geneshot version (missing,
        truncated or foreign files) raises one :class:`InputError` naming the file at fault.

        Run folders are trusted input: an estimator's ``weights.pt`` is a pickle, and
        unpickling runs code, so load only run folders you (or someone you trust) wrote.
        Torch weights are read with ``weights_only=True`` (no code runs); see
        :mod:`geneshot.train._runfile`.
        """
        run_dir = Path(run_dir)
        meta_path, weights = run_dir / "run.json", run_dir / "weights.pt"
        if not meta_path.is_file() or not weights.is_file():
            raise InputError(run_dir, "not a geneshot run folder (run.json / weights.pt missing)", "pass the --out folder of `geneshot train`")
        meta = read_run_file(meta_path)
        try:
            self = cls(meta["model"], meta["setting"], meta["train_config"], **meta["model_config"])
            self.contract = DataContract.from_dict(meta["contract"])
        except (InputError, TypeError, AttributeError) as err:
            problem = err.problem if isinstance(err, InputError) else str(err)
            raise InputError(meta_path, f"run file does not describe a model this geneshot can build ({problem})", RETRAIN) from None
        self.history = meta.get("history", [])
        self.text_permutation = meta.get("text_permutation")
        if self.spec.kind == "torch":
            self.module = create_model(self.name, **{**self.model_config, **self._dims()})
            load_state(self.module, weights, self.name)
            self.module.eval()
        else:
            self.module = load_estimator(weights, self.spec.factory, self.name)
        return self

    @property
    def target(self) -> TargetTransform:
        """The target transform fitted on the training sections."""
        return TargetTransform.from_dict(self.contract.target)

    def target_for(self, kind: str | None) -> TargetTransform:
        """The run's own transform (``kind=None``) or another convention fitted on the same training sections."""
        if kind is None or kind == self.target.kind:
            return self.target
        if kind not in self.contract.targets:
            raise InputError(None, f"target convention {kind!r} is not stored in this run", f"use one of: {', '.join(self.contract.targets)}")
        return TargetTransform.from_dict(self.contract.targets[kind])


def _broadcast_params(mod: torch.nn.Module) -> None:
    """Start every process from rank 0's weights."""
    import torch.distributed as dist

    for t in list(mod.parameters()) + list(mod.buffers()):
        dist.broadcast(t.data, src=0)


def _average_buffers(mod: torch.nn.Module) -> None:
    import torch.distributed as dist

    world = dist.get_world_size()
    for b in mod.buffers():
        if b.dtype.is_floating_point:
            dist.all_reduce(b.data, op=dist.ReduceOp.SUM)
            b.data /= world
        else:
            dist.broadcast(b.data, src=0)


def _all_reduce_grads(mod: torch.nn.Module) -> None:
    """Sum gradients over processes (each rank's loss is already divided by the group size)."""
    import torch.distributed as dist

    for p in mod.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def _device(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise InputError(None, "accelerator 'gpu' requested but no CUDA device is visible", "use --accelerator cpu")
        return torch.device("cuda")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu")
