"""The engine: plans become recorded, submitted, watched jobs (one launch path for all).

``core.engine.engine`` holds :class:`Engine` and :class:`Plan`; beside it, the executor
protocol and profiles, the backend registry, job states, the monitor, the launch events,
guard and window, the process's engine loop, the workspace helper and the Python API.
"""

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
