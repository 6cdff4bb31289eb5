"""One family of errors, so the CLI can print any of them as one clean line.

A message says what went wrong, where (file, line, row id, YAML key), what was expected and,
where it helps, how to fix it. Anything that is not a `WinnowError` is a bug and keeps its
traceback.
"""

from __future__ import annotations


class WinnowError(Exception):
    """Base of every error winnow raises on purpose."""


class ConfigError(WinnowError, ValueError):
    """A pipeline, stage or CLI setting is invalid.

    ``key`` names the offending parameter, so the pipeline loader can point at its YAML line.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class InputError(WinnowError, ValueError):
    """Input data cannot be read or does not have the expected shape."""


class CorpusError(WinnowError):
    """A corpus folder or version is missing or inconsistent."""


class MissingDependencyError(WinnowError, ImportError):
    """An optional package is needed; the message is the `pip install` line."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        target = f"'winnow[{extra}]'" if extra else package
        why = f" for {purpose}" if purpose else ""
        super().__init__(f"{package} is needed{why}: pip install {target}")


class WorkerError(WinnowError):
    """A worker process died under a run (killed, out of memory, a crash in native code)."""


class InvariantError(WinnowError, AssertionError):
    """An internal promise was broken (rows lost, ids changed): always a bug, please report it."""
