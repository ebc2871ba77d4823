"""The engine: plans become recorded, submitted, watched jobs (one launch path for all).

``core.engine.engine`` holds :class:`Engine` and :class:`Plan`; beside it, the executor
protocol and profiles, the backend registry, job states, the monitor, the launch events,
guard and window, the process's engine loop, the workspace helper and the Python API.

The names below load on first use, so importing a light sibling (``core.engine.states``
from the store, say) does not import the engine itself, nor cycle back into the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine.engine import (
        EXECUTOR_FILE,
        PROVENANCE_FILE,
        RUNNER_MODULE,
        TASK_FILE,
        VIEW_FILE,
        Engine,
        LaunchError,
        LogSource,
        Plan,
        PlannedJob,
        task_name,
    )

__all__ = [
    "EXECUTOR_FILE",
    "PROVENANCE_FILE",
    "RUNNER_MODULE",
    "TASK_FILE",
    "VIEW_FILE",
    "Engine",
    "LaunchError",
    "LogSource",
    "Plan",
    "PlannedJob",
    "task_name",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'core.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module("core.engine.engine"), name)
    globals()[name] = value
    return value
