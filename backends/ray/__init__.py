"""Ray backends: Ray Jobs on an existing cluster (``ray``) and Ray inside Slurm (``slurm_ray``).

Both talk to the Jobs REST API with aiohttp (the ``ray`` extra); the ``ray`` package itself is
never imported here. Profiles live in :mod:`core.engine.executors_ray`.
"""

from backends.ray.backend import RayBackend
from core.engine.executors_ray import RayExecutor, SlurmRayExecutor

__all__ = ["RayBackend", "RayExecutor", "SlurmRayExecutor"]
