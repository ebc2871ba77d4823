"""The experiment store: records (the schema), the file store, and the SQLite index.

* :mod:`core.store.records` — what a manifest holds, checked field by field on read;
* :mod:`core.store.files` — :class:`Store`, the folders on disk (the source of truth);
* :mod:`core.store.index` — the listing cache, light enough for ``ls`` to use alone.

Names are re-exported lazily (PEP 562): ``from core.store import Store`` works as before,
while ``import core.store.index`` (the ``ls`` fast path) does not pay for the records'
imports (dataclasses, hence ``inspect``, and the protocol types).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.store.files import EVENTS, LOCK, Store
    from core.store.index import INDEX_FILE, INDEX_VERSION, MANIFEST
    from core.store.records import (
        SCHEMA_VERSION,
        AmbiguousExperiment,
        DamagedFileError,
        DamagedManifestError,
        ExperimentNotFound,
        ExperimentRecord,
        ExperimentSummary,
        JobRecord,
        LiveRunError,
        StateChange,
        StoreError,
        StoreWriteError,
        executor_label,
        name_problem,
        slugify,
    )

_WHERE = {
    "Store": "files",
    "EVENTS": "files",
    "LOCK": "files",
    "INDEX_FILE": "index",
    "INDEX_VERSION": "index",
    "MANIFEST": "index",
    **{
        name: "records"
        for name in (
            "SCHEMA_VERSION",
            "AmbiguousExperiment",
            "DamagedFileError",
            "DamagedManifestError",
            "ExperimentNotFound",
            "ExperimentRecord",
            "ExperimentSummary",
            "JobRecord",
            "LiveRunError",
            "StateChange",
            "StoreError",
            "StoreWriteError",
            "executor_label",
            "name_problem",
            "slugify",
        )
    },
}

__all__ = [
    "EVENTS",
    "INDEX_FILE",
    "INDEX_VERSION",
    "LOCK",
    "MANIFEST",
    "SCHEMA_VERSION",
    "AmbiguousExperiment",
    "DamagedFileError",
    "DamagedManifestError",
    "ExperimentNotFound",
    "ExperimentRecord",
    "ExperimentSummary",
    "JobRecord",
    "LiveRunError",
    "StateChange",
    "Store",
    "StoreError",
    "StoreWriteError",
    "executor_label",
    "name_problem",
    "slugify",
]
assert set(__all__) == set(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'core.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"core.store.{module}"), name)
    globals()[name] = value
    return value
