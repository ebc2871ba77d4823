"""The Ray backend: Ray Jobs on a cluster the user runs, through the Jobs REST API.

What it guarantees, and how:

* **Never submitted twice.** The submission id is the run's tag (:func:`submission.submission_id`):
  Ray refuses a second job under an id it knows, and a submit that meets that refusal (a retry
  after a lost answer, a relaunch of a dead launcher) returns the job already there, after
  checking it carries the same run tag in its metadata.
* **Constant load.** One poll is one ``GET /api/jobs/`` for every tracked job of the cluster,
  shared by concurrent callers; ended jobs are answered from memory.
* **Ray's words.** States map PENDING/RUNNING/SUCCEEDED/FAILED as is and STOPPED to CANCELLED;
  Ray's message is the reason and ``driver_exit_code`` the exit code; a job Ray does not know is
  UNKNOWN, never SUCCEEDED.
* **Logs** are the wrapper's clean copies of stdout/stderr (see :mod:`backends.ray.entrypoint`)
  read through the dashboard's log API: followed live over a streaming request, resumed after
  a dropped connection by skipping the bytes already yielded, readable after the job ended.
* **Dependencies** (Ray has none): the wrapper of a dependent job waits in the cluster until
  every dependency SUCCEEDED, and exits without running the command if one did not; polls show
  it PENDING meanwhile, and CANCELLED with the reason if it never ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from backends.ray import submission
from backends.ray.client import JobsClient, LogFileMissing, RayAPIError
from core.engine.executors import ExecutorProfile
from core.engine.executors_ray import RayExecutor
from core.engine.loop_local import LoopLocal
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport

_STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.CANCELLED,
}
SOURCE = "ray jobs api"


def _seconds(ms: Any) -> float | None:
    if isinstance(ms, int | float) and not isinstance(ms, bool) and ms > 0:
        return float(ms) / 1000.0
    return None


def ray_message(info: dict[str, Any]) -> str | None:
    """Ray's message without the log tail it appends to failures (we show the logs apart)."""
    message = info.get("message")
    if not isinstance(message, str) or not message.strip():
        return None
    head = message.split(", last available logs", 1)[0].strip()
    return head.splitlines()[0][:500] if head else None


def report_from_info(
    info: dict[str, Any], by_id: dict[str, dict[str, Any]], now: float
) -> StatusReport:
    """One job's report from its Jobs API record (``by_id``: the same list, for dependencies)."""
    status = str(info.get("status") or "")
    state = _STATES.get(status, JobState.UNKNOWN)
    code = info.get("driver_exit_code")
    exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    reason = ray_message(info)
    if state is JobState.UNKNOWN:
        reason = f"Ray reports status {status!r}" + (f": {reason}" if reason else "")
    deps = str((info.get("metadata") or {}).get(submission.META_DEPS) or "")
    dep_ids = [d for d in deps.split(",") if d]
    if dep_ids and state in (JobState.PENDING, JobState.RUNNING):
        waiting = [d for d in dep_ids if (by_id.get(d) or {}).get("status") != "SUCCEEDED"]
        if waiting:
            state = JobState.PENDING
            reason = f"waiting for {', '.join(waiting)}"
    if dep_ids and state is JobState.FAILED and exit_code == submission.DEPENDENCY_EXIT:
        failed = [
            f"{d} {(by_id.get(d) or {}).get('status', 'unknown')}"
            for d in dep_ids
            if (by_id.get(d) or {}).get("status") != "SUCCEEDED"
        ]
        state, exit_code = JobState.CANCELLED, None
        reason = "not run: dependency " + (", ".join(failed) or "did not succeed")
    if state is JobState.SUCCEEDED and exit_code is None:
        exit_code = 0
    return StatusReport(
        state,
        source=SOURCE,
        observed_at=now,
        exit_code=exit_code,
        reason=reason,
        started_at=_seconds(info.get("start_time")),
        ended_at=_seconds(info.get("end_time")) if state.is_terminal else None,
    )


@dataclass
class _LoopState:
    inflight: asyncio.Future[dict[str, dict[str, Any]]] | None = None


@dataclass
class _Known:
    node_id: str | None = None
    infos: dict[str, dict[str, Any]] = field(default_factory=dict)


