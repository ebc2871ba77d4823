"""Ray executor profiles: Ray Jobs on a cluster the user runs, and Ray inside a Slurm job.

Data only (like every profile): the Ray backend (``backends.ray``) talks to the cluster's Jobs
REST API, so neither this module nor the backend needs the ``ray`` package on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.engine.executors import ExecutorProfile, SlurmExecutor, launcher_from, register_profile

#: The Jobs API (dashboard) of a head started with Ray's defaults.
DEFAULT_ADDRESS = "http://127.0.0.1:8265"


def normalize_address(address: str) -> str:
    """``head:8265`` and ``http://head:8265/`` name one dashboard; ``ray://`` is refused.

    ``ray://`` is the Ray Client port (10001), which speaks gRPC, not the Jobs REST API.
    """
    text = (address or DEFAULT_ADDRESS).strip().rstrip("/")
    if text.startswith("ray://"):
        raise ValueError(
            f"address {address!r} is a Ray Client address; give the dashboard URL "
            "(e.g. http://head:8265), which serves the Jobs API"
        )
    if "://" not in text:
        text = "http://" + text
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"address {address!r} must be an http(s) dashboard URL")
    return text


@register_profile
@dataclass
class RayExecutor(ExecutorProfile):
    """Submit to an existing Ray cluster through its Jobs API (NeMo Run's RayJob, minus KubeRay).

    ``runtime_env`` is Ray's: ``env_vars``, ``pip``/``uv`` requirements, ``conda``, ...; a
    packaged code archive becomes its ``working_dir`` (uploaded once per content hash).
    ``python`` is the interpreter on the cluster for Python tasks (default: ``python`` on the
    PATH the Ray node was started with). ``job_dir`` is a root on the cluster's nodes: each job
    may write into ``<job_dir>/<experiment>/<job>`` (``NEMORUN_JOB_DIR``; without it, the
    store's job dir, right when the cluster shares this machine's filesystem).
    ``launcher`` (None, "torchrun"/Torchrun(...), "ft"/FaultTolerance(...): core.launchers)
    starts ``nproc_per_node`` ranks on the node that runs the entrypoint (one node: Ray runs
    one entrypoint process per job).
    """

    backend: ClassVar[str] = "ray"
    address: str = DEFAULT_ADDRESS
    runtime_env: dict[str, Any] = field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    python: str = ""
    job_dir: str = ""
    #: Seconds between log reads while following (the stream endpoint pushes sooner).
    log_interval: float = 0.5
    launcher: Any = None
    #: Ranks the launcher starts (a launcher's own ``nproc_per_node`` wins); without a
    #: launcher only 1 (the entrypoint is one process).
    nproc_per_node: int = 1

    def __post_init__(self) -> None:
        self.address = normalize_address(self.address)
        self.launcher = launcher_from(self.launcher)
        if (
            isinstance(self.nproc_per_node, bool)
            or not isinstance(self.nproc_per_node, int)
            or self.nproc_per_node < 1
        ):
            raise ValueError(
                f"nproc_per_node must be a positive integer, not {self.nproc_per_node!r}"
            )
        for name in ("entrypoint_num_cpus", "entrypoint_num_gpus"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")

    def target(self) -> str:
        """One target per dashboard: one list call answers every job on it."""
        return self.address


@register_profile
@dataclass
class SlurmRayExecutor(SlurmExecutor):
    """A Ray cluster inside one Slurm allocation (NeMo Run's SlurmRay launcher).

    Every :class:`SlurmExecutor` field applies to the allocation (``nodes`` is the cluster's
    size: head on the first node, one worker on each other). ``ray_python`` is the cluster's
    interpreter that has ``ray`` installed (its ``ray`` script starts the nodes; the job's
    ``python`` is found next to it). The entrypoint goes to the in-allocation head through its
    Jobs API with the Ray fields below; the cluster is torn down when the Ray job ends or the
    Slurm job is cancelled.
    """

    backend: ClassVar[str] = "slurm_ray"
    ray_python: str = ""
    runtime_env: dict[str, Any] = field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_resources: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    #: Capped by default: the object store otherwise takes 30% of the node's memory.
    object_store_memory: int | None = 500_000_000
    #: ``ray start`` CPUs per node (None: Ray counts them; Slurm's cgroup, if any, caps it).
    num_cpus: int | None = None
    head_start_timeout: float = 120.0
    #: Extra ``ray start`` arguments, as a list (never a shell string).
    ray_start_args: list[str] = field(default_factory=list)
