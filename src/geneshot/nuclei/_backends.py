"""Registry of nuclei segmentation backends.

A backend turns one RGB patch into an instance map. ``skimage`` (classical, no weights)
is the default and runs everywhere; ``stardist`` and ``cellpose`` are deep models whose
packages and weights are optional: they are imported only when chosen, and a missing
package or unreachable weights raise :class:`~geneshot.errors.MissingDependencyError`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from geneshot.errors import MissingDependencyError
from geneshot.nuclei._segment import SkimageParams, haematoxylin, segment_skimage

_INSTALL = "install it with `pip install geneshot[foundation]`"
_OFFLINE = 'the classical backend "skimage" needs no weights and is the offline default'


class NucleiBackend:
    """Base class: ``segment(rgb, valid, mpp) -> (labels int32, haematoxylin float32)``.

    Subclasses must be picklable before their model is loaded (workers load it lazily).
    """

    name: str = ""
    #: The largest nucleus area the backend keeps, µm² (normalises the map's size channel).
    max_area_um2: float = 400.0

    def segment(
        self, rgb: np.ndarray, valid: np.ndarray | None = None, mpp: float = 0.5
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """What determines the output (for cache keys and provenance)."""
        return {"backend": self.name}


class SkimageBackend(NucleiBackend):
    """Classical backend (see :func:`~geneshot.nuclei.segment_skimage`)."""

    name = "skimage"

    def __init__(self, params: SkimageParams | None = None, **overrides: float) -> None:
        base = params or SkimageParams()
        self.params = SkimageParams(**{**base.to_dict(), **overrides})
        self.max_area_um2 = self.params.max_area_um2

    def segment(self, rgb, valid=None, mpp=0.5):
        return segment_skimage(rgb, valid=valid, mpp=mpp, params=self.params)

    def config(self):
        return {"backend": self.name, **self.params.to_dict()}


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"{what} needs the package {module!r}, which is not installed: {_INSTALL}, or use {_OFFLINE}"
        )


def _finish(
    labels: np.ndarray, rgb: np.ndarray, valid: np.ndarray | None, mpp: float, max_area_um2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mask invalid pixels, drop oversized objects, renumber 1..n, add haematoxylin."""
    labels = np.asarray(labels, np.int32)
    if valid is not None:
        labels = np.where(valid, labels, 0)
    area = np.bincount(labels.ravel())
    ok = (area > 0) & (area <= max_area_um2 / mpp**2)
    ok[0] = False
    lut = np.zeros(area.size, np.int32)
    lut[ok] = np.arange(1, int(ok.sum()) + 1, dtype=np.int32)
    hema = haematoxylin(rgb)
    if valid is not None:
        hema = np.where(valid, hema, np.float32(0))
    return lut[labels], hema


