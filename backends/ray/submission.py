"""What one Ray submission is: its id, entrypoint and request body; pure (dry run = submit).

* **Id from the run tag.** ``submission_id`` is the run's tag (made safe for a file name) and
  a short hash of tag and job dir, so a submit that is retried, or re-run by a launcher
  that died before recording the handle, finds the first job instead of making a second.
* **No shell re-reads argv.** The entrypoint (Ray runs it with a shell) is the wrapper in
  :mod:`backends.ray.entrypoint`, inlined, and one JSON argument; both are ``shlex.quote``d.
* **The environment** (``NEMORUN_*``, the profile's and the job's variables) travels in the
  wrapper's JSON argument and is set verbatim (Ray would expand ``$VARS`` in
  ``runtime_env.env_vars``). Secrets go in ``runtime_env.env_vars`` as one base64 value, so they
  are never in the entrypoint (Ray prints it into the driver log) nor in a dry run; Ray keeps
  the runtime env in its job table, readable by whoever can reach the cluster's Jobs API.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from core.engine import launch_guard
from core.engine.executors_ray import RayExecutor
from core.engine.protocol import BackendError, JobSpec

_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Exit code of the wrapper when a dependency did not succeed (its command never ran).
DEPENDENCY_EXIT = 86
#: Metadata keys this backend sets on every job it submits.
META_TAG = "nemorun_run_tag"
META_DEPS = "nemorun_dependencies"
META_EXPERIMENT = "nemorun_experiment"
META_JOB = "nemorun_job"
#: runtime_env variable carrying the secret env (base64 of a JSON object) to the wrapper.
SECRET_ENV = "NEMORUN_SECRET_ENV_B64"


def submission_id(run_tag: str, job_dir: str) -> str:
    """The Ray submission id of a run: its tag (safe as a file name: Ray names logs by it) and
    a hash of tag and job dir. The same submit retried gets the same id; a job of another store
    that happens to reuse a tag on a long-lived cluster does not collide with it."""
    safe = _SAFE_ID.sub("_", run_tag).strip("_")[:100] or "job"
    digest = hashlib.sha256(f"{run_tag}\0{job_dir}".encode()).hexdigest()[:10]
    return f"{safe}-{digest}"


def _path_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip(".") or "_"


def package_name(archive_sha256: str) -> str:
    """Content-addressed package name in the cluster's GCS (Ray's own naming scheme)."""
    return f"_ray_pkg_{archive_sha256}.tar.gz"


def stream_file(sid: str, stream: str) -> str:
    """The wrapper's copy of one stream, next to the driver log on the driver's node."""
    return f"nemorun-{sid}.{'out' if stream == 'stdout' else 'err'}"


def _wrapper_source() -> str:
    text = resources.files("backends.ray").joinpath("entrypoint.py").read_text()
    # Drop the module docstring: the entrypoint is shown in Ray's dashboard and driver log.
    if text.startswith('"""'):
        end = text.find('"""', 3)
        text = text[end + 3 :].lstrip("\n")
    return text


@dataclass
class Submission:
    submission_id: str
    body: dict[str, Any]
    secret_names: list[str]
    #: The launch line the wrapper runs when the profile has a launcher (None: the command).
    launch: list[str] | None = None

    def shown(self) -> dict[str, Any]:
        """The body with the secrets' values masked (for dry runs and errors)."""
        body = json.loads(json.dumps(self.body))
        env = body.get("runtime_env", {}).get("env_vars", {})
        if SECRET_ENV in env:
            env[SECRET_ENV] = "*** (" + ", ".join(self.secret_names) + ")"
        return dict(body)


