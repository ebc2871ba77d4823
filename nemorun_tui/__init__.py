"""nemorun-tui: ``import nemorun_tui as run`` gives NeMo Run's names over our engine.

Names resolve lazily (PEP 562) so ``import nemorun_tui`` costs almost nothing and never
imports textual; fiddle loads the first time ``run.Config``/``run.Partial`` is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Config": "core.config",
    "Partial": "core.config",
    "Script": "core.config",
    "Experiment": "core.engine.experiment",
    "run": "core.engine.experiment",
    "RunFailedError": "core.engine.experiment",
    "allow_nested_launch": "core.engine.experiment",
    "LocalExecutor": "core.engine.executors",
    "SlurmExecutor": "core.engine.executors",
    "SSHTunnel": "core.engine.executors",
    "LocalTunnel": "core.engine.executors",
    "KubernetesExecutor": "core.engine.executors_kubernetes",
    "DockerExecutor": "core.engine.executors_docker",
    "RayExecutor": "core.engine.executors_ray",
    "SlurmRayExecutor": "core.engine.executors_ray",
    "Packager": "core.packaging",
    "GitArchivePackager": "core.packaging",
    "PatternPackager": "core.packaging",
    "HybridPackager": "core.packaging",
    "recipe": "core.recipes",
    "factory": "core.recipes",
    "JobState": "core.engine.states",
    "Torchrun": "core.launchers",
    "FaultTolerance": "core.launchers",
    "sweep": "core.engine.sweep_api",
    "Plugin": "core.nemo_compat",
    "autoconvert": "core.nemo_compat",
    "cli": "nemorun_tui.cli",  # run.cli.entrypoint / run.cli.factory / run.cli.main
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nemorun_tui' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"{__name__}.{name}" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
