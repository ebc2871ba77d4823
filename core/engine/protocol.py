"""The async executor protocol every backend implements, and the records it exchanges.

The protocol is deliberately small (submitit-sized): a backend turns a :class:`JobSpec`
into a :class:`Handle`, reports states for *many* handles in one call, cancels, and streams
log bytes from an offset. Everything else (recording, retries, the UI) lives in the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, runtime_checkable

from core.engine.states import StatusReport

if TYPE_CHECKING:
    from core.engine.executors import ExecutorProfile

LogStream = Literal["stdout", "stderr"]


class BackendError(Exception):
    """A backend could not do what was asked; the message is shown to the user as is."""


@dataclass(frozen=True, order=True)
class Handle:
    """Where a submitted job lives: backend name, target (cluster/host) and its job id.

    ``target`` groups handles that one batched poll can answer (e.g. one Slurm cluster).
    """

    backend: str
    target: str
    job_id: str

    def __str__(self) -> str:
        return f"{self.backend}://{self.target}/{self.job_id}"

    def to_dict(self) -> dict[str, str]:
        return {"backend": self.backend, "target": self.target, "job_id": self.job_id}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Handle:
        return cls(backend=data["backend"], target=data["target"], job_id=data["job_id"])


@dataclass
class JobSpec:
    """Everything a backend needs to submit one job; built by the engine, never by a backend.

    ``argv`` is the final command as a list (never a shell string); backends that must
    produce a script quote every element with :func:`shlex.quote`. ``secret_env`` values are
    handed to the job but never written to the store or to a rendered script on disk.
    """

    experiment_id: str
    job_name: str
    run_tag: str
    argv: list[str]
    executor: ExecutorProfile
    job_dir: str
    workdir: str
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    dependencies: list[Handle] = field(default_factory=list)
    task_file: str | None = None
    #: The packaged code (``<sha256>.tar.gz`` on this machine) the job must run in, if any.
    #: Backends make it available (extract locally, or upload content-addressed and extract
    #: remotely, verifying the hash) and run the job from the extracted directory.
    archive: str | None = None
    archive_sha256: str | None = None
    #: Called with (bytes_done, bytes_total) while the archive is uploaded.
    progress: Callable[[int, int], None] | None = None
    #: Do not start the job until ``release(handle)`` (an optional backend method) is called.
    #: The engine holds every job and releases it only once its handle is recorded, so a
    #: launcher killed in between leaves no job running that the store does not know.
    held: bool = False


@dataclass
class DryRun:
    """What a submission would do, with no side effects: named artifacts (script, spec)."""

    backend: str
    summary: str
    artifacts: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """One executor backend. Instances are shared per (backend, target) within a process."""

    name: ClassVar[str]
    #: The data-only profile type of this backend (config.toml tables and stored
    #: ``executor.json`` files of its jobs are rebuilt as this type).
    profile_class: ClassVar[type[ExecutorProfile]]

    async def dryrun(self, job: JobSpec) -> DryRun:
        """Render what would be submitted, without side effects."""
        ...

    async def submit(self, job: JobSpec) -> Handle:
        """Submit once; idempotent where the scheduler allows (look up ``run_tag`` first)."""
        ...

    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        """Report every handle in as few scheduler calls as possible (one batch)."""
        ...

    async def cancel(self, handle: Handle) -> None:
        """Ask the scheduler to stop the job; the state change shows up in later polls."""
        ...

    def logs(
        self,
        handle: Handle,
        *,
        offset: int = 0,
        follow: bool = False,
        stream: LogStream = "stdout",
    ) -> AsyncIterator[bytes]:
        """Yield log bytes from ``offset``; with ``follow``, until the job has ended."""
        ...

    async def close(self) -> None:
        """Release connections; safe to call twice."""
        ...

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> Backend:
        """The backend instance for a profile (shared per (backend, target) by the registry)."""
        ...


#: Optional capabilities a backend may add; the engine falls back when they are missing.
#:
#: ``local_log_path(handle, stream) -> str | None``: a file on this machine that the job
#: writes ``stream`` to as it runs, so a viewer reads it in place instead of copying it.
#: ``release(handle)``: start a job that was submitted with ``JobSpec.held`` (the engine
#: releases it once its handle is recorded, so no job runs that the store does not know).
#: ``find(run_tag, job_dir) -> Handle | None``: a submitted job by its run tag (a launcher
#: that died before recording the handle).
#: ``async wait_changed(handles, timeout: float) -> None``: return soon after any of these
#: (live) jobs may have changed state, at once if one has already ended, else after
#: ``timeout`` seconds. It reports nothing (the caller polls next) and may return early
#: for no reason. ``Engine.wait`` uses it between polls instead of sleeping, so a job's end
#: is seen when it happens (the local backend watches its job dirs for file events).
#: ``retries_natively: ClassVar[bool]``: the scheduler re-runs a failed job itself (the
#: profile's ``retries`` maps onto it, e.g. Kubernetes' ``backoffLimit``); the engine then
#: never re-submits, and the re-runs are reported as ``restarts``.
#: ``node_of_rank(handle, rank: int) -> int | None``: for a backend whose ``logs`` take
#: ``rank=<node>`` (one log per node, e.g. a Kubernetes pod), the node that runs a
#: launcher's global ``rank``; ``Engine.logs(rank=)`` reads that node's log.
#: ``async submit_array(specs, throttle) -> (Handle, [Handle, ...])`` and ``async
#: dryrun_array(specs, throttle) -> DryRun``: a sweep's points in one submission, at most
#: ``throttle`` running at once (core.engine.sweep_submit; Slurm: one array job, local: one
#: pool process). ``async cancel_many(handles)``: many jobs in one call (one scancel).
#: ``async job_outputs(handle) -> core.results.locate.JobOutputs``: where the job's
#: ``NEMORUN_JOB_DIR`` and logs are and the transport that reaches them (metrics, artifacts).
OPTIONAL_CAPABILITIES = (
    "local_log_path",
    "release",
    "find",
    "wait_changed",
    "job_outputs",
    "retries_natively",
    "node_of_rank",
    "submit_array",
    "dryrun_array",
    "cancel_many",
)