class StarDistBackend(NucleiBackend):
    """StarDist ``2D_versatile_he`` (Schmidt et al. 2018); weights download on first use.

    Parameters
    ----------
    model_name
        Pretrained StarDist model name.
    model_mpp
        Resolution the pretrained model expects (the patch is rescaled to it).
    """

    name = "stardist"

    def __init__(self, model_name: str = "2D_versatile_he", model_mpp: float = 0.5) -> None:
        _require("stardist", f"The StarDist nuclei backend ({model_name})")
        self.model_name, self.model_mpp = model_name, model_mpp
        self._model = None

    def __getstate__(self):
        return {**self.__dict__, "_model": None}

    def _load(self):
        if self._model is None:
            try:
                from stardist.models import StarDist2D  # needs tensorflow as well
            except ImportError as err:
                raise MissingDependencyError(
                    f"StarDist could not be imported ({err}): {_INSTALL} and tensorflow; {_OFFLINE}"
                ) from err
            try:
                self._model = StarDist2D.from_pretrained(self.model_name)
            except Exception as err:  # network errors come in many types
                raise MissingDependencyError(
                    f"StarDist weights {self.model_name!r} could not be loaded ({type(err).__name__}: {err}); "
                    f"they download on first use, so connect once or {_INSTALL} on a machine that can; {_OFFLINE}"
                ) from err
            if self._model is None:
                raise MissingDependencyError(
                    f"StarDist has no pretrained model {self.model_name!r}; {_OFFLINE}"
                )
        return self._model

    def segment(self, rgb, valid=None, mpp=0.5):
        from skimage.transform import resize

        model = self._load()
        scale = mpp / self.model_mpp
        img = rgb.astype(np.float32) / 255.0
        if abs(scale - 1) > 1e-3:
            shape = (round(rgb.shape[0] * scale), round(rgb.shape[1] * scale))
            img = resize(img, shape, order=1, anti_aliasing=False)
        lab, _ = model.predict_instances(img, axes="YXC", show_tile_progress=False, verbose=False)
        if lab.shape != rgb.shape[:2]:
            lab = resize(lab, rgb.shape[:2], order=0, preserve_range=True, anti_aliasing=False)
        return _finish(lab, rgb, valid, mpp, self.max_area_um2)

    def config(self):
        return {"backend": self.name, "model": self.model_name, "model_mpp": self.model_mpp}


class CellposeBackend(NucleiBackend):
    """Cellpose ``nuclei`` model (Stringer et al. 2021); weights download on first use.

    Parameters
    ----------
    model_type
        Cellpose pretrained model name.
    diameter_um
        Typical nucleus diameter, converted to pixels with the patch's µm/px.
    """

    name = "cellpose"

    def __init__(self, model_type: str = "nuclei", diameter_um: float = 8.0) -> None:
        _require("cellpose", f"The Cellpose nuclei backend ({model_type})")
        self.model_type, self.diameter_um = model_type, diameter_um
        self._model = None

    def __getstate__(self):
        return {**self.__dict__, "_model": None}

    def _load(self):
        if self._model is None:
            try:
                from cellpose import models
            except ImportError as err:
                raise MissingDependencyError(
                    f"Cellpose could not be imported ({err}): {_INSTALL}; {_OFFLINE}"
                ) from err
            try:
                if hasattr(models, "Cellpose"):  # cellpose < 4
                    self._model = models.Cellpose(gpu=False, model_type=self.model_type)
                else:
                    self._model = models.CellposeModel(gpu=False)
            except Exception as err:  # network errors come in many types
                raise MissingDependencyError(
                    f"Cellpose weights {self.model_type!r} could not be loaded ({type(err).__name__}: {err}); "
                    f"they download on first use, so connect once; {_OFFLINE}"
                ) from err
        return self._model

    def segment(self, rgb, valid=None, mpp=0.5):
        model = self._load()
        out = model.eval(rgb, diameter=self.diameter_um / mpp, channels=[0, 0])
        return _finish(out[0], rgb, valid, mpp, self.max_area_um2)

    def config(self):
        return {"backend": self.name, "model": self.model_type, "diameter_um": self.diameter_um}


#: Nuclei backends by name.
NUCLEI_BACKENDS: dict[str, type[NucleiBackend]] = {
    "skimage": SkimageBackend,
    "stardist": StarDistBackend,
    "cellpose": CellposeBackend,
}


def get_nuclei_backend(name: str | NucleiBackend = "skimage", **kwargs: Any) -> NucleiBackend:
    """Instantiate a backend by name (an instance passes through).

    Raises
    ------
    geneshot.errors.InputError
        Unknown name.
    geneshot.errors.MissingDependencyError
        The backend's package is not installed.
    """
    if isinstance(name, NucleiBackend):
        return name
    if name not in NUCLEI_BACKENDS:
        from geneshot.errors import InputError

        raise InputError(
            None,
            f"unknown nuclei backend {name!r} (option backend)",
            f"choose one of {sorted(NUCLEI_BACKENDS)}",
        )
    return NUCLEI_BACKENDS[name](**kwargs)
