"""Build the exact container-create request for one job, with no side effects.

The dry run shows this request and the submit posts it unchanged (only secret values, shown
as ``***``, differ), so what the user previews is what the engine receives. The body is the
Docker Engine API's JSON, built with the SDK's own ``ContainerConfig``/``HostConfig`` so its
validation applies; every problem becomes a :class:`BackendError` *before* any call to the
engine, so a bad option never leaves a half-created container behind.

Layout (host side inside the store's job dir, container side fixed and documented):

* ``<job_dir>/container/out``  → ``/nemorun/job`` (read-write): ``NEMORUN_JOB_DIR``, the job's
  outputs. The rest of the store's job dir (task, executor, kept logs, the backend's state
  files) is *not* mounted, so a job cannot rewrite its own record.
* ``<job_dir>/container/code`` → ``/nemorun/code``: the packaged code, extracted and checked on
  this machine; the job runs there when there is packaged code, else in ``/nemorun/job``.
* the task file (Partial/Config tasks) → ``/nemorun/task.json`` (read-only), and this
  machine's ``core`` package → ``/nemorun/lib/core`` (read-only, on ``PYTHONPATH``) for the
  job runner, which needs nothing else: any image with Python >= 3.11 runs a Partial.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import posixpath
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from core.engine import launch_guard
from core.engine.executors_docker import DockerExecutor
from core.engine.protocol import BackendError, Handle, JobSpec

#: Engine API version the backend speaks (Docker >= 20.10 and podman >= 4 accept it); pinned,
#: so the dry run's request path is the one the submit uses.
API_VERSION = "1.41"
CONTAINER_JOB_DIR = "/nemorun/job"
CONTAINER_CODE_DIR = "/nemorun/code"
CONTAINER_TASK_FILE = "/nemorun/task.json"
#: This machine's ``core`` package is mounted here (read-only) for Partial/Config tasks: the
#: job runner (``python -m core.runner``) needs only the standard library and ``core``, so
#: any image with Python >= 3.11 runs them (the task's own modules must be importable there:
#: installed in the image, or in the packaged code, which is the working dir).
CONTAINER_LIB_DIR = "/nemorun/lib"
#: Where the backend keeps a job's files inside the store's job dir.
STATE_DIR = "container"
LABEL_PREFIX = "nemorun."
MANAGED_LABEL = "nemorun.managed"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_PART = re.compile(r"[^a-zA-Z0-9_.-]+")
_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_BIND_MODES = {
    "ro", "rw", "z", "Z", "shared", "slave", "private", "rshared", "rslave", "rprivate",
    "nocopy", "cached", "delegated", "consistent",
}  # fmt: skip
#: Create arguments the backend sets itself: overriding them would break what it promises
#: (the command and env it was given, its labels, stdout apart from stderr, the mounts).
_OWNED = {
    "version", "image", "command", "environment", "labels", "working_dir", "host_config",
    "binds", "network_mode", "privileged", "shm_size", "ipc_mode", "runtime", "ulimits",
    "device_requests", "tty", "detach", "stdin_open", "volumes", "name", "auto_remove",
}  # fmt: skip


@dataclass
class CreateRequest:
    """One ``POST /containers/create`` call: the container name and the JSON body."""

    name: str
    body: dict[str, Any]
    secret_names: list[str] = field(default_factory=list)
    out_dir: str = ""
    code_dir: str | None = None
    dependencies: list[Handle] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/v{API_VERSION}/containers/create?name={self.name}"

    def shown(self) -> dict[str, Any]:
        """The body with secret values replaced by ``***`` (for the dry run and errors)."""
        body: dict[str, Any] = json.loads(json.dumps(self.body))
        env = body.get("Env") or []
        secret = set(self.secret_names)
        body["Env"] = [e if e.split("=", 1)[0] not in secret else f"{e.split('=', 1)[0]}=***"
                       for e in env]  # fmt: skip
        return body


#: Label of the short-lived container that checks a launcher's package in the job's image.
CHECK_LABEL = "nemorun.package_check"


def state_dir(job_dir: str) -> str:
    return os.path.join(job_dir, STATE_DIR)


def container_name(run_tag: str, job_dir: str) -> str:
    """A stable name per (run tag, job dir): a retried submit asks for the same name, and the
    engine refuses a second container under it. The hash keeps two stores apart."""
    digest = hashlib.sha256(os.path.abspath(job_dir).encode()).hexdigest()[:10]
    cleaned = _NAME_PART.sub("_", run_tag).strip("._-")[:180] or "job"
    return f"{cleaned}-{digest}"


def core_package_dir() -> str:
    """This installation's ``core`` package (pure Python), mounted for the job runner."""
    import core

    return os.path.dirname(os.path.abspath(core.__file__))