class RayBackend:
    """One Ray cluster (one dashboard address), shared by every profile that names it."""

    name: ClassVar[str] = "ray"
    profile_class: ClassVar[type[ExecutorProfile]] = RayExecutor

    def __init__(self, executor: RayExecutor, *, client: JobsClient | None = None) -> None:
        self.executor = executor
        self.target = executor.target()
        self.client = client or JobsClient(executor.address)
        self._final: dict[Handle, StatusReport] = {}
        self._nodes: dict[str, str] = {}  # submission id -> driver node id
        self._state: LoopLocal[_LoopState] = LoopLocal(lambda loop: _LoopState())

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> RayBackend:
        if not isinstance(profile, RayExecutor):
            raise BackendError(f"ray backend needs a RayExecutor, got {type(profile).__name__}")
        return cls(profile)

    def _executor_of(self, job: JobSpec) -> RayExecutor:
        ex = job.executor
        if not isinstance(ex, RayExecutor):
            raise BackendError(f"ray backend got a {type(ex).__name__} profile")
        return ex

    def _handle(self, sid: str) -> Handle:
        return Handle(self.name, self.target, sid)

    # ------------------------------------------------------------------ dry run / submit
    async def dryrun(self, job: JobSpec) -> DryRun:
        """The request body that would be POSTed (secrets masked); nothing is sent."""
        import json

        executor = self._executor_of(job)
        uri = (
            f"gcs://{submission.package_name(job.archive_sha256)}"
            if job.archive and job.archive_sha256
            else None
        )
        sub = submission.build(
            executor,
            job,
            working_dir_uri=uri,
            dependency_ids=[h.job_id for h in job.dependencies],
        )
        summary = f"POST {executor.address}/api/jobs/ as {sub.submission_id}" + (
            f"; code as {uri}" if uri else ""
        )
        if job.dependencies:
            summary += "; waits in the cluster for " + ", ".join(h.job_id for h in job.dependencies)
        if sub.secret_names:
            summary += (
                f"; secrets in runtime_env.env_vars (stored by Ray): {', '.join(sub.secret_names)}"
            )
        return DryRun(
            backend=self.name,
            summary=summary,
            artifacts={
                # The entrypoint is the wrapper plus this command: shown apart to be readable.
                # With a launcher, the exact launch line the wrapper runs.
                "command": shlex.join(str(a) for a in (sub.launch or job.argv)),
                "request.json": json.dumps(sub.shown(), indent=2, sort_keys=True),
            },
        )

    async def submit(self, job: JobSpec) -> Handle:
        """Upload the code (once per hash), then POST the job; a known id returns that job."""
        executor = self._executor_of(job)
        for dep in job.dependencies:
            if dep.backend != self.name or dep.target != self.target:
                raise BackendError(
                    f"{job.job_name}: dependency {dep} is not a job of this Ray cluster"
                )
        uri = await self._ship_code(job) if job.archive and job.archive_sha256 else None
        sub = submission.build(
            executor,
            job,
            working_dir_uri=uri,
            dependency_ids=[h.job_id for h in job.dependencies],
        )
        last = ""
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(1.0 * attempt)
            try:
                sid = await self.client.submit(sub.body)
                return self._handle(sid)
            except RayAPIError as exc:
                last = str(exc)
                if "already exists" in last or exc.status == 0 or exc.status >= 500:
                    # Ambiguous or a duplicate: the job may exist. Look before trying again.
                    found = await self._existing(sub.submission_id, job.run_tag)
                    if found is not None:
                        return found
                    if "already exists" in last:
                        raise BackendError(
                            f"Ray job {sub.submission_id} exists but is not run {job.run_tag}"
                        ) from None
                    continue
                raise BackendError(f"Ray refused {job.job_name}: {last}") from None
        raise BackendError(f"submit of {job.job_name} to {self.target} failed 3 times: {last}")

    async def _existing(self, sid: str, run_tag: str) -> Handle | None:
        try:
            info = await self.client.get(sid)
        except RayAPIError:
            return None
        if info is None:
            return None
        tag = (info.get("metadata") or {}).get(submission.META_TAG)
        if tag not in (None, run_tag):
            return None
        return self._handle(sid)

    async def _ship_code(self, job: JobSpec) -> str:
        """``gcs://_ray_pkg_<sha256>.tar.gz``, uploaded unless the cluster already has it."""
        assert job.archive and job.archive_sha256
        name = submission.package_name(job.archive_sha256)
        path = Path(job.archive)
        if not await self.client.package_exists(name):
            size = path.stat().st_size
            if job.progress:
                job.progress(0, size)
            await self.client.upload_package(name, path)
            if job.progress:
                job.progress(size, size)
        return f"gcs://{name}"

    async def find(self, run_tag: str, job_dir: str) -> Handle | None:
        """The job submitted under ``run_tag`` (a launcher that died before recording it)."""
        return await self._existing(submission.submission_id(run_tag, job_dir), run_tag)

    # ------------------------------------------------------------------ poll
    async def _list(self) -> dict[str, dict[str, Any]]:
        """Every job of the cluster by submission id; concurrent callers share one call."""
        st = self._state.get()
        if st.inflight is not None and not st.inflight.done():
            return await asyncio.shield(st.inflight)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, dict[str, Any]]] = loop.create_future()
        st.inflight = future
        try:
            jobs = await self.client.list()
            result = {str(j.get("submission_id")): j for j in jobs if j.get("submission_id")}
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        future.set_result(result)
        return result

    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        """A report for every handle from one list call (none if all have ended)."""
        out: dict[Handle, StatusReport] = {}
        wanted = [h for h in handles if h not in self._final]
        by_id: dict[str, dict[str, Any]] = {}
        error: str | None = None
        if wanted:
            try:
                by_id = await self._list()
            except RayAPIError as exc:
                error = str(exc)
        now = time.time()
        for h in handles:
            if h in self._final:
                out[h] = self._final[h]
                continue
            info = by_id.get(h.job_id)
            if info is None:
                reason = error or f"no such Ray job {h.job_id} on {self.target}"
                out[h] = StatusReport(
                    JobState.UNKNOWN, source=SOURCE, observed_at=now, reason=reason
                )
                continue
            node = info.get("driver_node_id")
            if isinstance(node, str) and node:
                self._nodes[h.job_id] = node
            report = report_from_info(info, by_id, now)
            if report.state.is_terminal:
                self._final[h] = report
            out[h] = report
        return out

    # ------------------------------------------------------------------ cancel
    async def cancel(self, handle: Handle) -> None:
        """Stop the job (Ray sends SIGTERM to its process tree, SIGKILL after a grace)."""
        if handle in self._final:
            return
        info = await self.client.get(handle.job_id)
        if info is None:
            raise BackendError(f"cannot cancel: no such Ray job {handle.job_id} on {self.target}")
        if str(info.get("status")) in ("SUCCEEDED", "FAILED", "STOPPED"):
            return
        await self.client.stop(handle.job_id)

    # ------------------------------------------------------------------ logs
    def logs(
        self,
        handle: Handle,
        *,
        offset: int = 0,
        follow: bool = False,
        stream: LogStream = "stdout",
    ) -> AsyncIterator[bytes]:
        """The job's stdout/stderr from ``offset``; with ``follow``, live until it ends."""
        return self._logs(handle, offset, follow, stream)

    async def _info(self, handle: Handle) -> dict[str, Any]:
        info = await self.client.get(handle.job_id)
        if info is None:
            raise BackendError(f"no logs: no such Ray job {handle.job_id} on {self.target}")
        node = info.get("driver_node_id")
        if isinstance(node, str) and node:
            self._nodes[handle.job_id] = node
        return info

    async def _info_retrying(self, handle: Handle, tries: int = 5) -> dict[str, Any]:
        """``_info`` that rides out a dropped connection (a follower must not die of one)."""
        for attempt in range(tries):
            try:
                return await self._info(handle)
            except RayAPIError as exc:
                if exc.status != 0 or attempt == tries - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _read_retrying(self, node: str, filename: str, offset: int) -> bytes:
        for attempt in range(5):
            try:
                return await self._read_from(node, filename, offset)
            except RayAPIError as exc:
                if exc.status != 0 or attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _read_from(self, node: str, filename: str, offset: int) -> bytes:
        try:
            data = await self.client.read_log_file(node, filename)
        except LogFileMissing:
            return b""
        return data[offset:]

    async def _logs(
        self, handle: Handle, offset: int, follow: bool, stream: LogStream
    ) -> AsyncIterator[bytes]:
        filename = submission.stream_file(handle.job_id, stream)
        info = await self._info(handle)
        pos = max(0, offset)
        if not follow:
            node = self._nodes.get(handle.job_id)
            if node:
                data = await self._read_from(node, filename, pos)
                if data:
                    yield data
            return
        interval = max(0.05, self.executor.log_interval)
        while True:
            terminal = str(info.get("status")) in ("SUCCEEDED", "FAILED", "STOPPED")
            node = self._nodes.get(handle.job_id)
            if node and not terminal:
                async for chunk in self._stream_until_end(handle, node, filename, pos, interval):
                    pos += len(chunk)
                    yield chunk
                info = await self._info_retrying(handle)
                terminal = str(info.get("status")) in ("SUCCEEDED", "FAILED", "STOPPED")
            if terminal:
                node = self._nodes.get(handle.job_id)
                if node:
                    rest = await self._read_retrying(node, filename, pos)
                    if rest:
                        yield rest
                return
            await asyncio.sleep(interval)
            info = await self._info_retrying(handle)

    async def _stream_until_end(
        self, handle: Handle, node: str, filename: str, pos: int, interval: float
    ) -> AsyncIterator[bytes]:
        """Bytes past ``pos`` from the stream endpoint, reconnecting after drops, until the job
        has ended (checked whenever the stream is quiet). The caller reads the tail after."""
        quiet = max(1.0, 4 * interval)
        while True:
            received = 0
            stream = self.client.stream_log_file(node, filename, interval)
            try:
                while True:
                    try:
                        chunk = await asyncio.wait_for(anext(stream), timeout=quiet)
                    except StopAsyncIteration:
                        break  # the server closed the stream: check the job below
                    except TimeoutError:
                        if await self._ended(handle):
                            return
                        continue
                    start = received
                    received += len(chunk)
                    if received > pos:
                        piece = chunk[max(0, pos - start) :]
                        pos += len(piece)
                        yield piece
            except LogFileMissing:
                pass  # the wrapper has not created it yet
            except RayAPIError:
                pass  # dropped: reconnect and skip what was already yielded
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()
            if await self._ended(handle):
                return
            await asyncio.sleep(interval)

    async def _ended(self, handle: Handle) -> bool:
        try:
            info = await self.client.get(handle.job_id)
        except RayAPIError:
            return False
        return info is None or str(info.get("status")) in ("SUCCEEDED", "FAILED", "STOPPED")

    async def close(self) -> None:
        """Close this loop's HTTP session (a later call opens a new one)."""
        await self.client.close()
