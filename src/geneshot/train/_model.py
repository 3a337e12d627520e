"""``GeneshotModel``: the user-facing model (scvi-tools style), separate from the torch modules.

It owns a registered model (:mod:`geneshot.models`), the data contract, feature
standardisation and the trainer, and saves / loads itself as a run folder::

    RUN_DIR/
        run.json      model name + config, train config, data contract, history
        weights.pt    torch state dict (torch models) or pickled estimator
        shift.npz     zero-shot runs: the common per-spot pattern and the shift statistics
        base.pkl      stacked models (align-st+ref): the fitted base estimator (a pickle)
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from geneshot import __version__
from geneshot._constants import Key
from geneshot.cache import Cache, atomic_path, save_npz_atomic
from geneshot.data import TARGET_KINDS, TargetTransform
from geneshot.errors import InputError
from geneshot.models import (
    MODELS,
    GeneInputs,
    SlideInputs,
    create_model,
    spatial_edges,
)
from geneshot.prepare import PreparedGenes, PreparedSection
from geneshot.train._config import MODEL_TRAIN_DEFAULTS, TrainConfig
from geneshot.train._contract import DataContract
from geneshot.train._finetune import ImageTop
from geneshot.train._runfile import RETRAIN, load_estimator, load_state, read_run_file
from geneshot.train._shift import (
    CommonPattern,
    ShiftReference,
    fit_shift,
    shift_ratio,
    shrink_toward_common,
    shrink_weight,
)
from geneshot.train._trainer import deterministic

log = logging.getLogger(__name__)

SHIFT_FILE = "shift.npz"  # the common-pattern map and the training shift statistics
BASE_FILE = "base.pkl"  # stacked models (align-st+ref): the fitted base estimator
IMAGE_TOP_FILE = "image_top.npz"  # finetune runs: the fine-tuned last block of the image encoder

SETTINGS = ("zero-shot", "supervised")


def _std(x: np.ndarray) -> np.ndarray:
    s = x.std(0)
    return np.where(s < 1e-6, 1.0, s)


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
        self.shift: ShiftReference | None = None  # zero-shot: how far new slides lie from training
        self.common: CommonPattern | None = None  # the common per-spot pattern m(spot)
        self.last_shift: dict = {}  # shift ratio and shrinkage of the last predicted section
        self.last_common: np.ndarray | None = None  # its common pattern (zero-shot runs)
        self.base = None  # the fitted base estimator of a stacked model (MODELS[name].base)
        self.residual_weight = 0.0  # stacked models: weight of the module's residual
        self.common_keep = 1.0  # zero-shot torch models: share of their own maps kept (train._fallback)
        self.image_top: ImageTop | None = None  # finetune runs: the encoder's fine-tuned last block

    # ------------------------------------------------------------------ inputs
    def _slide(self, s: PreparedSection) -> SlideInputs:
        """A section as model inputs; ``s`` already adapted by :meth:`_adapt`."""
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

    def _adapt(self, s: PreparedSection) -> PreparedSection:
        """The section's features as this model reads them (the fine-tuned own window, if any)."""
        return s if self.image_top is None else self.image_top.apply(s)

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
        # seen-gene slots: the gene memory's rows, the kernel head's stored fits
        if self.model_config.get("gene_memory") or self.model_config.get("head") == "kernel":
            slot = {g: i for i, g in enumerate(self.contract.seen_genes)}
            ids = torch.tensor([slot.get(g, -1) for g in names], dtype=torch.long)
        return GeneInputs(
            torch.from_numpy(np.asarray(genes.tokens[idx], np.float32)),
            torch.from_numpy(np.asarray(genes.mask[idx], bool)),
            torch.from_numpy(np.asarray(genes.pooled[idx], np.float32)),
            ids,
            # the names whose texts are read: under permuted text, the permuted names, so a
            # model that reads symbols learns no more of a gene's identity than its text tells
            symbols=list(src),
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
        reference=None,
        cache: Cache | None = None,
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
        reference
            A :class:`geneshot.genes.Reference` (expression matrix of other samples) for
            models that need one (``MODELS[name].needs_reference``); recorded in the contract.
            It must not hold spots of the training or test sections.
        cache
            Where a fine-tuned image encoder (``features["finetune"]``) is cached by its
            inputs, so that the models of one fold train it once (default: the user cache).
        """
        tc = self.train_config
        leak = set(seen_genes) & set(unseen_genes)
        if leak:
            raise InputError(None, f"{len(leak)} genes are both seen and unseen (e.g. {sorted(leak)[:3]})", "the gene split must be disjoint")
        if self.spec.needs_reference and reference is None:
            raise InputError(None, f"model {self.name!r} needs a reference expression matrix", "pass --reference REF.h5ad (raw counts of other samples of the tissue)")
        if reference is not None:
            shared = sorted({s.name for s in sections} & {str(x) for x in reference.samples})
            if shared:
                raise InputError(reference.source, f"the reference holds spots of training section(s) {', '.join(shared)}", "build the reference from other patients' samples only")
        device = _device(accelerator)
        y_seen = [target.transform(s.adata, list(seen_genes)) for s in sections]
        self.image_top = None
        if features.get("finetune"):
            # the own window's features from the encoder's last block fine-tuned on the
            # genes this model trains on (train._finetune); every later step reads them
            self.image_top = ImageTop.fit(
                features["image_encoder"],
                [s.trunk for s in sections],
                y_seen,
                seed=tc.seed,
                cache=cache,
                progress=progress,
                device=device,
            )
            sections = [self.image_top.apply(s) for s in sections]
        image_all = np.concatenate([s.image for s in sections])
        nuc0 = sections[0].nuclei
        # torch models read the nuclei maps through NDAIFE; estimators when asked (use_nuclei)
        use_nuclei = nuc0 is not None and (
            self.model_config.get("use_ndaife", True) if self.spec.kind == "torch" else bool(self.model_config.get("use_nuclei"))
        )
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
            reference=reference.describe() if reference is not None and self.spec.needs_reference else None,
        )
        if self.model_config.get("permute_text"):
            rng = np.random.default_rng(self.model_config.get("permute_seed", 0))
            pool = sorted(set(genes.symbols))
            self.text_permutation = dict(zip(pool, rng.permutation(pool).tolist()))
        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed)
        slides = [self._slide(s) for s in sections]
        ys = [torch.from_numpy(y) for y in y_seen]
        t0 = time.perf_counter()
        if self.setting == "zero-shot":
            # from image features and seen-gene targets only (see geneshot.train._shift)
            feats = [sl.image.numpy() for sl in slides]
            self.shift = fit_shift(feats, seed=tc.seed)
            self.common = CommonPattern.fit(feats, [y.numpy() for y in ys])
        if self.spec.kind == "estimator":
            self.module = create_model(self.name, **self.model_config)
            extra = {"reference": reference} if self.spec.needs_reference else {}
            self.module.fit(slides, [y.numpy() for y in ys], self._genes(genes, seen_genes), **extra)
            self.history = [{"fit_s": round(time.perf_counter() - t0, 2)}]
            return self
        if self.model_config.get("gene_memory"):
            self.model_config["gene_memory"] = len(self.contract.seen_genes)  # one slot per seen gene
        if self.model_config.get("head") == "kernel":
            self.model_config["n_support"] = len(self.contract.seen_genes)  # one stored fit per seen gene
        self.module = create_model(self.name, **{**self.model_config, **self._dims()})
        if self.spec.base:
            from geneshot.train._composite import fit_composite

            fit_composite(self, slides, ys, genes, list(seen_genes), [s.name for s in sections], device, progress, reference)
        else:
            self._fit_torch(slides, ys, genes, list(seen_genes), device, progress, [s.name for s in sections])
        self.history.append({"train_s": round(time.perf_counter() - t0, 2)})
        return self

    def _dims(self) -> dict:
        c = self.contract
        dims = {"d_img": c.image_dim, "d_text": c.text_dim}
        if c.nuclei_shape is not None:
            dims["nuclei_channels"] = c.nuclei_shape[0]
            dims["nuclei_size"] = c.nuclei_shape[1]
        return {k: v for k, v in dims.items() if k in self.spec.defaults}

    def _fit_torch(self, slides, ys, genes: PreparedGenes, seen: list[str], device, progress: bool, names: list[str] | None = None) -> None:
        """The trainer (:func:`geneshot.train._trainer.fit_torch`): steps, validation, selection."""
        from geneshot.train._trainer import fit_torch

        names = names or [f"section{i}" for i in range(len(slides))]
        fit_torch(self, slides, ys, genes, seen, names, device, progress)
        if self.setting == "zero-shot" and self.train_config.keep_rule:
            from geneshot.train._fallback import choose_keep

            with deterministic():
                self.common_keep = choose_keep(self, slides, ys, self._genes(genes, seen), device)
        if getattr(self.module, "uses_support", False):
            # the stored fits for prediction: every seen gene on every training spot
            with deterministic():
                self.module.fit_support(
                    [sl.to(device) for sl in slides], [y.to(device) for y in ys], [torch.ones(sl.n_spots, dtype=torch.bool, device=device) for sl in slides],
                    final=True,
                )

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(
        self,
        section: PreparedSection,
        genes: PreparedGenes,
        names: Sequence[str],
        *,
        context: Sequence[str] | None = None,
        shrink: float | None = None,
    ) -> np.ndarray:
        """Predictions (n_spots, len(names)) in the model's target units.

        ``context`` genes join the gene graph without being output; by default the seen
        training genes (paper-notes §5.7: unseen + seen).

        ``shrink`` (zero-shot runs): how far to lean on the common per-spot pattern, from 0
        (the model's own maps) to 1 (the common pattern only); ``None`` combines what the
        model's validation kept of its own maps (``common_keep``, :mod:`geneshot.train._fallback`)
        with the section's shift ratio (:mod:`geneshot.train._shift`): ``1 - keep * (1 -
        shift weight)``. ``self.last_shift`` records the ratio, the keep and the shrinkage.
        """
        if self.module is None or self.contract is None:
            raise InputError(None, "model is not trained", "call train() or GeneshotModel.load(RUN_DIR)")
        self.contract.check_arrays(section.image, section.nuclei, int(genes.pooled.shape[1]), section.name)
        section = self._adapt(section)
        slide = self._slide(section)
        gin = self._genes(genes, names)
        if self.spec.kind == "estimator":
            return self._shrunk(section, slide, np.asarray(self.module.predict(slide, gin), np.float32), shrink)
        if context is None:
            context = [g for g in self.contract.seen_genes if g not in set(names) and g in genes.texts]
        ctx = self._genes(genes, context) if (context and self.setting == "zero-shot") else None
        if self.spec.base:
            from geneshot.train._composite import predict_composite

            with deterministic():
                pred = predict_composite(self, slide, gin, ctx)
            return self._shrunk(section, slide, pred, shrink)
        self.module.eval()
        with deterministic():
            out = self.module(slide, gin, ctx)
        return self._shrunk(section, slide, out.cpu().numpy().astype(np.float32), shrink)

    def common_pattern(self, section: PreparedSection) -> np.ndarray | None:
        """The common per-spot pattern ``(n_spots,)`` on ``section`` that ``predict`` shrinks
        toward (the depth control's map), or None where the run has none (supervised runs).
        After :meth:`predict` the same map is at hand in ``last_common``."""
        if self.common is None:
            return None
        return self.common.predict(self._slide(self._adapt(section)).image.cpu().numpy())

    def shrink_prediction(self, section: PreparedSection, pred: np.ndarray, shrink: float | None = None) -> np.ndarray:
        """Move the model's own maps (``predict(..., shrink=0.0)``) toward the common pattern as ``predict`` does."""
        return self._shrunk(section, self._slide(self._adapt(section)), pred, shrink)

    def _shrunk(self, section: PreparedSection, slide: SlideInputs, pred: np.ndarray, shrink: float | None) -> np.ndarray:
        """Lean toward the common pattern as far as the section's image features have shifted."""
        if self.common is None:
            self.last_shift, self.last_common = {}, None
            return pred
        feats = slide.image.cpu().numpy()
        # kept for the maps' departure from it (predict's var), so it is not computed again
        self.last_common = self.common.predict(feats)
        ratio = shift_ratio(self.shift, feats) if self.shift is not None else float("nan")
        if shrink is not None:
            weight = float(shrink)
        else:  # what validation kept of the model's own maps, less what the shift takes away
            shift = shrink_weight(ratio) if self.shift is not None else 0.0
            weight = 1.0 - self.common_keep * (1.0 - shift)
        self.last_shift = {"section": section.name, "ratio": round(ratio, 4), "keep": self.common_keep, "shrink": round(weight, 4)}
        if weight:
            log.info("%s: kept share %.2f, shift ratio %.2f -> shrink %.2f toward the common pattern", section.name, self.common_keep, ratio, weight)
        return shrink_toward_common(pred, self.last_common, weight)

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
            "residual_weight": self.residual_weight,
            "common_keep": self.common_keep,
        }
        with atomic_path(run_dir / "weights.pt") as tmp:
            if self.spec.kind == "torch":
                torch.save(self.module.state_dict(), tmp)
            else:
                with open(tmp, "wb") as fh:
                    pickle.dump(self.module, fh)
        if self.base is not None:
            with atomic_path(run_dir / BASE_FILE) as tmp, open(tmp, "wb") as fh:
                pickle.dump(self.base, fh)
        if self.common is not None:
            arrays = {**self.common.to_arrays(), **(self.shift.to_arrays() if self.shift is not None else {})}
            save_npz_atomic(run_dir / SHIFT_FILE, arrays)
        if self.image_top is not None:
            save_npz_atomic(run_dir / IMAGE_TOP_FILE, self.image_top.to_arrays())
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
        model_config = dict(meta["model_config"])
        spec = MODELS.get(meta.get("model"))
        if spec is not None and "head" in spec.defaults:
            model_config.setdefault("head", "dot")  # runs saved before the kernel head had the dot head
        if spec is not None and "kernel_locus" in spec.defaults:
            model_config.setdefault("kernel_locus", 0.0)  # runs saved before the locus kernel
        if spec is not None and "common_fit" in spec.defaults:
            model_config.setdefault("common_fit", "mean")  # runs saved before the GCV common pattern
        if spec is not None and spec.kind == "torch" and "departure_scale" in spec.defaults:
            model_config.setdefault("departure_scale", 1.0)  # runs saved before the departure scale
            model_config.setdefault("departure_shrink", 0.0)
        try:
            self = cls(meta["model"], meta["setting"], meta["train_config"], **model_config)
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
        self.residual_weight = float(meta.get("residual_weight") or 0.0)
        keep = meta.get("common_keep")
        self.common_keep = 1.0 if keep is None else float(keep)  # runs before the rule keep all
        if self.spec.base:
            self.base = load_estimator(run_dir / BASE_FILE, MODELS[self.spec.base].factory, self.spec.base)
        if self.contract.features.get("finetune"):
            try:
                with np.load(run_dir / IMAGE_TOP_FILE, allow_pickle=False) as z:
                    self.image_top = ImageTop.from_arrays(z, self.contract.features["image_encoder"])
            except (OSError, ValueError, KeyError, EOFError) as err:
                raise InputError(run_dir / IMAGE_TOP_FILE, f"missing or unreadable ({type(err).__name__}); the run fine-tuned its image encoder", RETRAIN) from None
        if (run_dir / SHIFT_FILE).is_file():  # runs before the shift rule have none
            try:
                with np.load(run_dir / SHIFT_FILE, allow_pickle=False) as z:
                    self.common = CommonPattern.from_arrays(z)
                    self.shift = ShiftReference.from_arrays(z) if "shift_baseline" in z.files else None
            except (OSError, ValueError, KeyError, EOFError) as err:
                raise InputError(run_dir / SHIFT_FILE, f"unreadable ({type(err).__name__})", RETRAIN) from None
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


def _device(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise InputError(None, "accelerator 'gpu' requested but no CUDA device is visible", "use --accelerator cpu")
        return torch.device("cuda")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu")
