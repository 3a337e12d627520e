"""Training: the user-facing model class, its data contract and the trainer."""

from geneshot.train._contract import DataContract
from geneshot.train._model import SETTINGS, GeneshotModel, TrainConfig

__all__ = ["SETTINGS", "DataContract", "GeneshotModel", "TrainConfig"]
