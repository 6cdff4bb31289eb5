"""winnow: curate instruction-tuning data into clean, balanced, versioned Parquet corpora.

The public names are imported on first use (PEP 562): ``import winnow`` is instant, so the
``winnow`` command answers ``--help`` quickly and can catch a Ctrl-C while its libraries load
(see ``winnow.__main__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → the module that defines it
_PUBLIC = {
    "ConfigError": "winnow.errors",
    "Corpus": "winnow.corpus",
    "CorpusError": "winnow.errors",
    "InputError": "winnow.errors",
    "InputSpec": "winnow.formats",
    "MissingDependencyError": "winnow.errors",
    "Pipeline": "winnow.pipeline",
    "RunResult": "winnow.pipeline",
    "Split": "winnow.pipeline",
    "TrainConfig": "winnow.training",
    "TrainResult": "winnow.training",
    "WinnowError": "winnow.errors",
    "train": "winnow.training",  # torch is imported only when training
}

__all__ = [*sorted(_PUBLIC), "__version__", "stages"]


def __getattr__(name: str) -> Any:
    if name == "stages":
        return importlib.import_module("winnow.stages")
    if name not in _PUBLIC:
        raise AttributeError(f"module 'winnow' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # the names as type checkers and editors should see them
    from winnow import stages as stages
    from winnow.corpus import Corpus as Corpus
    from winnow.errors import ConfigError as ConfigError
    from winnow.errors import CorpusError as CorpusError
    from winnow.errors import InputError as InputError
    from winnow.errors import MissingDependencyError as MissingDependencyError
    from winnow.errors import WinnowError as WinnowError
    from winnow.formats import InputSpec as InputSpec
    from winnow.pipeline import Pipeline as Pipeline
    from winnow.pipeline import RunResult as RunResult
    from winnow.pipeline import Split as Split
    from winnow.training import TrainConfig as TrainConfig
    from winnow.training import TrainResult as TrainResult
    from winnow.training import train as train
