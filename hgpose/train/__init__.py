"""Training: `hgpose train` (presets thesis / newell / thesis-ae), checkpoints, resume, DDP.

    from hgpose.train import train
    summary = train("data/coco", "runs/thesis", preset="thesis", overrides=["model.features=64"])

See docs/training.md.
"""

from hgpose.config import PRESETS, TrainConfig
from hgpose.train.loop import TrainingInterrupted
from hgpose.train.run import format_summary, train

__all__ = ["PRESETS", "TrainConfig", "TrainingInterrupted", "format_summary", "train"]