def _ulimit(text: str) -> Any:
    from docker.types import Ulimit

    name, _, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    return Ulimit(name=name, soft=int(soft), hard=int(hard or soft))


def _check_volume(spec: str) -> str:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise BackendError(f"volumes: {spec!r} is not 'host:container[:mode]'")
    host, inside = parts[0], parts[1]
    if not (os.path.isabs(host) or _VOLUME_NAME.match(host)):
        raise BackendError(f"volumes: {host!r} is neither an absolute path nor a volume name")
    if not posixpath.isabs(inside):
        raise BackendError(f"volumes: the container path {inside!r} must be absolute")
    norm = posixpath.normpath(inside)
    if norm == "/nemorun" or norm.startswith("/nemorun/"):
        raise BackendError(f"volumes: {inside!r} is reserved for the job dir and code")
    if len(parts) == 3 and not set(parts[2].split(",")) <= _BIND_MODES:
        raise BackendError(f"volumes: unknown mode {parts[2]!r} in {spec!r}")
    return spec


def _split_additional(extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """additional_kwargs → (ContainerConfig kwargs, HostConfig kwargs); unknown keys refused."""
    from docker.types import ContainerConfig, HostConfig

    create_names = set(inspect.signature(ContainerConfig.__init__).parameters) - {"self"}
    host_names = set(inspect.signature(HostConfig.__init__).parameters) - {"self"}
    create: dict[str, Any] = {}
    host: dict[str, Any] = {}
    for key, value in extra.items():
        if key in _OWNED:
            raise BackendError(
                f"additional_kwargs: {key!r} is set by the backend (use the profile's own "
                "fields: container_image, network, volumes, env_vars, ...)"
            )
        if key in host_names:
            host[key] = value
        elif key in create_names:
            create[key] = value
        else:
            raise BackendError(
                f"additional_kwargs: {key!r} is not a container create option of the docker "
                "SDK (see docker.types.HostConfig / ContainerConfig)"
            )
    return create, host


def _launch(
    executor: DockerExecutor, job: JobSpec, argv: list[str]
) -> tuple[list[str], dict[str, str]]:
    """The container's command under the executor's launcher, and the env it adds.

    One node: ``ntasks_per_node`` ranks (or the launcher's own number) with the rendezvous on
    the container's loopback, which exists even with ``network="none"``; the port is picked
    inside the container (this machine cannot know a free one there). Without a launcher a
    job asking for several tasks is refused rather than run as one process.
    """
    launcher = executor.launcher
    if launcher is None:
        if executor.ntasks_per_node > 1:
            raise BackendError(
                f"job {job.job_name!r}: ntasks_per_node={executor.ntasks_per_node} needs a "
                "launcher (launcher='torchrun'); a plain container command is one task"
            )
        return argv, {}
    from core.launchers import (
        RANK_PREFIX_ENV,
        LauncherError,
        launch_argv,
        ranks_per_node,
        single_node_endpoint,
    )

    try:
        line = launch_argv(
            launcher,
            argv,
            python=executor.python,
            nnodes=1,
            nproc_per_node=ranks_per_node(launcher, executor.ntasks_per_node),
            rdzv_endpoint=single_node_endpoint(launcher),
            rdzv_id=job.run_tag,
        )
    except LauncherError as exc:
        raise BackendError(f"job {job.job_name!r}: {exc}") from None
    return line, dict(RANK_PREFIX_ENV)


def package_check(body: dict[str, Any], command: list[str]) -> dict[str, Any]:
    """A create request that runs ``command`` in the job's own image, mounts and env (the
    launcher's package must import there), and is not one of the managed job containers."""
    check = {k: v for k, v in body.items() if k not in ("Labels", "Cmd", "Entrypoint")}
    check["Cmd"] = list(command)
    check["Labels"] = {CHECK_LABEL: "1"}
    return check


def build(executor: DockerExecutor, job: JobSpec) -> CreateRequest:
    """The create request for ``job``; pure (reads nothing but the SDK's validation)."""
    try:
        from docker.errors import DockerException
        from docker.types import ContainerConfig, DeviceRequest, HostConfig
    except ImportError:
        raise BackendError(
            "the docker backend needs the docker SDK: pip install 'nemorun-tui[docker]'"
        ) from None

    job_dir = os.path.abspath(job.job_dir)
    out_dir = os.path.join(state_dir(job_dir), "out")
    code_dir = os.path.join(state_dir(job_dir), "code") if job.archive else None

    argv = [str(a) for a in job.argv]
    if not argv:
        raise BackendError("the job has no command (empty argv)")
    if argv[0] == sys.executable:
        # This machine's interpreter does not exist in the image: use the image's.
        argv[0] = executor.python
    binds = [f"{out_dir}:{CONTAINER_JOB_DIR}:rw"]
    if code_dir:
        binds.append(f"{code_dir}:{CONTAINER_CODE_DIR}:rw")
    runner_env: dict[str, str] = {}
    if job.task_file:
        task = os.path.abspath(job.task_file)
        argv = [CONTAINER_TASK_FILE if a == job.task_file else a for a in argv]
        binds.append(f"{task}:{CONTAINER_TASK_FILE}:ro")
        binds.append(f"{core_package_dir()}:{CONTAINER_LIB_DIR}/core:ro")
        theirs = {**executor.env_vars, **job.env}.get("PYTHONPATH")
        runner_env["PYTHONPATH"] = CONTAINER_LIB_DIR + (f":{theirs}" if theirs else "")
    binds.extend(_check_volume(v) for v in executor.volumes)
    argv, launch_env = _launch(executor, job, argv)

    env: dict[str, str] = {
        **launch_guard.job_env(),
        **executor.env_vars,
        **job.env,
        "NEMORUN_EXPERIMENT_ID": job.experiment_id,
        "NEMORUN_JOB_NAME": job.job_name,
        "NEMORUN_RUN_TAG": job.run_tag,
        "NEMORUN_JOB_DIR": CONTAINER_JOB_DIR,
        **runner_env,
        **launch_env,
    }
    secrets = {k: v for k, v in job.secret_env.items() if v is not None}
    env.update(secrets)
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise BackendError(f"invalid environment variable name {name!r}")
        if "\0" in str(value):
            raise BackendError(f"environment variable {name} contains a NUL byte")

    labels = {
        MANAGED_LABEL: "1",
        "nemorun.experiment_id": job.experiment_id,
        "nemorun.job_name": job.job_name,
        "nemorun.run_tag": job.run_tag,
        "nemorun.job_dir": job_dir,
    }
    if job.dependencies:
        labels["nemorun.after"] = json.dumps([h.to_dict() for h in job.dependencies])

    create_extra, host_extra = _split_additional(dict(executor.additional_kwargs))
    host_kwargs: dict[str, Any] = {
        "binds": binds,
        "network_mode": executor.network or None,
        "privileged": bool(executor.privileged),
        "shm_size": executor.shm_size,
        "ipc_mode": executor.ipc_mode,
        "runtime": executor.runtime,
        "init": bool(executor.init) or None,
        **host_extra,
    }
    if executor.ulimits:
        host_kwargs["ulimits"] = [_ulimit(u) for u in executor.ulimits]
    if executor.num_gpus:
        host_kwargs["device_requests"] = [
            DeviceRequest(count=int(executor.num_gpus), capabilities=[["gpu"]])
        ]
    try:
        host_config = HostConfig(API_VERSION, **host_kwargs)
        config = ContainerConfig(
            API_VERSION,
            executor.container_image,
            argv,
            environment=[f"{k}={v}" for k, v in env.items()],
            labels=labels,
            working_dir=CONTAINER_CODE_DIR if code_dir else CONTAINER_JOB_DIR,
            host_config=host_config,
            **create_extra,
        )
    except (DockerException, TypeError, ValueError) as exc:
        raise BackendError(f"invalid docker option for {job.job_name}: {exc}") from None
    return CreateRequest(
        name=container_name(job.run_tag, job_dir),
        body=dict(config),
        secret_names=sorted(secrets),
        out_dir=out_dir,
        code_dir=code_dir,
        dependencies=list(job.dependencies),
    )
