"""The Kubernetes executor profile: data only, so config.toml and the Python API can name it
without importing the ``kubernetes`` client (the backend package imports that lazily).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.engine.executors import ExecutorProfile, launcher_from, register_profile


@register_profile
@dataclass
class KubernetesExecutor(ExecutorProfile):
    """One batch/v1 Job per task on a Kubernetes cluster reached through a kubeconfig.

    ``context`` is a kubeconfig context (empty: the current one); ``kubeconfig`` a file
    (empty: ``$KUBECONFIG`` or ``~/.kube/config``). ``nodes > 1`` makes an Indexed Job plus a
    headless Service so every rank finds rank 0 (``MASTER_ADDR``). ``volumes`` are tables:
    ``{name, mount_path, pvc | host_path | config_map, read_only?, sub_path?}``. The job dir
    (``NEMORUN_JOB_DIR``) is ``job_dir_mount`` inside the container, backed by the PVC
    ``job_dir_claim`` (one sub-path per job) or else an emptyDir. ``qps``/``burst`` cap API
    requests per second for the whole namespace (client-go's defaults are 5 and 10).
    """

    backend: ClassVar[str] = "kubernetes"
    image: str = ""
    namespace: str = "default"
    context: str = ""
    kubeconfig: str = ""
    nodes: int = 1
    nproc_per_node: int = 1
    cpu: str | None = None
    memory: str | None = None
    gpus: int = 0
    volumes: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    service_account: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    image_pull_secrets: list[str] = field(default_factory=list)
    ttl_seconds_after_finished: int | None = None
    working_dir: str | None = None
    job_dir_mount: str = "/nemorun/job"
    job_dir_claim: str | None = None
    master_port: int = 29500
    #: The interpreter inside the image, for tasks that name this machine's `sys.executable`.
    python: str = "python"
    qps: float = 5.0
    burst: int = 10
    #: ``"Job"`` (batch/v1, the default) or ``"PyTorchJob"`` (Kubeflow's training operator,
    #: which must be installed in the cluster).
    kind: str = "Job"
    #: None (the command as one process), "torchrun"/Torchrun(...) or "ft"/FaultTolerance(...)
    #: (core.launchers): each pod runs the launcher with ``nproc_per_node`` ranks, the
    #: rendezvous on rank 0's pod (``MASTER_ADDR``), or on loopback for one node.
    launcher: Any = None

    def __post_init__(self) -> None:
        self.launcher = launcher_from(self.launcher)
        if self.nodes < 1 or self.nproc_per_node < 1:
            raise ValueError("nodes and nproc_per_node must be >= 1")
        if self.gpus < 0:
            raise ValueError("gpus must be >= 0")
        if self.kind not in ("Job", "PyTorchJob"):
            raise ValueError(f"kind must be 'Job' or 'PyTorchJob', not {self.kind!r}")
        if self.qps <= 0:
            raise ValueError("qps must be > 0 (API requests per second)")

    def target(self) -> str:
        """One target per (context, namespace[, kind]): one watch serves all its jobs."""
        base = f"{self.context or '-'}/{self.namespace}"
        return base if self.kind == "Job" else f"{base}/{self.kind.lower()}"