def build(
    executor: RayExecutor,
    job: JobSpec,
    *,
    working_dir_uri: str | None = None,
    dependency_ids: list[str] | None = None,
    stream_paths: tuple[str, str] | None = None,
    job_dir: str | None = None,
    dashboard: str | None = None,
) -> Submission:
    """The POST /api/jobs/ body for ``job``."""
    if not job.argv:
        raise BackendError("the job has no command (empty argv)")
    sid = submission_id(job.run_tag, job.job_dir)
    argv = [str(a) for a in job.argv]
    if executor.python and argv[0] == sys.executable:
        argv[0] = executor.python  # the engine names this machine's interpreter
    if not job_dir:
        job_dir = job.job_dir
        if executor.job_dir:  # a root on the cluster: one dir per experiment and job below it
            job_dir = posixpath.join(
                executor.job_dir, _path_part(job.experiment_id), _path_part(job.job_name)
            )
    files: dict[str, str] = {}
    if job.task_file:
        # The task travels inside the request (a remote cluster cannot read this machine's
        # store); the wrapper writes it into the job dir and the argv names it there.
        remote_task = posixpath.join(job_dir, posixpath.basename(job.task_file))
        try:
            data = Path(job.task_file).read_bytes()
        except OSError as exc:
            raise BackendError(f"cannot read the task file {job.task_file}: {exc}") from exc
        files[remote_task] = base64.b64encode(data).decode()
        argv = [remote_task if a == job.task_file else a for a in argv]
    launch = _launch(executor, job, argv)
    if launch is not None:
        argv = launch.argv
    env: dict[str, str] = {
        **launch_guard.job_env(),
        **{str(k): str(v) for k, v in executor.env_vars.items()},
        **{str(k): str(v) for k, v in job.env.items()},
        "NEMORUN_EXPERIMENT_ID": job.experiment_id,
        "NEMORUN_JOB_NAME": job.job_name,
        "NEMORUN_RUN_TAG": job.run_tag,
        "NEMORUN_JOB_DIR": job_dir,
        **(launch.env if launch else {}),
    }
    secrets = {k: str(v) for k, v in job.secret_env.items() if v is not None}
    for name in [*env, *secrets]:
        if not _ENV_NAME.match(name):
            raise BackendError(f"invalid environment variable name {name!r}")
    runtime_env = json.loads(json.dumps(executor.runtime_env or {}))
    if not isinstance(runtime_env, dict):
        raise BackendError("runtime_env must be a table")
    if secrets:
        # Ray expands $VARS in runtime_env values (os.path.expandvars, no escape): base64 has
        # no "$", so secrets arrive verbatim; the wrapper decodes them into the job's env.
        blob = base64.b64encode(json.dumps(secrets).encode()).decode()
        runtime_env.setdefault("env_vars", {})[SECRET_ENV] = blob
    if working_dir_uri:
        runtime_env["working_dir"] = working_dir_uri
    spec: dict[str, Any] = {
        "argv": argv,
        "env": env,
        "name": f"nemorun-{sid}",
        "job_dir": job_dir,
    }
    if not working_dir_uri and not runtime_env.get("working_dir") and job.workdir:
        spec["cwd"] = job.workdir  # used where it exists (a cluster sharing this filesystem)
    if files:
        spec["files"] = files
    if launch is not None:
        spec["require"] = launch.require
    if stream_paths:
        spec["out"], spec["err"] = stream_paths
    if dependency_ids:
        spec["after"] = list(dependency_ids)
        spec["dashboard"] = dashboard or executor.address
        spec["dependency_exit"] = DEPENDENCY_EXIT
    python = executor.python or "python"
    entrypoint = shlex.join([python, "-c", _wrapper_source(), json.dumps(spec)])
    metadata = {str(k): str(v) for k, v in executor.metadata.items()}
    metadata.update(
        {
            META_TAG: job.run_tag,
            META_EXPERIMENT: job.experiment_id,
            META_JOB: job.job_name,
        }
    )
    if dependency_ids:
        metadata[META_DEPS] = ",".join(dependency_ids)
    body: dict[str, Any] = {
        "entrypoint": entrypoint,
        "submission_id": sid,
        "runtime_env": runtime_env,
        "metadata": metadata,
    }
    if executor.entrypoint_num_cpus is not None:
        body["entrypoint_num_cpus"] = executor.entrypoint_num_cpus
    if executor.entrypoint_num_gpus is not None:
        body["entrypoint_num_gpus"] = executor.entrypoint_num_gpus
    if executor.entrypoint_memory is not None:
        body["entrypoint_memory"] = executor.entrypoint_memory
    if executor.entrypoint_resources:
        body["entrypoint_resources"] = {
            str(k): float(v) for k, v in executor.entrypoint_resources.items()
        }
    return Submission(sid, body, sorted(secrets), launch.argv if launch else None)


@dataclass
class _Launch:
    argv: list[str]
    env: dict[str, str]
    #: What the wrapper checks before starting anything (see backends.ray.entrypoint).
    require: dict[str, str]


def _launch(executor: RayExecutor, job: JobSpec, argv: list[str]) -> _Launch | None:
    """The launch line for a profile with a launcher (None without one).

    One node: Ray runs a job's entrypoint as one process on one node, so the launcher
    starts every rank there, with the rendezvous on loopback (port 0: the store binds a free
    one; this machine cannot pick a port on the cluster's node). The launcher runs with the
    cluster's ``python``, and so do the ranks: a command naming this machine's interpreter
    (what the engine writes) is given that one. The package check cannot run from here, so
    the wrapper does it on the node with the same interpreter, and says this message.
    """
    launcher = executor.launcher
    nproc = executor.nproc_per_node
    if launcher is None:
        if nproc > 1:
            raise BackendError(
                f"job {job.job_name!r}: nproc_per_node={nproc} needs a launcher "
                "(launcher='torchrun'); a plain Ray entrypoint is one process"
            )
        return None
    from core.launchers import (
        RANK_PREFIX_ENV,
        LauncherError,
        launch_argv,
        missing_package_error,
        package_importable,
        ranks_per_node,
        single_node_endpoint,
    )

    python = executor.python or "python"
    if argv[0] == sys.executable:
        argv = [python, *argv[1:]]
    try:
        line = launch_argv(
            launcher,
            argv,
            python=python,
            nnodes=1,
            nproc_per_node=ranks_per_node(launcher, nproc),
            rdzv_endpoint=single_node_endpoint(launcher),
            rdzv_id=job.run_tag,
        )
    except LauncherError as exc:
        raise BackendError(f"job {job.job_name!r}: {exc}") from None
    _, module = package_importable(launcher, python)
    message = str(missing_package_error(launcher, module, "on the Ray cluster"))
    return _Launch(line, dict(RANK_PREFIX_ENV), {"module": module, "message": message})
