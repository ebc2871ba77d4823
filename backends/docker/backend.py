"""The Docker backend: one container per job on a Docker-API engine (Docker, podman's service).

What it guarantees, and how:

* **Clear errors before anything exists.** The create request is built and validated first
  (:mod:`backends.docker.request`), then the engine is asked whether it answers, whether the
  image is there (pulled when ``pull="missing"``), and whether it has a GPU runtime when GPUs
  are requested. Only then is a container created.
* **Never two containers for one job.** The container's name is derived from the run tag
  (and the job dir), so the engine itself refuses a second create; a retried submit (or a
  fresh process after a crash) finds the existing container by that name and returns it.
* **Found again after a restart.** The handle's job id is the store's job dir (as for the
  local backend); containers carry labels (experiment id, job name, run tag, job dir), and a
  small intent file in the job dir names the container, so a fresh backend instance needs
  nothing from memory.
* **Real outcomes.** Exit codes come from the engine's inspect of the ended container (once
  per job); a non-zero exit is FAILED with its code, OOM kills and missing commands have
  reasons a user can read. The outcome is written to the job dir, so it survives removal.
* **One list call per refresh.** A poll lists this project's containers on the engine once
  (by label), whatever the number of jobs; only a container seen ended for the first time
  costs one inspect (plus copying its logs), ever.
* **Logs kept.** When a container ends (or is cancelled) its stdout and stderr are copied into
  the store's job dir (``logs/stdout.log``, ``logs/stderr.log``) before the cleanup policy may
  remove it; logs of a removed container are read from that copy.
* **Dependencies.** A job that waits for others is created but not started; each poll checks
  its dependencies (local jobs, or docker jobs of the same engine) and starts it once all
  succeeded, or ends it CANCELLED, with the reason, when one did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import stat
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from backends.docker import request as rq
from backends.docker.client import ConflictError, EngineClient
from core.engine.executors import ExecutorProfile
from core.engine.executors_docker import DockerExecutor
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport
from core.fsutil import atomic_write

INTENT_FILE = "container.json"
RELEASED_FILE = "released"
#: Claimed (created exclusively) by the one poller, in any process, that starts the container.
STARTING_FILE = "starting"
#: A claim this old on a container that is still "created" was left by a crash: retake it.
STALE_START_SECONDS = 60.0
CANCEL_FILE = "cancel.json"
RESULT_FILE = "result.json"
LOG_CHUNK = 64 * 1024
#: How often a follower re-checks a container that has not started yet.
FOLLOW_WAIT_SECONDS = 0.3
_RUNNING = {"running", "paused", "restarting"}
_ENDED = {"exited", "dead", "stopped"}
_SIGNALS = {
    1: "SIGHUP", 2: "SIGINT", 6: "SIGABRT", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM",
}  # fmt: skip
#: Engine events after which a poll has news (a dependency gate may also open on ``start``).
_CHANGES = frozenset({"start", "die", "oom", "destroy", "remove", "kill", "stop"})
#: Backends a docker job may wait for (their jobs can be polled from here).
DEPENDABLE = ("local", "docker")


class DamagedJobFileError(BackendError):
    """A state file of one job (in its job dir) cannot be read: that job is UNKNOWN, with
    this message, and the others of the same poll are still answered."""


@dataclass
class _Pass:
    """One poll: the engine's list, and the reports computed from it (so dependencies that
    are in the same engine cost no extra call)."""

    by_dir: dict[str, dict[str, Any]]
    reports: dict[str, StatusReport] = field(default_factory=dict)


class DockerBackend:
    """One engine (one target), shared by every profile that names it."""

    name: ClassVar[str] = "docker"
    profile_class: ClassVar[type[ExecutorProfile]] = DockerExecutor

    def __init__(self, executor: DockerExecutor, *, timeout: float = 60.0) -> None:
        self.executor = executor
        self.target = executor.target()
        self.client = EngineClient(self.target, timeout=timeout)
        self._final: dict[str, StatusReport] = {}
        #: Images (with their mounts and env) whose python was seen to import the launcher's
        #: package: a sweep of 100 launcher jobs checks once.
        self._packages_ok: set[str] = set()
        #: When the last list call started (``wait_changed`` asks for events since then).
        self._last_list = 0.0

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> DockerBackend:
        if not isinstance(profile, DockerExecutor):
            raise BackendError(
                f"docker backend needs a DockerExecutor, got {type(profile).__name__}"
            )
        return cls(profile)

    # ------------------------------------------------------------------ files
    def _handle(self, job_dir: str) -> Handle:
        return Handle(self.name, self.target, job_dir)

    @staticmethod
    def _job_dir(handle: Handle) -> str:
        if handle.backend != DockerBackend.name:
            raise BackendError(f"not a docker job: {handle}")
        if not os.path.isabs(handle.job_id):
            raise BackendError(f"no such docker job {handle}")
        return handle.job_id

    @staticmethod
    def _state_file(job_dir: str, name: str) -> Path:
        return Path(rq.state_dir(job_dir)) / name

    def _read_json(self, job_dir: str, name: str) -> dict[str, Any] | None:
        path = self._state_file(job_dir, name)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            raise DamagedJobFileError(f"damaged docker job file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise DamagedJobFileError(f"damaged docker job file {path}: not a JSON object")
        return data

    def _write_json(self, job_dir: str, name: str, data: dict[str, Any]) -> None:
        atomic_write(self._state_file(job_dir, name), json.dumps(data, indent=1) + "\n")

    def _intent(self, job_dir: str) -> dict[str, Any] | None:
        return self._read_json(job_dir, INTENT_FILE)

    def _container_of(self, job_dir: str) -> str | None:
        intent = self._intent(job_dir)
        name = intent.get("name") if intent else None
        return str(name) if name else None

    def _setting(self, job_dir: str, key: str, default: Any) -> Any:
        """A per-job setting recorded at submit (``cleanup``, ``stop_grace_seconds``)."""
        try:
            intent = self._intent(job_dir) or {}
        except BackendError:
            intent = {}
        return intent.get(key, default)

    def _stored_result(self, job_dir: str) -> StatusReport | None:
        if job_dir in self._final:
            return self._final[job_dir]
        data = self._read_json(job_dir, RESULT_FILE)
        if data is None:
            return None
        try:
            report = StatusReport.from_dict(data)
        except (KeyError, ValueError, TypeError) as exc:
            raise DamagedJobFileError(f"damaged docker result in {job_dir}: {exc}") from None
        self._final[job_dir] = report
        return report

    # ------------------------------------------------------------------ dry run / checks
    def _executor_of(self, job: JobSpec) -> DockerExecutor:
        if not isinstance(job.executor, DockerExecutor):
            raise BackendError(f"docker backend got a {type(job.executor).__name__} profile")
        if job.executor.target() != self.target:
            raise BackendError(
                f"job {job.job_name!r} names the engine {job.executor.target()}, "
                f"this backend talks to {self.target}"
            )
        return job.executor

    def _check_dependencies(self, job: JobSpec) -> None:
        for dep in job.dependencies:
            if dep.backend not in DEPENDABLE or (
                dep.backend == self.name and dep.target != self.target
            ):
                raise BackendError(
                    f"docker job {job.job_name!r} cannot wait for {dep}: it can wait for local "
                    f"jobs and docker jobs on the same engine ({self.target})"
                )

    async def dryrun(self, job: JobSpec) -> DryRun:
        """The exact create request (secrets shown as ``***``); nothing is sent."""
        executor = self._executor_of(job)
        req = rq.build(executor, job)
        self._check_dependencies(job)
        shown = req.shown()
        summary = (
            f"create container {req.name} from {executor.container_image} on {self.target}"
            + (", then start it" if not job.dependencies else "")
            + (
                "; starts after " + ", ".join(str(h) for h in job.dependencies) + " succeeded"
                if job.dependencies
                else ""
            )
            + (
                f"; {executor.launcher.kind} starts the ranks (the launch line: command)"
                if executor.launcher is not None
                else ""
            )
            + f"; job dir {req.out_dir} mounted at {rq.CONTAINER_JOB_DIR}"
            + (f"; code at {rq.CONTAINER_CODE_DIR}" if req.code_dir else "")
            + (
                f"; secrets passed in the container env: {', '.join(req.secret_names)}"
                if req.secret_names
                else ""
            )
        )
        return DryRun(
            backend=self.name,
            summary=summary,
            artifacts={
                "command": shlex.join(str(word) for word in req.body.get("Cmd") or []),
                "request": f"POST {req.path}",
                "create.json": json.dumps(shown, indent=2, sort_keys=True) + "\n",
            },
        )

    async def _check_engine(self, executor: DockerExecutor) -> None:
        """Reachable, image present (pulled if allowed), GPU runtime when GPUs are asked."""
        await self.client.ping()
        image = executor.container_image
        if await self.client.inspect_image(image) is None:
            if executor.pull == "never":
                raise BackendError(
                    f"image {image!r} is not on the engine at {self.target} (pull='never')"
                )
            status = await self.client.pull(image)
            if await self.client.inspect_image(image) is None:
                raise BackendError(
                    f"image {image!r} is not on the engine at {self.target} and could not be "
                    f"pulled: {status or 'no answer from the registry'}"
                )
        if executor.num_gpus:
            info = await self.client.info()
            runtimes = info.get("Runtimes") or {}
            names = sorted(runtimes)
            # The NVIDIA Container Toolkit registers an "nvidia" runtime (nvidia-ctk runtime
            # configure); Docker >= 25 may use CDI specs instead. A runtime named in the
            # profile must exist either way.
            gpu = any("nvidia" in n for n in names) or bool(info.get("CDISpecDirs"))
            if executor.runtime and executor.runtime not in runtimes:
                gpu = False
            if not gpu:
                raise BackendError(
                    f"num_gpus={executor.num_gpus} but the engine at {self.target} has no GPU "
                    f"runtime (runtimes: {', '.join(names) or 'none'}); install the NVIDIA "
                    "Container Toolkit there, or set num_gpus=0"
                )

    async def _check_launcher(self, executor: DockerExecutor, req: rq.CreateRequest) -> None:
        """A launcher whose package the image's python cannot import is refused before the
        job's container exists, by running that import check in the same image, mounts and
        env (a short-lived container, removed at once)."""
        launcher = executor.launcher
        if launcher is None:
            return
        from core.launchers import missing_package_error, package_importable

        command, module = package_importable(launcher, executor.python)
        check = rq.package_check(req.body, command)
        key = json.dumps(check, sort_keys=True, default=str)
        if key in self._packages_ok:
            return
        code, output = await self.client.run_once(check, timeout=self.client.timeout)
        if code == 0:
            self._packages_ok.add(key)
            return
        if code == 1:
            where = f"in image {executor.container_image!r} ({executor.python})"
            raise BackendError(str(missing_package_error(launcher, module, where)))
        raise BackendError(
            f"cannot check the launcher's package in image {executor.container_image!r} "
            f"with {executor.python!r} (exit {code}): {_last_line(output) or 'no output'}"
        )

    # ------------------------------------------------------------------ submit
    async def submit(self, job: JobSpec) -> Handle:
        """Validate, check the engine, create the container once; start it unless held."""
        executor = self._executor_of(job)
        req = rq.build(executor, job)  # invalid options fail here, before any call
        self._check_dependencies(job)
        job_dir = os.path.abspath(job.job_dir)
        handle = self._handle(job_dir)
        existing = await self.client.inspect(req.name)
        if existing is not None:
            return await self._adopt(handle, existing, job)
        await self._check_engine(executor)
        self._prepare_dirs(job, req)
        await self._check_launcher(executor, req)
        self._write_json(
            job_dir,
            INTENT_FILE,
            {
                "name": req.name,
                "target": self.target,
                "run_tag": job.run_tag,
                "image": executor.container_image,
                "requested_at": time.time(),
                # The job's own policy (the backend instance is shared by profiles).
                "cleanup": executor.cleanup,
                "stop_grace_seconds": executor.stop_grace_seconds,
            },
        )
        try:
            await self.client.create(req.name, req.body)
        except ConflictError:
            # Created meanwhile (a concurrent retry): that container is this job.
            existing = await self.client.inspect(req.name)
            if existing is None:
                raise
            return await self._adopt(handle, existing, job)
        if not job.held:
            await self.release(handle)
        return handle

    async def _adopt(self, handle: Handle, container: dict[str, Any], job: JobSpec) -> Handle:
        """The container an earlier attempt created is this job's: return it, and start it
        if that attempt died between create and start (and this one is not held)."""
        labels = (container.get("Config") or {}).get("Labels") or {}
        if labels.get("nemorun.job_dir") not in (None, handle.job_id):
            raise BackendError(
                f"container {container.get('Name')} belongs to another job dir "
                f"({labels.get('nemorun.job_dir')})"
            )
        if self._intent(handle.job_id) is None:
            self._write_json(
                handle.job_id,
                INTENT_FILE,
                {
                    "name": str(container.get("Name") or "").lstrip("/"),
                    "target": self.target,
                    "run_tag": job.run_tag,
                    "requested_at": time.time(),
                },
            )
        state = str((container.get("State") or {}).get("Status") or "").lower()
        if state == "created" and not job.held and self._stored_result(handle.job_id) is None:
            await self.release(handle)
        return handle

    def _prepare_dirs(self, job: JobSpec, req: rq.CreateRequest) -> None:
        base = Path(rq.state_dir(job.job_dir))
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        if base.is_symlink() or not base.is_dir():
            raise BackendError(f"{base} is not a directory")
        Path(req.out_dir).mkdir(exist_ok=True, mode=0o755)
        if job.task_file and not os.path.isfile(job.task_file):
            raise BackendError(f"task file {job.task_file} does not exist")
        if req.code_dir:
            from core.packaging.extract import ArchiveHashError, UnsafeArchiveError, extract_local

            if not job.archive_sha256:
                raise BackendError("packaged code comes without its sha256; refusing to run it")
            try:
                extract_local(Path(str(job.archive)), Path(req.code_dir), job.archive_sha256)
            except UnsafeArchiveError as exc:
                raise BackendError(f"refusing to extract packaged code: {exc}") from None
            except (ArchiveHashError, OSError) as exc:
                raise BackendError(f"cannot extract packaged code: {exc}") from None

    async def release(self, handle: Handle) -> None:
        """Let a created container start: at once, or once its dependencies succeeded."""
        job_dir = self._job_dir(handle)
        name = self._container_of(job_dir)
        if name is None:
            raise BackendError(f"no such docker job {handle}")
        self._write_json(job_dir, RELEASED_FILE, {"released_at": time.time()})
        container = await self.client.inspect(name)
        labels = ((container or {}).get("Config") or {}).get("Labels") or {}
        if labels.get("nemorun.after"):
            await self.poll([handle])  # starts it if its dependencies are already done
        else:
            await self._start(job_dir, name)

    def _claim_start(self, job_dir: str) -> bool:
        """Whether this caller is the one to start the container. Several pollers (the app,
        a waiting CLI, a log follower) can see it "created" in one moment; starting an
        exited container runs it again, so exactly one of them may call start."""
        path = self._state_file(job_dir, STARTING_FILE)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                return False
            if age < STALE_START_SECONDS:
                return False
            path.touch()  # a starter that crashed before starting it: take over
            return True
        os.close(fd)
        return True

    async def _start(self, job_dir: str, name: str) -> None:
        if not self._claim_start(job_dir):
            return
        info = await self.client.inspect(name)
        if info is not None and str((info.get("State") or {}).get("Status")).lower() != "created":
            return  # started meanwhile (a retaken claim): never run it twice
        try:
            await self.client.start(name)
        except BackendError as exc:
            # E.g. the command is not in the image: the container exists but never ran.
            await self._finish(
                job_dir,
                name,
                StatusReport(
                    JobState.FAILED,
                    source="docker start",
                    reason=f"the container could not start: {exc}",
                ),
            )

    async def find(self, run_tag: str, job_dir: str) -> Handle | None:
        """The job submitted under ``run_tag`` (a launcher that died before recording it)."""
        name = rq.container_name(run_tag, job_dir)
        if await self.client.inspect(name) is None:
            return None
        handle = self._handle(os.path.abspath(job_dir))
        if self._intent(handle.job_id) is None:
            self._write_json(handle.job_id, INTENT_FILE, {"name": name, "target": self.target})
        return handle

    # ------------------------------------------------------------------ poll
    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        """A report for every handle: ended jobs from the job dir, the rest from one list."""
        out: dict[Handle, StatusReport] = {}
        need: list[Handle] = []
        for h in handles:
            if h.backend != self.name or not os.path.isabs(h.job_id):
                out[h] = StatusReport(JobState.UNKNOWN, "docker", reason=f"no such job {h}")
                continue
            try:
                done = self._stored_result(h.job_id)
            except DamagedJobFileError as exc:
                out[h] = StatusReport(JobState.UNKNOWN, "docker", reason=str(exc))
                continue
            if done is not None:
                out[h] = done
            else:
                need.append(h)
        if need:
            started = time.time()
            rows = await self.client.list_managed()
            self._last_list = started
            by_dir = {}
            for row in rows:
                labels = row.get("Labels") or {}
                if labels.get("nemorun.job_dir"):
                    by_dir[str(labels["nemorun.job_dir"])] = row
            ctx = _Pass(by_dir)
            for h in need:
                try:
                    out[h] = await self._report(h.job_id, ctx)
                except DamagedJobFileError as exc:  # this job only; engine errors fail the poll
                    out[h] = StatusReport(JobState.UNKNOWN, "docker", reason=str(exc))
        return out

    async def _report(self, job_dir: str, ctx: _Pass) -> StatusReport:
        if job_dir in ctx.reports:
            return ctx.reports[job_dir]
        report = await self._compute(job_dir, ctx)
        ctx.reports[job_dir] = report
        return report

    async def _compute(self, job_dir: str, ctx: _Pass) -> StatusReport:
        done = self._stored_result(job_dir)
        if done is not None:
            return done
        row = ctx.by_dir.get(job_dir)
        name = self._container_of(job_dir)
        if row is None:
            if name is None:
                return StatusReport(
                    JobState.UNKNOWN, "docker list", reason=f"no docker job in {job_dir}"
                )
            return StatusReport(
                JobState.UNKNOWN,
                "docker list",
                reason=f"container {name} is not on the engine at {self.target} "
                "(removed outside nemorun-tui?) and no outcome was recorded",
            )
        cname = name or str(row.get("Id"))
        state = str(row.get("State") or "").lower()
        if state in _RUNNING:
            return StatusReport(
                JobState.RUNNING,
                "docker list",
                reason="paused" if state == "paused" else None,
            )
        if state in _ENDED:
            return await self._finalize(job_dir, cname)
        if state == "created":
            return await self._created(job_dir, cname, row, ctx)
        return StatusReport(JobState.PENDING, "docker list", reason=f"container is {state}")

    async def _created(
        self, job_dir: str, name: str, row: dict[str, Any], ctx: _Pass
    ) -> StatusReport:
        if self._read_json(job_dir, CANCEL_FILE) is not None:
            return await self._finish(
                job_dir,
                name,
                StatusReport(JobState.CANCELLED, "docker", reason="cancelled before it started"),
            )
        if self._read_json(job_dir, RELEASED_FILE) is None:
            return StatusReport(
                JobState.SUBMITTED,
                "docker list",
                reason="created; starts once the launch has recorded it",
            )
        after = (row.get("Labels") or {}).get("nemorun.after")
        if not after:
            await self._start(job_dir, name)  # released but not started (e.g. a crash)
            return self._stored_result(job_dir) or StatusReport(
                JobState.PENDING, "docker list", reason="starting"
            )
        try:
            deps = [Handle.from_dict(d) for d in json.loads(after)]
        except (ValueError, KeyError, TypeError):
            return StatusReport(JobState.UNKNOWN, "docker", reason="damaged nemorun.after label")
        waiting = []
        for dep in deps:
            report = await self._dependency_report(dep, ctx)
            if report.state is JobState.SUCCEEDED:
                continue
            if report.state.is_terminal or report.state is JobState.UNKNOWN:
                why = report.reason or report.state.value
                return await self._finish(
                    job_dir,
                    name,
                    StatusReport(
                        JobState.CANCELLED,
                        "docker",
                        reason=f"not run: dependency {dep.job_id} ended {report.state.value} "
                        f"({why})",
                    ),
                )
            waiting.append(f"{dep.job_id} ({report.state.value})")
        if waiting:
            return StatusReport(
                JobState.PENDING, "docker list", reason="waiting for " + ", ".join(waiting)
            )
        await self._start(job_dir, name)
        return self._stored_result(job_dir) or StatusReport(
            JobState.PENDING, "docker list", reason="dependencies succeeded; starting"
        )

    async def _dependency_report(self, dep: Handle, ctx: _Pass) -> StatusReport:
        if dep.backend == self.name and dep.target == self.target:
            return await self._report(dep.job_id, ctx)
        from core.engine import registry
        from core.engine.executors import LocalExecutor

        if dep.backend == "local":
            backend = registry.get_backend(LocalExecutor())
            return (await backend.poll([dep]))[dep]
        return StatusReport(JobState.UNKNOWN, "docker", reason=f"cannot watch {dep}")

    async def wait_changed(self, handles: Sequence[Handle], timeout: float) -> None:
        """Return when a container of these jobs may have started or ended (the engine's
        events since the last poll), at once if one has already ended, else after
        ``timeout``. Lets ``Engine.wait`` see a job's end when it happens."""
        live = []
        for h in handles:
            try:
                if self._stored_result(self._job_dir(h)) is None:
                    live.append(h)
            except BackendError:
                return  # the caller's poll reports it
        if not live:
            return
        since = self._last_list or time.time()
        await self.client.wait_event(since, timeout, _CHANGES)

    # ------------------------------------------------------------------ ending
    async def _finalize(self, job_dir: str, name: str) -> StatusReport:
        """An ended container: its outcome (one inspect), logs copied, cleanup applied."""
        done = self._stored_result(job_dir)
        if done is not None:
            return done
        info = await self.client.inspect(name)
        if info is None:
            return self._stored_result(job_dir) or StatusReport(
                JobState.UNKNOWN, "docker inspect", reason=f"container {name} vanished"
            )
        stderr = await self._keep_logs(job_dir, name)
        report = self._outcome(job_dir, info, _last_line(stderr))
        return await self._finish(job_dir, name, report, logs_kept=True)

    def _outcome(self, job_dir: str, info: dict[str, Any], last_err: str) -> StatusReport:
        st = info.get("State") or {}
        code = st.get("ExitCode")
        code = int(code) if isinstance(code, int) else None
        started, ended = _parse_time(st.get("StartedAt")), _parse_time(st.get("FinishedAt"))
        if started is not None and ended is not None and started > ended:
            started = ended  # the engine stamps a start after a sub-millisecond job's end
        cancel = self._read_json(job_dir, CANCEL_FILE)
        source = "docker inspect"
        if cancel is not None and not (
            code == 0 and ended is not None and ended < float(cancel.get("requested_at") or 0)
        ):
            return StatusReport(
                JobState.CANCELLED,
                source,
                exit_code=code,
                reason="cancelled",
                started_at=started,
                ended_at=ended,
            )
        if code == 0 and not st.get("OOMKilled"):
            return StatusReport(
                JobState.SUCCEEDED, source, exit_code=0, started_at=started, ended_at=ended
            )
        return StatusReport(
            JobState.FAILED,
            source,
            exit_code=code,
            reason=_failure_reason(info, code, last_err),
            started_at=started,
            ended_at=ended,
        )

    async def _finish(
        self, job_dir: str, name: str, report: StatusReport, *, logs_kept: bool = False
    ) -> StatusReport:
        """Keep the logs, record the outcome, then apply the cleanup policy."""
        if not logs_kept:
            await self._keep_logs(job_dir, name)
        earlier = self._stored_result(job_dir)
        if earlier is not None:
            return earlier  # a concurrent poll or cancel recorded it first: one outcome
        self._write_json(job_dir, RESULT_FILE, report.to_dict())
        self._final[job_dir] = report
        policy = self._setting(job_dir, "cleanup", self.executor.cleanup)
        if policy == "remove" or (policy == "keep-failed" and report.state is JobState.SUCCEEDED):
            await self.client.remove(name)
        return report

    async def _keep_logs(self, job_dir: str, name: str) -> bytes:
        """Copy both streams into the store's job dir; returns stderr."""
        logs = Path(job_dir) / "logs"
        with contextlib.suppress(FileExistsError):
            logs.mkdir(mode=0o700)
        if not stat.S_ISDIR(os.lstat(logs).st_mode):  # never write through a symlink
            raise BackendError(f"{logs} is not a directory")
        data = b""
        for stream in ("stdout", "stderr"):
            path = logs / f"{stream}.log"
            try:
                data = await self.client.logs(name, stream)
            except BackendError:
                if path.exists():  # removed by a concurrent finish, which copied it first
                    data = path.read_bytes()
                    continue
                data = b""  # never started: no logs (an empty copy, so readers stop here)
            atomic_write(path, data)
        return data

    # ------------------------------------------------------------------ cancel
    async def cancel(self, handle: Handle) -> None:
        """Stop the container (SIGTERM, SIGKILL after the grace), keep its logs, clean up."""
        job_dir = self._job_dir(handle)
        if self._stored_result(job_dir) is not None:
            return  # ended: nothing to do, the outcome stays
        name = self._container_of(job_dir)
        if name is None:
            raise BackendError(f"no such docker job {handle}")
        info = await self.client.inspect(name)
        if info is None:
            if self._stored_result(job_dir) is None:
                raise BackendError(f"container {name} of {handle} is not on the engine")
            return
        state = str((info.get("State") or {}).get("Status") or "").lower()
        if state in _ENDED:
            await self._finalize(job_dir, name)
            return
        self._write_json(job_dir, CANCEL_FILE, {"requested_at": time.time()})
        if state == "created":
            await self._finish(
                job_dir,
                name,
                StatusReport(JobState.CANCELLED, "docker", reason="cancelled before it started"),
            )
            return
        grace = self._setting(job_dir, "stop_grace_seconds", self.executor.stop_grace_seconds)
        await self.client.stop(name, float(grace))
        await self._finalize(job_dir, name)

    # ------------------------------------------------------------------ logs
    def logs(
        self,
        handle: Handle,
        *,
        offset: int = 0,
        follow: bool = False,
        stream: LogStream = "stdout",
    ) -> AsyncIterator[bytes]:
        """Bytes of one stream from ``offset``: from the engine while the container exists,
        from the store's copy once it has ended (and maybe been removed)."""
        return self._logs(handle, offset, follow, stream)

    async def _logs(
        self, handle: Handle, offset: int, follow: bool, stream: LogStream
    ) -> AsyncIterator[bytes]:
        job_dir = self._job_dir(handle)
        if stream not in ("stdout", "stderr"):
            raise BackendError(f"unknown log stream {stream!r} (stdout or stderr)")
        if offset < 0:
            raise BackendError(f"log offset must be >= 0, got {offset}")
        name = self._container_of(job_dir)
        if name is None and self._stored_result(job_dir) is None:
            raise BackendError(f"no such docker job {handle}")
        pos = offset
        last_poll = 0.0
        while True:
            if self._stored_result(job_dir) is not None:
                async for chunk in _read_file(Path(job_dir) / "logs" / f"{stream}.log", pos):
                    yield chunk
                return
            assert name is not None
            info = await self.client.inspect(name)
            if info is None:
                if self._stored_result(job_dir) is not None:
                    continue  # ended and removed meanwhile: the copy has it all
                report = (await self.poll([handle]))[handle]
                if report.state.is_terminal:
                    continue
                return  # gone without an outcome: nothing more to read
            state = str((info.get("State") or {}).get("Status") or "").lower()
            if state == "created":
                if not follow:
                    return
                if time.monotonic() - last_poll > 1.0:  # a waiting job starts on a poll
                    last_poll = time.monotonic()
                    await self.poll([handle])
                await asyncio.sleep(FOLLOW_WAIT_SECONDS)
                continue
            if not follow or state in _ENDED:
                data = await self.client.logs(name, stream)
                for i in range(pos, len(data), LOG_CHUNK):
                    yield data[i : i + LOG_CHUNK]
                if not follow:
                    return
                pos = max(pos, len(data))
                await self.poll([handle])  # records the outcome and the store's copy
                if self._stored_result(job_dir) is None:
                    return
                continue
            seen = 0
            got = False
            async for chunk in self.client.follow(name, stream):
                end = seen + len(chunk)
                if end > pos:
                    yield chunk[max(0, pos - seen) :]
                    pos = end
                    got = True
                seen = end
            if not got:  # the stream ended with nothing new: re-attach, but not in a spin
                await asyncio.sleep(FOLLOW_WAIT_SECONDS)

    async def close(self) -> None:
        """Close the engine connection (it reopens on next use)."""
        self.client.close()


