"""``winnow train``: a thin, correct SFT step on a corpus version (DESIGN.md §6).

Importing this package does not import torch; :func:`train` does, and says how to install it.
"""

from winnow.training.config import TrainConfig
from winnow.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
