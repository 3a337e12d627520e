"""Training: the user-facing model class, its data contract and the trainer."""

from geneshot.train._contract import DataContract
from geneshot.train._ensemble import Ensemble
from geneshot.train._model import MODEL_TRAIN_DEFAULTS, SETTINGS, GeneshotModel, TrainConfig

__all__ = ["MODEL_TRAIN_DEFAULTS", "SETTINGS", "DataContract", "Ensemble", "GeneshotModel", "TrainConfig"]
