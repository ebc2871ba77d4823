"""Ray on Slurm (``slurm_ray``): one Ray cluster per Slurm job, torn down when the job ends.

The Slurm backend does what it always does (sbatch once per run tag, batched squeue/sacct,
scancel, code shipped into ``<job_dir>/code``); the sbatch script's command is
:mod:`backends.ray.slurm_bootstrap`, which brings the cluster up in the allocation, submits the
entrypoint to it through its Jobs API and mirrors the Ray job's status into
``<job_dir>/ray-status.json``. So, from the login node (or over SSH):

* **status** is the Ray job's (PENDING until the cluster is up and the job is admitted), with
  the allocation beside it in the reason; it ends only once the allocation has ended (the
  cluster is gone), or with Slurm's state if the allocation died first;
* **logs** are the Ray job's own stdout/stderr (``ray-job.out``/``.err``, written by the job
  wrapper on the shared job dir); the cluster's bring-up is in ``slurm-<id>.out`` and
  ``ray-cluster.log``;
* **cancel** is scancel: the bootstrap's SIGTERM handler stops the Ray job and kills every
  process of that cluster.

The nodes are requested through ``additional_parameters`` (the last ``--nodes`` wins in
sbatch) so that the Slurm script does not wrap the bootstrap in ``srun`` on every node.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import time
from collections.abc import Sequence
from importlib import resources
from typing import ClassVar

from backends.ray import submission
from backends.ray.backend import report_from_info
from backends.slurm.backend import SlurmBackend
from backends.slurm.script import code_dir, remote_job_dir
from core.engine.executors import ExecutorProfile
from core.engine.executors_ray import RayExecutor, SlurmRayExecutor
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport
from core.transport import TransportError

BOOTSTRAP = "nemorun-slurm-ray.py"
CONFIG = "ray-config.json"
STATUS = "ray-status.json"


def ray_log_file(job_dir: str, stream: str) -> str:
    return posixpath.join(job_dir, "ray-job.out" if stream == "stdout" else "ray-job.err")


@dataclasses.dataclass
class Prepared:
    outer: JobSpec
    job_dir: str
    config: dict[str, object]


class SlurmRayBackend(SlurmBackend):
    """Slurm jobs that each run a Ray cluster and one Ray job on it."""

    name: ClassVar[str] = "slurm_ray"
    profile_class: ClassVar[type[ExecutorProfile]] = SlurmRayExecutor
    #: No sweep arrays (core.engine.sweep_submit looks for these): the array's points.sh
    #: would run each point's entrypoint bare, with no Ray cluster; a sweep on slurm_ray
    #: submits one Slurm job (one cluster) per point instead.
    submit_array = None  # type: ignore[assignment]
    dryrun_array = None  # type: ignore[assignment]

    def __init__(self, executor: SlurmRayExecutor, **kw: object) -> None:
        super().__init__(executor, **kw)  # type: ignore[arg-type]
        self._combined: dict[Handle, StatusReport] = {}

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> SlurmRayBackend:
        if not isinstance(profile, SlurmRayExecutor):
            raise BackendError(
                f"slurm_ray backend needs a SlurmRayExecutor, got {type(profile).__name__}"
            )
        return cls(profile)

    # ------------------------------------------------------------------ submit
    def prepare(self, job: JobSpec) -> Prepared:
        """The sbatch-side job (runs the bootstrap) and the bootstrap's config; pure."""
        ex = job.executor
        if not isinstance(ex, SlurmRayExecutor):
            raise BackendError(f"slurm_ray backend got a {type(ex).__name__} profile")
        if not ex.ray_python:
            raise BackendError(
                "SlurmRayExecutor needs ray_python: the cluster's interpreter that has ray "
                "installed (e.g. /shared/venvs/ray/bin/python)"
            )
        if ex.container_image or ex.srun_args:
            raise BackendError("SlurmRayExecutor does not support container_image or srun_args")
        if ex.launcher is not None:
            # The sbatch command is the bootstrap, not the entrypoint: a launcher would
            # start the bootstrap under torchrun and never reach the Ray job.
            raise BackendError(
                "SlurmRayExecutor does not support launcher (the Ray job's entrypoint runs on "
                "the cluster; start torchrun from it, or use SlurmExecutor)"
            )
        job_dir = remote_job_dir(ex, job)
        argv = list(job.argv)
        if job.task_file:
            remote_task = posixpath.join(job_dir, posixpath.basename(job.task_file))
            argv = [remote_task if a == job.task_file else a for a in argv]
        ray_ex = RayExecutor(
            runtime_env=ex.runtime_env,
            entrypoint_num_cpus=ex.entrypoint_num_cpus,
            entrypoint_num_gpus=ex.entrypoint_num_gpus,
            entrypoint_resources=ex.entrypoint_resources,
            metadata=ex.metadata,
            python=ex.python or ex.ray_python,
            job_dir=job_dir,
            env_vars=dict(ex.env_vars),
        )
        inner = dataclasses.replace(
            job,
            argv=argv,
            executor=ray_ex,
            secret_env={},  # added by the bootstrap from its environment: never on disk
            dependencies=[],  # Slurm's --dependency holds the whole allocation instead
            workdir=code_dir(job_dir) if job.archive else job.workdir,
            archive=None,
            task_file=None,  # uploaded by the Slurm backend; argv already names its copy
        )
        sub = submission.build(
            ray_ex,
            inner,
            stream_paths=(ray_log_file(job_dir, "stdout"), ray_log_file(job_dir, "stderr")),
            job_dir=job_dir,
        )
        config: dict[str, object] = {
            "job_dir": job_dir,
            "ray_python": ex.ray_python,
            "body": sub.body,
            "secret_names": sorted(job.secret_env),
            "secret_env_var": submission.SECRET_ENV,
            "object_store_memory": ex.object_store_memory,
            "num_cpus": ex.num_cpus,
            "head_start_timeout": ex.head_start_timeout,
            "ray_start_args": [str(a) for a in ex.ray_start_args],
        }
        outer_ex = dataclasses.replace(
            ex,
            nodes=1,
            ntasks_per_node=1,
            additional_parameters={**ex.additional_parameters, "nodes": ex.nodes},
        )
        outer = dataclasses.replace(
            job,
            executor=outer_ex,
            argv=[
                ex.ray_python,
                posixpath.join(job_dir, BOOTSTRAP),
                posixpath.join(job_dir, CONFIG),
            ],
        )
        return Prepared(outer=outer, job_dir=job_dir, config=config)

    async def dryrun(self, job: JobSpec) -> DryRun:
        prepared = self.prepare(job)
        dry = await super().dryrun(prepared.outer)
        dry.backend = self.name
        dry.summary = f"Ray cluster in a Slurm job: {dry.summary}"
        dry.artifacts[CONFIG] = json.dumps(prepared.config, indent=2, sort_keys=True)
        return dry

    async def submit(self, job: JobSpec) -> Handle:
        """Write the bootstrap and its config into the job dir, then sbatch (exactly once)."""
        prepared = self.prepare(job)
        t = self.transport()
        source = resources.files("backends.ray").joinpath("slurm_bootstrap.py").read_bytes()
        try:
            await t.makedirs(prepared.job_dir)
            await t.write(posixpath.join(prepared.job_dir, BOOTSTRAP), source, 0o644)
            await t.write(
                posixpath.join(prepared.job_dir, CONFIG),
                json.dumps(prepared.config).encode(),
                0o600,
            )
        except TransportError as exc:
            raise BackendError(f"cannot prepare {prepared.job_dir}: {exc}") from exc
        return await super().submit(prepared.outer)

    # ------------------------------------------------------------------ poll
    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        """Slurm's batched poll, then each live job's Ray status from its status file."""
        reports = await super().poll([h for h in handles if h not in self._combined])
        out: dict[Handle, StatusReport] = {}
        for h in handles:
            if h in self._combined:
                out[h] = self._combined[h]
                continue
            report = await self._combine(h, reports[h])
            if report.state.is_terminal:
                self._combined[h] = report
            out[h] = report
        return out

    async def _ray_status(self, job_dir: str) -> dict[str, object] | None:
        try:
            data = json.loads(await self.transport().read(posixpath.join(job_dir, STATUS)))
        except (FileNotFoundError, PermissionError, TransportError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    async def _combine(self, h: Handle, slurm: StatusReport) -> StatusReport:
        alloc = f"Slurm job {h.job_id} {slurm.state.value}"
        job_dir = self._dirs.get(h.job_id)
        if slurm.state in (JobState.SUBMITTED, JobState.PENDING, JobState.UNKNOWN) or not job_dir:
            reason = f"allocation: {slurm.reason}" if slurm.reason else alloc
            return dataclasses.replace(slurm, reason=reason)
        status = await self._ray_status(job_dir)
        if status is None:
            if slurm.state is JobState.RUNNING:
                return dataclasses.replace(
                    slurm, state=JobState.PENDING, reason=f"{alloc}: starting the Ray cluster"
                )
            why = f"{slurm.reason}; " if slurm.reason else ""
            return dataclasses.replace(slurm, reason=f"{why}the Ray job was never submitted")
        now = time.time()
        ray = report_from_info(status, {}, now)
        source = f"ray jobs api (ray-status.json) + {slurm.source}"
        if slurm.state is JobState.RUNNING:
            if ray.state.is_terminal:
                return StatusReport(
                    JobState.RUNNING,
                    source=source,
                    observed_at=now,
                    reason=f"Ray job {ray.state.value}; {alloc}: tearing the cluster down",
                    started_at=ray.started_at,
                )
            return dataclasses.replace(
                ray, source=source, reason=f"{ray.reason or ray.state.value} · {alloc}"
            )
        # The allocation has ended.
        if ray.state.is_terminal:
            return dataclasses.replace(
                ray,
                source=source,
                reason=f"{ray.reason or ray.state.value} · {alloc}",
                ended_at=ray.ended_at or slurm.ended_at,
            )
        return dataclasses.replace(
            slurm,
            source=source,
            reason=f"{alloc} while the Ray job was {ray.state.value}"
            + (f" ({slurm.reason})" if slurm.reason else ""),
        )

    # ------------------------------------------------------------------ logs
    def _log_path(self, job_dir: str, key: str, stream: LogStream) -> str:
        """The Ray job's stdout/stderr (not the cluster's bring-up, which is Slurm's log):
        :meth:`SlurmBackend.logs` tails these, resumable, until the allocation ends."""
        return ray_log_file(job_dir, stream)
