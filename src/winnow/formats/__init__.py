"""Ingest: read instruction data from files, folders, URLs, Hub datasets and in-memory tables
into batches of the canonical schema (see `winnow.formats.source` and `winnow.formats.adapters`)."""

from winnow.formats.adapters import ADAPTERS, Adapter, normalize_label
from winnow.formats.containers import FILE_TYPES
from winnow.formats.source import IngestBatch, InputSource, InputSpec, from_object, open_input

__all__ = [
    "ADAPTERS",
    "FILE_TYPES",
    "Adapter",
    "IngestBatch",
    "InputSource",
    "InputSpec",
    "from_object",
    "normalize_label",
    "open_input",
]