async def _read_file(path: Path, offset: int) -> AsyncIterator[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for i in range(offset, len(data), LOG_CHUNK):
        yield data[i : i + LOG_CHUNK]


def _parse_time(value: Any) -> float | None:
    """The engine's RFC 3339 time (nanoseconds, ``Z``) as a Unix time; None for zero/absent."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _last_line(data: bytes) -> str:
    """The job's last stderr line, as safe one-line text (it ends up in a reason)."""
    from core.textsafe import sanitize_terminal

    lines = [ln for ln in data[-4096:].decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    text = sanitize_terminal(lines[-1], keep_sgr=False).strip()
    return text if len(text) <= 200 else text[:200] + "…"


def _failure_reason(info: dict[str, Any], code: int | None, last_err: str = "") -> str:
    """Words for why a container failed: OOM, a missing command, a signal, or its code
    (with the job's last stderr line)."""
    st = info.get("State") or {}
    host = info.get("HostConfig") or {}
    config = info.get("Config") or {}
    limit = host.get("Memory") or 0
    if st.get("OOMKilled"):
        return f"out of memory: killed at the container's memory limit ({_bytes(limit)}, OOMKilled)"
    if st.get("Error"):
        return f"exit code {code}: {st['Error']}"
    if code == 137 and limit:
        return (
            f"killed by SIGKILL (exit 137) with a memory limit of {_bytes(limit)}: most likely "
            "out of memory (the engine did not say OOMKilled)"
        )
    if code in (126, 127) or "failed to exec" in last_err:
        cmd = str((config.get("Cmd") or ["?"])[0])
        hint = (
            "Partial/Config tasks need Python >= 3.11 in the image"
            if "python" in cmd
            else "a Script can name a shell the image has, e.g. entrypoint='sh'"
        )
        return (
            f"exit code {code}: command {cmd!r} not found or not executable in image "
            f"{config.get('Image')!r} ({hint})"
        )
    tail = f"; stderr: {last_err}" if last_err else ""
    if code is not None and code > 128 and code - 128 in _SIGNALS:
        return f"killed by {_SIGNALS[code - 128]} (exit code {code}){tail}"
    return f"exit code {code}{tail}"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.0f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return str(n)
