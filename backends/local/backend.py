"""``LocalBackend``: run jobs on this machine, detached, with their state kept in files.

Each job gets a small supervisor process (:mod:`backends.local.supervisor`) started in a new
session, so the job survives the launcher (TUI or CLI) exiting and its exit code is still
recorded. Everything the backend knows lives in the job directory and in /proc, so a fresh
process (a restarted TUI) reports exactly the same states: there is no in-memory registry.

The handle's ``job_id`` is the absolute job directory. Polling only reads files and /proc
(no subprocess per poll), so one batched poll of hundreds of jobs stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from backends.local import supervisor as sv
from backends.local.watch import DirWatch, WatchUnavailable
from backends.local.watch import names as watch_names
from core.engine import launch_guard
from core.engine.executors import ExecutorProfile, LocalExecutor
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport
from core.fsutil import file_lock, makedirs_exact
from core.transport.follow import follow_file

#: Path of the supervisor script; started by path with ``-I -S`` (see the supervisor's doc).
SUPERVISOR_SCRIPT = str(Path(sv.__file__).resolve())
#: Extra time the supervisor gets, after the grace period, to SIGKILL and record the result
#: itself before the backend kills it too (its own record is the better one).
SUPERVISOR_MARGIN_SECONDS = 2.0
#: How long a cancel waits for processes to vanish after SIGKILL.
KILL_WAIT_SECONDS = 2.0
#: Log reading: chunk size and how often a followed file is checked for growth.
LOG_CHUNK = 64 * 1024
FOLLOW_INTERVAL_SECONDS = 0.05
FOLLOW_IDLE_INTERVAL_SECONDS = 0.1
#: Without file events, how long :meth:`LocalBackend.wait_changed` waits at most.
WAIT_FALLBACK_SECONDS = 0.05
#: The run-directory files whose change may mean a new state.
_STATE_FILES = frozenset({sv.RESULT, sv.PIDS, sv.CANCEL})
#: Shown instead of a secret value anywhere the user or the store can see it.
REDACTED = "***"


def _touch_private(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))


def _check_env(env: dict[str, str], what: str) -> None:
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise BackendError(f"invalid {what} variable name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise BackendError(f"{what} variable {key} must be a string without NUL bytes")


class LocalBackend:
    """Runs jobs on this machine. One instance per process is shared by every local job."""

    name: ClassVar[str] = "local"
    profile_class: ClassVar[type[ExecutorProfile]] = LocalExecutor

    def __init__(self, profile: LocalExecutor | None = None) -> None:
        self.profile = profile if profile is not None else LocalExecutor()
        self._spawned: set[int] = set()  # supervisor pids we must reap (we are their parent)

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> LocalBackend:
        """The registry's constructor; any profile works, LocalExecutor fields are used."""
        if not isinstance(profile, LocalExecutor):
            raise BackendError(f"the local backend needs a LocalExecutor, got {type(profile)}")
        return cls(profile)

    # ------------------------------------------------------------------ helpers

    def _grace_for(self, job: JobSpec) -> float:
        grace = getattr(job.executor, "cancel_grace_seconds", None)
        return float(grace if grace is not None else self.profile.cancel_grace_seconds)

    @staticmethod
    def _run_dir(handle: Handle) -> str:
        """The job directory of a local handle; BackendError when there is no such job."""
        if handle.backend != LocalBackend.name:
            raise BackendError(f"not a local job: {handle}")
        path = handle.job_id
        if not os.path.isabs(path) or not os.path.isdir(path):
            raise BackendError(f"no such job {handle}")
        if not any(os.path.exists(os.path.join(path, f)) for f in (sv.PIDS, sv.RESULT, sv.POOLED)):
            raise BackendError(f"no such job {handle} (it was never started)")
        return path

    def _dependencies(
        self, job: JobSpec, *, own_dir: str, must_exist: bool = True
    ) -> list[dict[str, str]]:
        deps = []
        for dep in job.dependencies:
            if dep.backend != self.name:
                raise BackendError(
                    f"local job {job.job_name!r} cannot depend on {dep}: a local job can only "
                    f"wait for other local jobs (the {dep.backend} backend's jobs are not "
                    "visible to it)"
                )
            if not must_exist and not os.path.isabs(dep.job_id):
                # A dry run's placeholder for a job not submitted yet (e.g. "<prepare>").
                deps.append({"job_dir": dep.job_id, "name": dep.job_id})
                continue
            path = os.path.abspath(dep.job_id)
            if path == own_dir:
                raise BackendError(f"job {job.job_name!r} cannot depend on itself")
            if must_exist and not (
                os.path.exists(os.path.join(path, sv.PIDS))
                or os.path.exists(os.path.join(path, sv.RESULT))
            ):
                raise BackendError(f"dependency {dep} of {job.job_name!r}: no such job")
            try:
                dep_spec = sv.read_json(os.path.join(path, sv.SPEC)) or {}
            except (ValueError, OSError):
                dep_spec = {}
            deps.append({"job_dir": path, "name": str(dep_spec.get("job_name") or path)})
        return deps

    def _render_spec(self, job: JobSpec, *, own_dir: str, dry: bool = False) -> dict[str, Any]:
        """spec.json's content; also what dryrun shows. Secret values are never in it.

        A dry run does not insist that dependencies exist yet: an experiment is previewed
        before any of its jobs was submitted.
        """
        if not job.argv or not all(isinstance(a, str) for a in job.argv):
            raise BackendError(f"job {job.job_name!r}: argv must be a non-empty list of strings")
        nodes = getattr(job.executor, "nodes", 1)
        if nodes != 1:
            raise BackendError(
                f"job {job.job_name!r}: the local backend runs on one node, not {nodes}"
            )
        _check_env(job.env, "env")
        _check_env(job.secret_env, "secret env")
        argv, launch_env = _launch(job, own_dir, dry=dry)
        env = {**job.env, **launch_env}
        spec: dict[str, Any] = {
            "schema": sv.SCHEMA,
            "experiment_id": job.experiment_id,
            "job_name": job.job_name,
            "run_tag": job.run_tag,
            "argv": argv,
            "workdir": os.path.abspath(job.workdir),
            "env": {k: v for k, v in sorted(env.items()) if k not in job.secret_env},
            "secret_env": {k: REDACTED for k in sorted(job.secret_env)},
            "dependencies": self._dependencies(job, own_dir=own_dir, must_exist=not dry),
            "cancel_grace_seconds": self._grace_for(job),
            "task_file": job.task_file,
        }
        if job.held:
            # Start only after release() (see core.engine.launch_window), and never if this launcher
            # dies first. A dry run names no launcher (there is none yet).
            spec["hold"] = {
                "launcher": None if dry else sv.identity(os.getpid()),
                "boot_id": sv.boot_id(),
                "timeout_seconds": sv.HOLD_TIMEOUT_SECONDS,
            }
        return spec

    def _reap(self) -> None:
        """Collect exited supervisors we started, so they do not linger as zombies."""
        for pid in list(self._spawned):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._spawned.discard(pid)

    # ------------------------------------------------------------------ dryrun

    async def dryrun(self, job: JobSpec) -> DryRun:
        """The command line, cwd and environment names; reads dependencies, writes nothing."""
        own_dir = os.path.abspath(job.job_dir)
        spec = self._render_spec(job, own_dir=own_dir, dry=True)
        command = shlex.join(spec["argv"])
        env_names = ", ".join(spec["env"]) or "(none)"
        lines = [command, f"  cwd: {spec['workdir']}", f"  env: {env_names}"]
        if spec["secret_env"]:
            lines.append(
                "  secret env: " + ", ".join(f"{k}={REDACTED}" for k in spec["secret_env"])
            )
        for dep in spec["dependencies"]:
            lines.append(f"  after: {dep['name']} succeeds")
        return DryRun(
            backend=self.name,
            summary="\n".join(lines),
            artifacts={
                "command": command,
                "spec.json": json.dumps(spec, indent=1, sort_keys=True) + "\n",
            },
        )

    # ------------------------------------------------------------------ submit

    async def submit(self, job: JobSpec) -> Handle:
        """Start the job's supervisor and return at once (the job runs detached).

        Idempotent per job directory and ``run_tag``: a second submit of the same job (a
        retry after a crash, a second UI) returns the first handle instead of running twice.
        """
        return await asyncio.to_thread(self._submit, job)

    def _submit(self, job: JobSpec) -> Handle:
        self._reap()
        run_dir = os.path.abspath(job.job_dir)
        handle = Handle(self.name, "local", run_dir)
        if job.archive:
            job = dataclasses.replace(job, workdir=_extract_code(job, Path(run_dir) / "code"))
        spec = self._render_spec(job, own_dir=run_dir)
        if not os.path.isdir(spec["workdir"]):
            raise BackendError(f"workdir {spec['workdir']} does not exist")
        if not sys.executable:
            raise BackendError("cannot find the Python interpreter to start the supervisor")
        root = Path(run_dir)
        makedirs_exact(root)
        makedirs_exact(root / sv.LOGS)
        with file_lock(root / ".submit.lock"):
            if (root / sv.PIDS).exists() or (root / sv.RESULT).exists():
                try:
                    previous = sv.read_json(str(root / sv.SPEC)) or {}
                except ValueError:
                    previous = {}
                if previous.get("run_tag") == job.run_tag:
                    return handle
                raise BackendError(f"{run_dir} already holds another submitted job")
            sv.write_json(str(root / sv.SPEC), spec, durable=True)
            for stream in sv.STREAMS.values():
                _touch_private(root / sv.LOGS / stream)
            pid = self._spawn_supervisor(job, root)
            pids = sv.started_record(pid)
            # The supervisor may already have written a fuller pid.json: never overwrite it.
            sv.write_json(str(root / sv.PIDS), pids, durable=False, exclusive=True)
        return handle

    def _spawn_supervisor(self, job: JobSpec, root: Path) -> int:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # Python jobs stream their logs (a job may override)
        env.update(launch_guard.job_env())  # a JobSpec not built by the engine: still marked
        env.update(job.env)
        env.update(_launch_env(job))  # the rank prefix of launcher logs (core.launchers)
        env.update(job_vars(job, root))  # where the job writes its outputs (core.results)
        env.update(job.secret_env)  # only in memory and the process environment, never on disk
        log = str(root / sv.LOGS / sv.SUPERVISOR_LOG)
        try:
            pid = sv.spawn_detached(SUPERVISOR_SCRIPT, str(root), env, log)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot start the supervisor for {job.job_name!r}: {exc}") from exc
        self._spawned.add(pid)
        return pid

    # ------------------------------------------------------------------ sweeps

    async def submit_array(
        self, specs: list[JobSpec], throttle: int | None = None
    ) -> tuple[Handle, list[Handle]]:
        """A sweep's points, started by one pool at most ``throttle`` at a time (optional
        capability used by core.engine.sweep_submit; see backends.local.array_sweep)."""
        from backends.local.array_sweep import submit_array

        return await asyncio.to_thread(submit_array, self, specs, throttle)

    async def dryrun_array(self, specs: list[JobSpec], throttle: int | None = None) -> DryRun:
        from backends.local.array_sweep import dryrun_array

        return dryrun_array(self, specs, throttle)

    # ------------------------------------------------------------------ hold / find

    async def release(self, handle: Handle) -> None:
        """Let a held job start: its handle is recorded (see :mod:`core.engine.launch_window`)."""
        run_dir = self._run_dir(handle)
        await asyncio.to_thread(
            sv.write_json,
            os.path.join(run_dir, sv.RELEASED),
            {"released_at": time.time(), "by_pid": os.getpid()},
            durable=False,
            exclusive=True,
        )

    async def find(self, run_tag: str, job_dir: str) -> Handle | None:
        """The handle of the job submitted under ``run_tag`` into ``job_dir``, if there is one
        (a launcher that died before recording it); None when nothing was started there."""
        run_dir = os.path.abspath(job_dir)
        try:
            spec = sv.read_json(os.path.join(run_dir, sv.SPEC)) or {}
        except (ValueError, OSError):
            return None
        started = any(os.path.exists(os.path.join(run_dir, f)) for f in (sv.PIDS, sv.RESULT))
        if spec.get("run_tag") != run_tag or not started:
            return None
        return Handle(self.name, "local", run_dir)

    # ------------------------------------------------------------------ poll

    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        """Read every job's files (and /proc) in one worker-thread hop; no subprocesses."""
        return await asyncio.to_thread(self._poll, list(handles))

    def _poll(self, handles: list[Handle]) -> dict[Handle, StatusReport]:
        self._reap()
        reports: dict[Handle, StatusReport] = {}
        for handle in handles:
            if handle.backend != self.name:
                reports[handle] = StatusReport(
                    JobState.UNKNOWN, "local", reason=f"not a local job: {handle}"
                )
                continue
            if not os.path.isabs(handle.job_id):
                reports[handle] = StatusReport(JobState.UNKNOWN, "local", reason="no such job")
                continue
            status = sv.read_status(handle.job_id)
            reports[handle] = StatusReport(
                state=JobState(status.state),
                source=status.source,
                exit_code=status.exit_code,
                reason=status.reason,
                started_at=status.started_at,
                ended_at=status.ended_at,
            )
        return reports

    # ------------------------------------------------------------------ wait

    async def wait_changed(self, handles: Sequence[Handle], timeout: float) -> None:
        """Return as soon as one of these jobs may have changed state, or after ``timeout``.

        Optional capability (see :data:`core.engine.protocol.OPTIONAL_CAPABILITIES`): the engine
        waits here instead of sleeping between polls, so a job's end is noticed when its
        supervisor writes ``result.json`` rather than at the next poll. It returns at once
        when a job has already ended (the caller passes live jobs), and on a change of
        ``result.json``, ``pid.json`` (the phase) or the cancel marker. Where file events
        are not available it waits a short poll interval instead. It reports nothing: the
        caller polls afterwards, which is the only reading of the files.
        """
        dirs = sorted(
            {
                h.job_id
                for h in handles
                if h.backend == self.name and os.path.isabs(h.job_id) and os.path.isdir(h.job_id)
            }
        )
        if not dirs:
            await asyncio.sleep(timeout)
            return
        deadline = time.monotonic() + timeout
        try:
            watch = DirWatch(dirs)
        except WatchUnavailable:
            await asyncio.sleep(min(timeout, WAIT_FALLBACK_SECONDS))
            return
        with watch:
            # The watch exists: whatever happens from now on is an event. What happened
            # before it is in the files, so look once (a job that ended before the watch).
            if self._any_ended(dirs):
                return
            while (left := deadline - time.monotonic()) > 0:
                try:
                    changed = await watch.changed(left)
                except WatchUnavailable:
                    await asyncio.sleep(min(left, WAIT_FALLBACK_SECONDS))
                    return
                if not changed or watch_names(changed) & _STATE_FILES:
                    return

    @staticmethod
    def _any_ended(dirs: Sequence[str]) -> bool:
        return any(os.path.exists(os.path.join(d, sv.RESULT)) for d in dirs)

    # ------------------------------------------------------------------ stall
    async def log_activity(self, handles: Sequence[Handle]) -> dict[Handle, tuple[int, float]]:
        """Per job: bytes in its logs and when they last grew (optional capability, used by
        hang detection, core.engine.stall). Jobs whose files are gone are left out."""
        return await asyncio.to_thread(self._log_activity, list(handles))

    def _log_activity(self, handles: list[Handle]) -> dict[Handle, tuple[int, float]]:
        out: dict[Handle, tuple[int, float]] = {}
        for handle in handles:
            if handle.backend != self.name or not os.path.isabs(handle.job_id):
                continue
            size, mtime = 0, 0.0
            for name in sv.STREAMS.values():
                try:
                    st = os.stat(os.path.join(handle.job_id, sv.LOGS, name))
                except OSError:
                    continue
                size += st.st_size
                mtime = max(mtime, st.st_mtime)
            if mtime:
                out[handle] = (size, mtime)
        return out

    # ------------------------------------------------------------------ cancel

    async def cancel(self, handle: Handle) -> None:
        """Stop the job and wait (bounded) until its processes are gone.

        SIGTERM goes to the supervisor, which forwards it once to the job's process group and
        SIGKILLs the group after ``cancel_grace_seconds``, then records CANCELLED. Should the
        supervisor not manage (stopped, killed), the backend SIGKILLs everything itself after
        a margin and records the cancellation. Never blocks the event loop.
        """
        (started,) = await asyncio.to_thread(self._begin_cancels, [handle])
        if started is not None:
            await self._finish_cancel(*started)

    async def cancel_many(self, handles: Sequence[Handle]) -> None:
        """Cancel several jobs: every cancel marker is written first, in one go, so a sweep's
        pool starts none of the waiting points while the running ones stop (cancelled one by
        one, the point after a stopped one got its slot and started, to be killed at once).
        A handle that is no job raises after the others were cancelled."""
        started = await asyncio.to_thread(self._begin_cancels, list(handles), strict=False)
        await asyncio.gather(*(self._finish_cancel(*s) for s in started if isinstance(s, tuple)))
        unknown = [h for h, s in zip(handles, started, strict=True) if s is False]
        if unknown:
            raise BackendError(
                f"no such job {unknown[0]}"
                + (f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else "")
            )

    def _begin_cancels(self, handles: list[Handle], *, strict: bool = True) -> list[Any]:
        """Write each live job's cancel marker and signal it; per handle ``(run_dir, grace)``,
        None when it had already ended, False (``strict=False``) when it is no job."""
        begun: list[Any] = []
        for handle in handles:
            try:
                run_dir = self._run_dir(handle)
                status = sv.read_status(run_dir)
                if status.state == sv.UNKNOWN:
                    raise BackendError(f"no such job {handle} ({status.reason})")
            except BackendError:
                if strict:
                    raise
                begun.append(False)
                continue
            if status.state in sv.TERMINAL:
                begun.append(None)
                continue
            begun.append((run_dir, self._request_cancel(run_dir)))
        return begun

    async def _finish_cancel(self, run_dir: str, grace: float) -> None:
        """Wait (bounded) for the job to go, SIGKILL what is left, record it if nobody did."""
        if not await self._wait_gone(run_dir, grace + SUPERVISOR_MARGIN_SECONDS):
            await asyncio.to_thread(self._kill, run_dir)
            await self._wait_gone(run_dir, KILL_WAIT_SECONDS)
        # A supervisor killed before it could write (e.g. SIGTERM during its first
        # milliseconds, before its handler existed) leaves no result: record one.
        await asyncio.to_thread(self._record_silent_cancel, run_dir)

    def _pids(self, run_dir: str) -> dict[str, Any]:
        try:
            return sv.read_json(os.path.join(run_dir, sv.PIDS)) or {}
        except ValueError:
            return {}

    def _request_cancel(self, run_dir: str) -> float:
        """Write the marker first (so every reader knows), then SIGTERM; returns the grace."""
        try:
            spec = sv.read_json(os.path.join(run_dir, sv.SPEC)) or {}
        except ValueError:
            spec = {}
        grace = float(spec.get("cancel_grace_seconds", self.profile.cancel_grace_seconds))
        marker = {"requested_at": time.time(), "by_pid": os.getpid()}
        sv.write_json(os.path.join(run_dir, sv.CANCEL), marker, durable=False)
        pids = self._pids(run_dir)
        boot = pids.get("boot_id")
        supervisor = pids.get("supervisor")
        if sv.is_alive(supervisor, boot):
            # Only the supervisor: a second SIGTERM straight to the job could be read as
            # "force quit" by programs that shut down gracefully on the first one.
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor["pid"], signal.SIGTERM)
        elif sv.is_alive(pids.get("child"), boot):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pids["pgid"], signal.SIGTERM)
        return grace

    def _gone(self, run_dir: str) -> bool:
        """True when neither the supervisor nor anything in the job's group is alive."""
        self._reap()
        pids = self._pids(run_dir)
        if sv.is_alive(pids.get("supervisor"), pids.get("boot_id")):
            return False
        pgid = pids.get("pgid")
        return not (isinstance(pgid, int) and sv.is_alive(pids.get("child"), pids.get("boot_id")))

    async def _wait_gone(self, run_dir: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        interval = 0.005  # most jobs go within milliseconds of SIGTERM: look early, then less
        while True:
            if await asyncio.to_thread(self._gone, run_dir):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(interval)
            interval = min(interval * 2, 0.05)

    def _kill(self, run_dir: str) -> None:
        """SIGKILL the supervisor and the job's group, each only if it is still ours."""
        pids = self._pids(run_dir)
        boot = pids.get("boot_id")
        supervisor = pids.get("supervisor") or {}  # (an empty record is never alive)
        supervisor_alive = sv.is_alive(supervisor, boot)
        pgid = pids.get("pgid")
        if isinstance(pgid, int) and (supervisor_alive or sv.is_alive(pids.get("child"), boot)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        if supervisor_alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(supervisor["pid"], signal.SIGKILL)

    def _record_silent_cancel(self, run_dir: str) -> None:
        """If the supervisor died without a result, record the cancellation ourselves."""
        if os.path.exists(os.path.join(run_dir, sv.RESULT)):
            return
        pids = self._pids(run_dir)
        if sv.is_alive(pids.get("supervisor"), pids.get("boot_id")):
            return
        if sv.is_alive(pids.get("child"), pids.get("boot_id")):
            return  # unkillable (D state?): keep reporting RUNNING rather than inventing an end
        never_started = not pids and os.path.exists(os.path.join(run_dir, sv.POOLED))
        result = {
            "schema": sv.SCHEMA,
            "state": sv.CANCELLED,
            "exit_code": None,
            "reason": "cancelled before it started"
            if never_started
            else "cancelled; the supervisor ended before it recorded an exit code",
            "ended_at": time.time(),
            "cancel_requested": True,
            "recorded_by": "launcher",
        }
        sv.write_json(os.path.join(run_dir, sv.RESULT), result, durable=True, exclusive=True)

    # ------------------------------------------------------------------ logs

    def local_log_path(self, handle: Handle, stream: LogStream = "stdout") -> str | None:
        """The file the job writes ``stream`` to, on this machine (optional capability: a
        viewer may read it in place instead of copying the stream)."""
        if stream not in sv.STREAMS:
            raise BackendError(f"unknown log stream {stream!r} (stdout or stderr)")
        path = os.path.join(self._run_dir(handle), sv.LOGS, sv.STREAMS[stream])
        return path if os.path.isfile(path) else None

    async def job_outputs(self, handle: Handle) -> Any:
        """Optional capability (see :mod:`core.results.locate`): the run directory, which is
        the job's ``NEMORUN_JOB_DIR``, and its logs, on this machine."""
        from core.results.locate import JobOutputs
        from core.transport.local import local_transport

        run_dir = self._run_dir(handle)
        logs = {s: os.path.join(run_dir, sv.LOGS, name) for s, name in sv.STREAMS.items()}
        return JobOutputs(local_transport(), run_dir, logs)

    async def logs(
        self,
        handle: Handle,
        *,
        offset: int = 0,
        follow: bool = False,
        stream: LogStream = "stdout",
    ) -> AsyncIterator[bytes]:
        """Yield the log's bytes from ``offset`` in chunks of at most 64 KiB.

        With ``follow``, keep watching the file until the job has ended *and* everything it
        wrote has been delivered: the end is checked before the last read, so no tail is lost.
        """
        run_dir = self._run_dir(handle)
        if stream not in sv.STREAMS:
            raise BackendError(f"unknown log stream {stream!r} (stdout or stderr)")
        if offset < 0:
            raise BackendError(f"log offset must be >= 0, got {offset}")
        path = os.path.join(run_dir, sv.LOGS, sv.STREAMS[stream])
        reader = _LogFile(path)

        async def ended() -> bool:
            return self._ended(run_dir)

        # With file events, a write or the job's end wakes the follower at once; the
        # intervals stay the upper bound (and the only clock without events).
        watch = _follow_watch(run_dir) if follow else None

        async def wake(timeout: float) -> None:
            nonlocal watch
            if watch is not None:
                try:
                    await watch.changed(timeout)
                    return
                except WatchUnavailable:
                    watch.close()
                    watch = None
            await asyncio.sleep(timeout)

        try:
            async for chunk in follow_file(
                reader.read_at,
                offset=offset,
                follow=follow,
                done=ended,
                interval=FOLLOW_INTERVAL_SECONDS,
                max_interval=FOLLOW_IDLE_INTERVAL_SECONDS,
                wait=wake,
            ):
                yield chunk
        finally:
            reader.close()
            if watch is not None:
                watch.close()

    @staticmethod
    def _ended(run_dir: str) -> bool:
        state = sv.read_status(run_dir).state
        return state in sv.TERMINAL or state == sv.UNKNOWN

    async def close(self) -> None:
        """Nothing to release (jobs keep running); collect supervisors that already exited."""
        self._reap()


class _LogFile:
    """Offset reads of a job's log through one fd, opened once the file exists. A missing
    file reads as empty: a job that has not written yet simply has no bytes so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    async def read_at(self, pos: int) -> bytes:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return b""
        return os.pread(self.fd, LOG_CHUNK, pos)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _follow_watch(run_dir: str) -> DirWatch | None:
    """File events for a followed log (its folder, and the run dir for the job's end)."""
    try:
        return DirWatch([run_dir, os.path.join(run_dir, sv.LOGS)])
    except WatchUnavailable:
        return None


#: Where torchrun keeps its per-rank log files, inside the run directory.
RANK_LOG_DIR = "torchrun"


def _launch_env(job: JobSpec) -> dict[str, str]:
    launcher = getattr(job.executor, "launcher", None)
    if launcher is None:
        return {}
    from core.launchers import RANK_PREFIX_ENV

    return dict(RANK_PREFIX_ENV)


def _launch(job: JobSpec, own_dir: str, *, dry: bool) -> tuple[list[str], dict[str, str]]:
    """The command the supervisor runs, and the environment the launcher adds.

    With a launcher, ``ntasks_per_node`` ranks run under torchrun (or ft_launcher) with the
    rendezvous on 127.0.0.1 and a free port (chosen now; a dry run shows a placeholder). The
    launcher's package is checked with the job's interpreter first, so a missing one is a
    clear error before anything starts. Without one, a job asking for several tasks is
    refused instead of silently running one.
    """
    launcher = getattr(job.executor, "launcher", None)
    ntasks = int(getattr(job.executor, "ntasks_per_node", 1) or 1)
    if launcher is None:
        if ntasks > 1:
            raise BackendError(
                f"job {job.job_name!r}: ntasks_per_node={ntasks} needs a launcher "
                "(launcher='torchrun'); a plain process is one task"
            )
        return list(job.argv), {}
    from core.launchers import (
        RANK_PREFIX_ENV,
        LauncherError,
        free_port,
        launch_argv,
        missing_package_error,
        package_importable,
        ranks_per_node,
    )

    python = job.argv[0] if job.argv and job.argv[0] == sys.executable else sys.executable
    if not dry:
        check, module = package_importable(launcher, python)
        try:
            found = subprocess.run(check, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(
                f"cannot check the launcher's package with {python}: {exc}"
            ) from None
        if found.returncode != 0:
            raise BackendError(str(missing_package_error(launcher, module, "on this machine")))
    port = launcher.rdzv_port or (None if dry else free_port())
    try:
        argv = launch_argv(
            launcher,
            job.argv,
            python=python,
            nnodes=1,
            nproc_per_node=ranks_per_node(launcher, ntasks),
            rdzv_endpoint=f"127.0.0.1:{port if port else '<free port>'}",
            rdzv_id=job.run_tag,
            log_dir=os.path.join(own_dir, RANK_LOG_DIR),
        )
    except LauncherError as exc:
        raise BackendError(f"job {job.job_name!r}: {exc}") from None
    return argv, dict(RANK_PREFIX_ENV)


def _extract_code(job: JobSpec, dest: Path) -> str:
    """Unpack the job's packaged code into ``dest``, checked; returns ``dest``.

    The archive must be ``<sha256>.tar.gz``, hash to the sha256 the job records, and pass
    :mod:`core.packaging.extract`'s member rules (the same as on Slurm); extraction never
    writes outside ``dest``. Extraction happens once per job directory (a retried submit
    reuses the complete tree).
    """
    from core.packaging.extract import ArchiveHashError, UnsafeArchiveError, extract_local

    archive = Path(str(job.archive))
    if not job.archive_sha256:
        raise BackendError(f"packaged code {archive} comes without its sha256; refusing to run it")
    try:
        extract_local(archive, dest, job.archive_sha256)
    except UnsafeArchiveError as exc:
        raise BackendError(f"refusing to extract packaged code {archive}: {exc}") from None
    except (ArchiveHashError, OSError) as exc:
        raise BackendError(f"cannot extract packaged code {archive}: {exc}") from None
    return str(dest)


def job_vars(job: JobSpec, run_dir: Path) -> dict[str, str]:
    """The variables every backend gives a job (README: "Where jobs put things")."""
    return {
        "NEMORUN_EXPERIMENT_ID": job.experiment_id,
        "NEMORUN_JOB_NAME": job.job_name,
        "NEMORUN_RUN_TAG": job.run_tag,
        "NEMORUN_JOB_DIR": str(run_dir),
    }
