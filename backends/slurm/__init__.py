"""Slurm backend: sbatch/squeue/sacct/scancel on a login node (LocalTunnel) or over SSH.

The profile types (:class:`SlurmExecutor`, :class:`SSHTunnel`, :class:`LocalTunnel`) live in
``core.engine.executors`` so that config.toml and the Python API can name them without this package.
"""

from backends.slurm.backend import RateLimiter, SlurmBackend
from core.engine.executors import LocalTunnel, SlurmExecutor, SSHTunnel

__all__ = ["LocalTunnel", "RateLimiter", "SSHTunnel", "SlurmBackend", "SlurmExecutor"]
