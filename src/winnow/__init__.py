"""winnow: curate instruction-tuning data into clean, balanced, versioned Parquet corpora."""

__version__ = "0.1.0"

from winnow import stages
from winnow.corpus import Corpus
from winnow.errors import ConfigError, CorpusError, InputError, MissingDependencyError, WinnowError
from winnow.formats import InputSpec
from winnow.pipeline import Pipeline, RunResult, Split
from winnow.train import TrainConfig, TrainResult, train  # torch is imported only when training

__all__ = [
    "ConfigError",
    "Corpus",
    "CorpusError",
    "InputError",
    "InputSpec",
    "MissingDependencyError",
    "Pipeline",
    "RunResult",
    "Split",
    "TrainConfig",
    "TrainResult",
    "WinnowError",
    "__version__",
    "stages",
    "train",
]
