"""The Docker executor profile: NeMo Run's ``DockerExecutor`` field names, as plain data.

It lives in core (not in ``backends/docker``) so config.toml and ``run.DockerExecutor(...)``
can name it without importing the docker SDK; the backend that reads it is
``backends.docker``. Values that only the engine can check (an image that exists, a GPU
runtime) are checked by the backend before anything is created; here only the shape of the
values is checked, so a typo in config.toml fails at load time, not at submit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.engine.executors import ExecutorProfile, launcher_from, register_profile

#: What happens to a container once its job has ended (its logs are copied to the store
#: first, whatever the policy): ``remove`` it, ``keep`` it, or keep only failed ones.
CLEANUP_POLICIES = ("remove", "keep", "keep-failed")
#: When the image is pulled: only if it is not on the engine yet, or never (a missing image is
#: then an error before anything is created).
PULL_POLICIES = ("missing", "never")
#: The Docker SDK's own default when neither ``base_url`` nor ``DOCKER_HOST`` is set.
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

_ULIMIT = re.compile(r"^[a-z]+=-?\d+(:-?\d+)?$")


def docker_host(base_url: str | None) -> str:
    """The engine a profile talks to: ``base_url``, else ``DOCKER_HOST``, else the default."""
    url = (base_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST).strip()
    return url.rstrip("/") if not url.startswith("unix://") else url


@register_profile
@dataclass
class DockerExecutor(ExecutorProfile):
    """Run each job in its own container on a Docker-API engine (Docker, or podman's service).

    NeMo Run's fields: ``container_image``, ``num_gpus`` (``-1`` = all GPUs), ``runtime``,
    ``shm_size``, ``ulimits`` (``"nofile=1024:2048"`` strings), ``ipc_mode``, ``network``
    (network mode; ``"none"`` by default, so a job reaches nothing it was not given),
    ``volumes`` (``"host:container[:ro]"``), ``env_vars``, ``privileged``,
    ``additional_kwargs`` (more ``containers.create`` arguments of the docker SDK), ``packager``.
    Ours: ``base_url`` (else ``DOCKER_HOST``), ``cleanup`` (see :data:`CLEANUP_POLICIES`),
    ``pull`` (see :data:`PULL_POLICIES`), ``python`` (the interpreter *in the image* that
    runs Partial/Config tasks: Python >= 3.11; nemorun-tui need not be installed there),
    ``init`` (an init process as PID 1, so a cancel's SIGTERM reaches the job) and
    ``stop_grace_seconds`` (SIGTERM to SIGKILL on cancel). ``launcher`` (None, ``"torchrun"``,
    ``"ft"`` or a launcher object, see core.launchers) runs ``ntasks_per_node`` ranks in the
    container with their rendezvous on its loopback; the image's ``python`` must import the
    launcher's package, which is checked in that image before the job's container is created.
    """

    backend: ClassVar[str] = "docker"
    container_image: str = ""
    num_gpus: int | None = None
    runtime: str | None = None
    shm_size: str | None = None
    ulimits: list[str] = field(default_factory=list)
    ipc_mode: str | None = None
    network: str = "none"
    volumes: list[str] = field(default_factory=list)
    privileged: bool = False
    additional_kwargs: dict[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    cleanup: str = "remove"
    pull: str = "missing"
    python: str = "python3"
    init: bool = True
    stop_grace_seconds: float = 10.0
    ntasks_per_node: int = 1
    launcher: Any = None

    def __post_init__(self) -> None:
        self.launcher = launcher_from(self.launcher)
        problems = []
        if (
            isinstance(self.ntasks_per_node, bool)
            or not isinstance(self.ntasks_per_node, int)
            or self.ntasks_per_node < 1
        ):
            problems.append(
                f"ntasks_per_node must be an integer >= 1, not {self.ntasks_per_node!r}"
            )
        if not isinstance(self.container_image, str) or not self.container_image.strip():
            problems.append("container_image is required (e.g. 'ubuntu:24.04')")
        if self.cleanup not in CLEANUP_POLICIES:
            problems.append(f"cleanup must be one of {', '.join(CLEANUP_POLICIES)}")
        if self.pull not in PULL_POLICIES:
            problems.append(f"pull must be one of {', '.join(PULL_POLICIES)}")
        if self.num_gpus is not None and (
            isinstance(self.num_gpus, bool)
            or not isinstance(self.num_gpus, int)
            or self.num_gpus < -1
        ):
            problems.append(f"num_gpus must be an integer >= -1 (-1 = all), not {self.num_gpus!r}")
        if not isinstance(self.ulimits, list) or not all(
            isinstance(u, str) and _ULIMIT.match(u) for u in self.ulimits
        ):
            problems.append(
                f"ulimits must be strings like 'nofile=1024:2048', not {self.ulimits!r}"
            )
        if not isinstance(self.volumes, list) or not all(isinstance(v, str) for v in self.volumes):
            problems.append(
                f"volumes must be 'host:container[:mode]' strings, not {self.volumes!r}"
            )
        if not isinstance(self.additional_kwargs, dict):
            problems.append("additional_kwargs must be a table/dict")
        if not isinstance(self.stop_grace_seconds, int | float) or self.stop_grace_seconds < 0:
            problems.append("stop_grace_seconds must be a number >= 0")
        if problems:
            raise ValueError("DockerExecutor: " + "; ".join(problems))
        if not self.base_url:
            # Resolved once and stored with the run: a later DOCKER_HOST must not send its
            # polls, logs and cancels to another engine.
            self.base_url = docker_host(None)

    def target(self) -> str:
        """One target per engine: its API URL (one list call per refresh answers all jobs)."""
        return docker_host(self.base_url)
