"""The Slurm backend: sbatch/squeue/sacct/scancel through a transport (local or SSH).

What it guarantees, and how:

* **Never submitted twice.** Jobs are named after the run's unique tag. An intent marker is
  written next to the script before ``sbatch``; if sbatch times out, the connection drops, or
  Slurm answers with a transient error, the tag is looked up (squeue, then sacct) before any
  retry, and a submit that finds its own marker from an earlier attempt looks first too.
* **Constant scheduler load.** One poll is one ``squeue`` for every tracked job of the cluster
  plus at most one ``sacct`` for those squeue no longer knows, whatever the number of jobs.
  Concurrent callers (the monitor, every followed log) are coalesced into the next batch, and a
  token bucket per cluster (default 0.5 calls/s, burst 2) spaces the calls.
* **Honest states.** A job neither command knows is UNKNOWN, never SUCCEEDED; each report says
  which command saw it; exit codes come from the exit-code file the script writes (exact),
  falling back to Slurm's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from backends.slurm import parse
from backends.slurm.script import (
    code_dir,
    describe_tunnel,
    exit_code_file,
    job_key_file,
    package_cache_dir,
    render,
)
from core.engine.executors import ExecutorProfile, LocalTunnel, SlurmExecutor, SSHTunnel
from core.engine.loop_local import LoopLocal
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport
from core.transport import Transport, TransportError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: Scheduler query commands (rate limited); sbatch/scancel are user actions and are not.
QUERY_COMMANDS = ("squeue", "sacct")
#: ISO times whatever the user's SLURM_TIME_FORMAT (parse_sacct compares Submit as text), in
#: UTC whatever the cluster's time zone (Start/End become Unix times: parse.parse_time).
SACCT_ENV = {"SLURM_TIME_FORMAT": "standard", "TZ": "UTC"}
_TRANSIENT_SBATCH = (
    "Socket timed out",
    "Unable to contact slurm controller",
    "Resource temporarily unavailable",
    "temporarily unable to accept",
    "Zero Bytes were transmitted",
    "Connection refused",
)
_SCANCEL_ERROR = re.compile(r"Kill job error on job id (\S+): ([^\n]*)")
#: How long a job that vanished from both squeue and sacct keeps its last seen state
#: (accounting lags the controller by a few seconds) before it is reported UNKNOWN.
UNKNOWN_GRACE_SECONDS = 120.0


class RateLimiter:
    """Token bucket: at most ``burst`` calls at once, ``rate`` per second on average.

    It uses only the monotonic clock and ``asyncio.sleep``, so it is valid in any event loop.
    """

    def __init__(self, rate: float, burst: int = 2) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self.waited = 0.0

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        while True:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return
            delay = (1 - self._tokens) / self.rate
            self.waited += delay
            await asyncio.sleep(delay)


@dataclass
class _Batch:
    handles: set[Handle] = field(default_factory=set)
    future: asyncio.Future[None] | None = None


@dataclass
class _LoopState:
    loop: asyncio.AbstractEventLoop
    pending: _Batch = field(default_factory=_Batch)
    runner: asyncio.Task[None] | None = None


class SlurmBackend:
    """One Slurm cluster (one target): shared by every profile that reaches it the same way."""

    name: ClassVar[str] = "slurm"
    profile_class: ClassVar[type[ExecutorProfile]] = SlurmExecutor

    def __init__(
        self,
        executor: SlurmExecutor,
        *,
        transport: Transport | None = None,
        submit_timeout: float = 60.0,
        query_timeout: float = 60.0,
    ) -> None:
        self.executor = executor
        self.target = executor.target()
        self._transport = transport
        self.limiter = RateLimiter(executor.poll_rate, executor.poll_burst)
        self.submit_timeout = submit_timeout
        self.query_timeout = query_timeout
        #: Commands run, by name (the bench reads it).
        self.stats: Counter[str] = Counter()
        self._dirs: dict[str, str] = {}  # job key / array id -> job dir
        self._tasks: dict[str, set[str]] = {}  # array job id -> task keys seen
        self._final: dict[Handle, StatusReport] = {}
        self._last: dict[Handle, tuple[StatusReport, float]] = {}
        self._exit_codes: dict[str, int] = {}
        self._arrays: set[str] = set()  # job ids submitted as arrays by this process
        self._expected_tasks: dict[str, int] = {}  # array job id -> tasks submitted
        self._names: dict[str, str] = {}  # job id -> the Slurm job name (run tag) we gave it
        self._state: LoopLocal[_LoopState] = LoopLocal(lambda loop: _LoopState(loop=loop))

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> SlurmBackend:
        if not isinstance(profile, SlurmExecutor):
            raise BackendError(f"slurm backend needs a SlurmExecutor, got {type(profile).__name__}")
        return cls(profile)

    # ------------------------------------------------------------------ plumbing
    def transport(self) -> Transport:
        """The shared transport for this cluster (created on first use)."""
        if self._transport is None:
            tunnel = self.executor.tunnel
            if isinstance(tunnel, SSHTunnel):
                from core.transport.ssh import transport_for

                self._transport = transport_for(
                    tunnel.host,
                    user=tunnel.user,
                    port=tunnel.port,
                    identity=tunnel.identity,
                    ssh_config=tunnel.ssh_config,
                    known_hosts=tunnel.known_hosts,
                )
            else:
                from core.transport.local import local_transport

                self._transport = local_transport()
        return self._transport

    def _executor_of(self, job: JobSpec) -> SlurmExecutor:
        ex = job.executor
        if not isinstance(ex, SlurmExecutor):
            raise BackendError(f"slurm backend got a {type(ex).__name__} profile")
        return ex

    def _handle(self, job_id: str) -> Handle:
        return Handle(self.name, self.target, job_id)

    async def _run(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, str, str]:
        if argv[0] in QUERY_COMMANDS:
            await self.limiter.acquire()
        self.stats[argv[0]] += 1
        result = await self.transport().run(argv, env=env, timeout=timeout or self.query_timeout)
        return (
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace").strip(),
        )

    def _loop_state(self) -> _LoopState:
        return self._state.get()

    # ------------------------------------------------------------------ dry run / submit
    async def dryrun(self, job: JobSpec) -> DryRun:
        """The rendered script and sbatch command; nothing is written or submitted."""
        executor = self._executor_of(job)
        rendered = render(executor, job)
        summary = (
            f"sbatch {job.job_name} {describe_tunnel(executor)}; job dir {rendered.job_dir}"
            + (f"; array {executor.array}" if executor.array else "")
            + (
                f"; after {executor.dependency_type} of "
                + ", ".join(h.job_id for h in job.dependencies)
                if job.dependencies
                else ""
            )
            + (
                f"; secrets passed via the environment: {', '.join(sorted(job.secret_env))}"
                if job.secret_env
                else ""
            )
        )
        artifacts = {
            "sbatch.sh": rendered.script,
            "command": shlex.join(rendered.sbatch_argv),
        }
        return DryRun(backend=self.name, summary=summary, artifacts=artifacts)

    async def submit(self, job: JobSpec) -> Handle:
        """Write the script (and task file) into the job dir, then sbatch exactly once."""
        executor = self._executor_of(job)
        rendered = render(executor, job)
        t = self.transport()
        try:
            await t.makedirs(rendered.job_dir)
            if rendered.task_upload is not None:
                local, remote = rendered.task_upload
                await t.put(Path(local), remote)
            if job.archive and job.archive_sha256:
                await self._ship_code(executor, job, rendered.job_dir)
            if await t.size(rendered.marker_path) is not None:
                # An earlier attempt got as far as sbatch: it may have gone through.
                found = await self.lookup_tag(job.run_tag)
                if found is not None:
                    return self._remember_submit(found, rendered.job_dir, executor, job.run_tag)
            await t.write(rendered.script_path, rendered.script.encode(), 0o700)
            await t.write(rendered.marker_path, job.run_tag.encode() + b"\n", 0o600)
        except TransportError as exc:
            raise BackendError(f"cannot prepare {rendered.job_dir}: {exc}") from exc

        await self._check_launcher(executor, rendered.argv)
        secrets = {k: v for k, v in job.secret_env.items() if v is not None}
        last_error = ""
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(2.0 * attempt)
            try:
                rc, out, err = await self._run(
                    rendered.sbatch_argv, env=secrets or None, timeout=self.submit_timeout
                )
            except TransportError as exc:
                last_error = str(exc)
            else:
                if rc == 0 and out.strip():
                    job_id = out.strip().splitlines()[-1].split(";", 1)[0].strip()
                    if parse.is_job_id(job_id):
                        return self._remember_submit(
                            job_id, rendered.job_dir, executor, job.run_tag
                        )
                    last_error = f"unexpected sbatch output {out.strip()!r}"
                elif not any(marker in err for marker in _TRANSIENT_SBATCH):
                    raise BackendError(f"sbatch refused {job.job_name}: {err or f'exit {rc}'}")
                else:
                    last_error = err
            # Ambiguous: the job may exist. Never sbatch again without a definite lookup.
            found = await self._lookup_definitely(job.run_tag, last_error)
            if found is not None:
                return self._remember_submit(found, rendered.job_dir, executor, job.run_tag)
        raise BackendError(f"sbatch of {job.job_name} failed after 3 attempts: {last_error}")

    async def _check_launcher(self, executor: SlurmExecutor, argv: list[str]) -> None:
        """A launcher whose package the cluster's interpreter cannot import is refused here,
        before sbatch, with the reason (instead of a job failing later on every node)."""
        launcher = getattr(executor, "launcher", None)
        if launcher is None:
            return
        import sys

        from core.launchers import missing_package_error, package_importable

        python = executor.python or sys.executable
        if argv and argv[0] in (executor.python, sys.executable):
            python = argv[0]
        check, module = package_importable(launcher, python)
        try:
            rc, _, _ = await self._run(check, timeout=self.query_timeout)
        except TransportError as exc:
            raise BackendError(
                f"cannot check the launcher's package on {self.target}: {exc}"
            ) from None
        if rc != 0:
            where = f"on {self.target} ({python})"
            raise BackendError(str(missing_package_error(launcher, module, where)))

    async def log_activity(self, handles: Sequence[Handle]) -> dict[Handle, tuple[int, float]]:
        """Per job: bytes in its stdout+stderr files and their last modification time, from
        one ``stat`` on the cluster for all (hang detection, core.engine.stall)."""
        paths: dict[str, Handle] = {}
        for h in handles:
            job_dir = self._dirs.get(h.job_id)
            if not job_dir or not parse.is_job_id(h.job_id):
                continue
            for stream in ("stdout", "stderr"):
                paths[job_key_file(job_dir, h.job_id, stream)] = h
        if not paths:
            return {}
        self.stats["stat"] += 1
        result = await self.transport().run(
            ["stat", "-c", "%s %Y %n", "--", *paths], timeout=self.query_timeout
        )
        out: dict[Handle, tuple[int, float]] = {}
        for line in result.stdout.decode(errors="replace").splitlines():
            size, _, rest = line.partition(" ")
            mtime, _, name = rest.partition(" ")
            owner = paths.get(name)
            if owner is None or not size.isdigit() or not mtime.isdigit():
                continue
            before = out.get(owner, (0, 0.0))
            out[owner] = (before[0] + int(size), max(before[1], float(mtime)))
        return out

    async def _ship_code(self, executor: SlurmExecutor, job: JobSpec, job_dir: str) -> None:
        """Make the packaged code available in ``<job_dir>/code``, verified by its hash.

        On a login node (LocalTunnel) the archive is already on this filesystem; over SSH it
        is uploaded into a content-addressed cache first, so unchanged code is never re-sent.
        """
        from core.packaging import PackagingError, extract_archive, upload_archive

        t = self.transport()
        assert job.archive is not None and job.archive_sha256 is not None
        try:
            if isinstance(executor.tunnel, LocalTunnel):
                remote_archive = job.archive
            else:
                result = await upload_archive(
                    t,
                    Path(job.archive),
                    job.archive_sha256,
                    package_cache_dir(executor, job_dir),
                    progress=job.progress,
                )
                remote_archive = result.remote_path
            await extract_archive(
                t,
                remote_archive,
                code_dir(job_dir),
                job.archive_sha256,
                local_archive=Path(job.archive),
            )
        except PackagingError as exc:
            raise BackendError(f"cannot ship the code of {job.job_name}: {exc}") from exc

    def _remember_submit(
        self, job_id: str, job_dir: str, executor: SlurmExecutor, run_tag: str
    ) -> Handle:
        self._dirs[job_id] = job_dir
        self._names[job_id] = run_tag
        if executor.array:
            self._arrays.add(job_id)
            self._expected_tasks[job_id] = len(parse.expand_task_spec(str(executor.array)))
        handle = self._handle(job_id)
        self._last[handle] = (
            StatusReport(JobState.SUBMITTED, source="sbatch"),
            time.monotonic(),
        )
        return handle

    async def _lookup_definitely(self, run_tag: str, why: str, tries: int = 4) -> str | None:
        """``lookup_tag`` retried with backoff; raises if Slurm never gives an answer.

        Used after an ambiguous sbatch: re-submitting without knowing whether the first one
        went through could run the job twice, so "cannot tell" is an error, not a retry.
        """
        errors = []
        for attempt in range(tries):
            if attempt:
                await asyncio.sleep(1.5 * attempt)
            try:
                return await self.lookup_tag(run_tag)
            except (TransportError, BackendError) as exc:
                errors.append(str(exc))
        raise BackendError(
            f"sbatch outcome unknown ({why}); the job may exist under the name {run_tag} "
            f"but Slurm could not be asked ({errors[-1]}); check `squeue -n {run_tag}` "
            "before launching again"
        )

    async def lookup_tag(self, run_tag: str) -> str | None:
        """The job id submitted under ``run_tag``, from squeue then sacct; None if none."""
        rc, out, err = await self._run(["squeue", "-h", "-t", "all", "-n", run_tag, "-o", "%F"])
        if rc != 0:
            raise BackendError(f"squeue failed: {err}")
        ids = sorted({line.strip() for line in out.splitlines() if line.strip()}, key=int)
        if ids:
            return ids[-1]
        rc, out, err = await self._run(
            ["sacct", "-n", "-P", "-X", "--name", run_tag, "-S", "now-30days", "-o", "JobID"]
        )
        if rc != 0:
            raise BackendError(f"sacct failed: {err}")
        ids = sorted(
            {parse.array_job_of(line.strip()) for line in out.splitlines() if line.strip()},
            key=int,
        )
        return ids[-1] if ids else None

    # ------------------------------------------------------------------ hold / find
    async def release(self, handle: Handle) -> None:
        """``scontrol release`` a job submitted held, now that its handle is recorded.

        Retried on transient errors: a job left held would wait forever (it shows PENDING
        with Slurm's reason JobHeldUser, and ``cancel`` still stops it).
        """
        if not parse.is_job_id(handle.job_id):
            raise BackendError(f"not a Slurm job id: {handle.job_id}")
        last = ""
        for attempt in range(3):
            if attempt:
                await asyncio.sleep(1.0 * attempt)
            try:
                rc, _, err = await self._run(["scontrol", "release", handle.job_id], timeout=60)
            except TransportError as exc:
                last = str(exc)
                continue
            if rc == 0 or "already finished" in err:
                return  # (ended or cancelled meanwhile: nothing to release)
            last = err or f"exit {rc}"
            if not any(marker in err for marker in _TRANSIENT_SBATCH):
                break
        raise BackendError(f"cannot release Slurm job {handle.job_id}: {last}")

    async def find(self, run_tag: str, job_dir: str) -> Handle | None:
        """The job submitted under ``run_tag`` (a launcher that died before recording it)."""
        job_id = await self.lookup_tag(run_tag)
        if job_id is None:
            return None
        self._names[job_id] = run_tag
        return self._handle(job_id)

    # ------------------------------------------------------------------ poll
    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        """A report for every handle; ended jobs are answered from memory (no call)."""
        wanted = [h for h in handles if h not in self._final and parse.is_job_id(h.job_id)]
        if wanted:
            await self._batched(wanted)
        out: dict[Handle, StatusReport] = {}
        for h in handles:
            if h in self._final:
                out[h] = self._final[h]
            elif h in self._last:
                out[h] = self._last[h][0]
            else:
                out[h] = StatusReport(
                    JobState.UNKNOWN, source="squeue+sacct", reason=f"no such Slurm job {h.job_id}"
                )
        return out

    async def _batched(self, handles: list[Handle]) -> None:
        """Join the next batch: concurrent callers share one squeue (+ one sacct)."""
        st = self._loop_state()
        batch = st.pending
        if batch.future is None:
            batch.future = st.loop.create_future()
        batch.handles.update(handles)
        future = batch.future
        if st.runner is None or st.runner.done():
            st.runner = st.loop.create_task(self._run_batches(st))
        await asyncio.shield(future)

    async def _run_batches(self, st: _LoopState) -> None:
        while st.pending.handles:
            batch = st.pending
            st.pending = _Batch()
            assert batch.future is not None
            try:
                await self._query(sorted(batch.handles))
            except BaseException as exc:  # delivered to every waiter of this batch
                if not batch.future.done():
                    batch.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                if not batch.future.done():
                    batch.future.set_result(None)

    async def _query(self, handles: list[Handle]) -> None:
        """One squeue for all, one sacct for the rest; results land in ``_last``/``_final``."""
        now = time.time()
        ids = sorted({h.job_id for h in handles}, key=parse.task_sort_key)
        rc, out, err = await self._run(
            ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids), "-O", parse.SQUEUE_FORMAT],
            env=SACCT_ENV,
        )
        if rc != 0 and "Invalid job id" not in err:
            raise BackendError(f"squeue failed on {self.target}: {err or f'exit {rc}'}")
        rows = parse.group_by_key(parse.parse_squeue(out if rc == 0 else ""))
        self._note_rows(rows.values())

        need_sacct: list[Handle] = []
        for h in handles:
            if not self._resolvable(h, rows):
                need_sacct.append(h)
        sacct_rows: dict[str, parse.Row] = {}
        sacct_error = None
        if need_sacct:
            sacct_ids = sorted({h.job_id for h in need_sacct}, key=parse.task_sort_key)
            rc, out, err = await self._run(
                [
                    "sacct", "-n", "-P", "-X", "-D",
                    "-j", ",".join(sacct_ids),
                    "-o", parse.SACCT_FORMAT,
                ],
                env=SACCT_ENV,
            )  # fmt: skip
            if rc == 0:
                sacct_rows = parse.group_by_key(parse.parse_sacct(out, names=self._names))
                self._note_rows(sacct_rows.values())
            else:
                sacct_error = err or f"exit {rc}"
        merged = {**sacct_rows, **rows}  # squeue is fresher where both know a job
        from backends.slurm.array_sweep import unsplit_tasks

        merged.update(await unsplit_tasks(self, handles, merged))  # array tasks never started
        for h in handles:
            report = await self._report_for(h, merged, now)
            if report is not None and report.state.is_terminal and h.job_id in self._arrays:
                # An array ends only when every task is accounted for: squeue forgets ended
                # tasks, so without sacct (or with fewer tasks than submitted) nothing is final.
                seen = {r.key for r in merged.values() if r.array_job == h.job_id}
                expected = self._expected_tasks.get(h.job_id)
                if (h in need_sacct and sacct_error) or (
                    expected is not None and len(seen) < expected
                ):
                    report = None
                    sacct_error = sacct_error or (
                        f"{len(seen)} of {expected} array tasks reported so far"
                    )
            if report is None:
                report = self._unknown(h, sacct_error, now)
            if report.state.is_terminal:
                self._final[h] = report
            self._last[h] = (report, time.monotonic())

    def _note_rows(self, rows: Iterable[parse.Row]) -> None:
        for row in rows:
            if row.workdir:
                self._dirs.setdefault(row.key, row.workdir)
                if row.array_job:
                    self._dirs.setdefault(row.array_job, row.workdir)
            if row.array_job:
                self._tasks.setdefault(row.array_job, set()).add(row.key)
                self._arrays.add(row.array_job)

    def _resolvable(self, h: Handle, rows: dict[str, parse.Row]) -> bool:
        """Can squeue's rows alone answer for ``h``? (Otherwise ask sacct.)"""
        task_rows = [r for r in rows.values() if r.array_job == h.job_id]
        if not task_rows:
            return h.job_id in rows
        # An array: squeue only lists tasks it still holds; once none is active, the whole
        # picture (tasks already purged included) needs sacct.
        return any(not r.state.is_terminal for r in task_rows)

    async def _report_for(
        self, h: Handle, rows: dict[str, parse.Row], now: float
    ) -> StatusReport | None:
        task_rows = [r for r in rows.values() if r.array_job == h.job_id]
        row = rows.get(h.job_id)
        if not task_rows:
            if row is None:
                return None
            if h.job_id in self._arrays and row.state.is_terminal:
                # Accounting lag: before sacct splits an array it shows one row under the
                # array's id carrying the *last task's* state. Not the array's outcome.
                return None
            return await self._row_report(row, now)
        summary = parse.ArraySummary()
        for r in sorted(task_rows, key=lambda r: parse.task_sort_key(r.key)):
            summary.reports[r.key] = await self._row_report(r, now)
        return summary.aggregate()

    async def _row_report(self, row: parse.Row, now: float) -> StatusReport:
        code = None
        if row.state.is_terminal:
            code = await self._exit_code_from_file(row.key)
        return parse.report_from_row(row, exit_code=code, now=now)

    async def _exit_code_from_file(self, key: str) -> int | None:
        """The exact exit code the script recorded (read once per job)."""
        if key in self._exit_codes:
            return self._exit_codes[key]
        job_dir = self._dirs.get(key) or self._dirs.get(parse.array_job_of(key))
        if not job_dir:
            return None
        try:
            data = await self.transport().read(exit_code_file(job_dir, key))
        except (FileNotFoundError, PermissionError, TransportError):
            return None
        try:
            code = int(data.decode().strip())
        except ValueError:
            return None
        self._exit_codes[key] = code
        return code

    def _unknown(self, h: Handle, sacct_error: str | None, now: float) -> StatusReport:
        last = self._last.get(h)
        if last is not None and time.monotonic() - last[1] < UNKNOWN_GRACE_SECONDS:
            report, _ = last
            return StatusReport(
                report.state,
                source=f"{report.source} (last seen; not in squeue, not yet in sacct)",
                observed_at=report.observed_at,
                exit_code=report.exit_code,
                reason=report.reason,
                restarts=report.restarts,
                started_at=report.started_at,
                ended_at=report.ended_at,
            )
        reason = f"neither squeue nor sacct knows job {h.job_id}"
        if sacct_error:
            reason += f" (sacct failed: {sacct_error})"
        return StatusReport(JobState.UNKNOWN, source="squeue+sacct", observed_at=now, reason=reason)

    # ------------------------------------------------------------------ arrays
    async def array_tasks(self, handle: Handle) -> list[Handle]:
        """Handles of an array job's tasks (``<id>_<task>``), from the scheduler."""
        await self.poll([handle])
        keys = sorted(self._tasks.get(handle.job_id, ()), key=parse.task_sort_key)
        return [self._handle(k) for k in keys]

    # ------------------------------------------------------------------ cancel
    async def cancel(self, handle: Handle) -> None:
        """scancel one job, or one array task (``<id>_<task>``), or a whole array (``<id>``)."""
        await self.cancel_many([handle])

    async def cancel_many(self, handles: Sequence[Handle]) -> None:
        """One scancel for many jobs (a whole experiment); ended jobs are left alone."""
        live = [h for h in handles if h not in self._final]
        bad = [h for h in live if not parse.is_job_id(h.job_id)]
        if bad:
            raise BackendError(f"not a Slurm job id: {bad[0].job_id}")
        if not live:
            return
        # -v: without it scancel says nothing (and exits 0) about ids it does not know.
        rc, _, err = await self._run(["scancel", "-v", *[h.job_id for h in live]], timeout=60)
        errors = dict(_SCANCEL_ERROR.findall(err))
        if rc != 0 and not errors:
            raise BackendError(f"scancel failed: {err or f'exit {rc}'}")
        invalid = []
        for job_id, message in errors.items():
            if "already completing or completed" in message:
                continue  # ended before we asked: nothing to do
            if "Invalid job id" in message:
                invalid.append(job_id)
                continue
            raise BackendError(f"scancel {job_id}: {message}")
        if invalid:
            # Unknown to the controller: finished long ago (sacct knows) or never real.
            gone = [h for h in live if h.job_id in invalid]
            reports = await self.poll(gone)
            unknown = [h.job_id for h, r in reports.items() if r.state is JobState.UNKNOWN]
            if unknown:
                raise BackendError(f"cannot cancel: no such Slurm job {', '.join(unknown)}")

    async def cancel_experiment(self, experiment_id: str) -> list[str]:
        """Cancel every live job of an experiment, found by the comment sbatch was given."""
        rc, out, err = await self._run(["squeue", "-h", "--me", "-O", "ArrayJobID:|,Comment:|"])
        if rc != 0:
            raise BackendError(f"squeue failed: {err}")
        prefix = f"nemorun:{experiment_id}/"
        ids = sorted(
            {
                line.split("|", 1)[0].strip()
                for line in out.splitlines()
                if "|" in line and line.split("|", 1)[1].startswith(prefix)
            },
            key=int,
        )
        if ids:
            await self.cancel_many([self._handle(i) for i in ids])
        return ids

    # ------------------------------------------------------------------ logs
    async def _log_key(self, handle: Handle) -> tuple[str, str]:
        """(job dir, job key) whose files hold this handle's logs; arrays → lowest task."""
        key = handle.job_id
        if not parse.is_job_id(key):
            raise BackendError(f"not a Slurm job id: {key}")
        if key not in self._dirs or (key in self._tasks and "_" not in key):
            await self.poll([handle])
        if key in self._tasks and "_" not in key:
            tasks = sorted(self._tasks[key], key=parse.task_sort_key)
            if tasks:
                key = tasks[0]
        job_dir = self._dirs.get(key) or self._dirs.get(parse.array_job_of(key))
        if not job_dir:
            report = (await self.poll([handle]))[handle]
            raise BackendError(
                f"no logs for Slurm job {handle.job_id}: {report.reason or report.state.value}"
            )
        return job_dir, key

    async def job_outputs(self, handle: Handle) -> Any:
        """Optional capability (see :mod:`core.results.locate`): the job dir on the cluster
        (its ``NEMORUN_JOB_DIR``) and its log files, through this cluster's transport."""
        from core.results.locate import JobOutputs

        job_dir, key = await self._log_key(handle)
        logs = {s: job_key_file(job_dir, key, s) for s in ("stdout", "stderr")}
        return JobOutputs(self.transport(), job_dir, logs)

    def logs(
        self,
        handle: Handle,
        *,
        offset: int = 0,
        follow: bool = False,
        stream: LogStream = "stdout",
    ) -> AsyncIterator[bytes]:
        """Bytes of the job's (first array task's) stdout/stderr through the resumable tail."""
        return self._logs(handle, offset, follow, stream)

    async def _logs(
        self, handle: Handle, offset: int, follow: bool, stream: LogStream
    ) -> AsyncIterator[bytes]:
        job_dir, key = await self._log_key(handle)
        path = self._log_path(job_dir, key, stream)
        task_handle = self._handle(key)
        t = self.transport()
        done = self._done_checker(task_handle, job_dir, key) if follow else None
        try:
            async for chunk in t.tail(path, offset=offset, follow=follow, done=done):
                yield chunk
        except FileNotFoundError:
            return  # not started yet (no log file): nothing to show
        except TransportError as exc:
            raise BackendError(f"logs of {handle.job_id}: {exc}") from exc

    def _log_path(self, job_dir: str, key: str, stream: LogStream) -> str:
        """The file :meth:`logs` tails (slurm_ray tails its Ray job's files instead)."""
        return job_key_file(job_dir, key, stream)

    def _done_checker(
        self, handle: Handle, job_dir: str, key: str
    ) -> Callable[[], Awaitable[bool]]:
        """A cheap "has it ended?": exit-code file first (no scheduler call), then a coalesced,
        rate-limited poll at most every couple of seconds."""
        t = self.transport()
        min_gap = max(2.0, 1.0 / self.executor.poll_rate)
        last_poll = 0.0

        async def done() -> bool:
            nonlocal last_poll
            if handle in self._final:
                return True
            with contextlib.suppress(TransportError, OSError):
                if await t.size(exit_code_file(job_dir, key)) is not None:
                    return True
            if time.monotonic() - last_poll < min_gap:
                return False
            last_poll = time.monotonic()
            report = (await self.poll([handle]))[handle]
            return report.state.is_terminal or report.state is JobState.UNKNOWN

        return done

    async def submit_array(
        self, specs: list[JobSpec], throttle: int | None = None
    ) -> tuple[Handle, list[Handle]]:
        """Many points as ONE array job, one sbatch (see backends.slurm.array_sweep)."""
        from backends.slurm.array_sweep import submit_array

        return await submit_array(self, specs, throttle)

    async def dryrun_array(self, specs: list[JobSpec], throttle: int | None = None) -> DryRun:
        """The array's script, points and sbatch command; nothing written or submitted."""
        from backends.slurm.array_sweep import dryrun_array

        return dryrun_array(specs, throttle)

    async def close(self) -> None:
        """Close the transport's connection (it reopens lazily if this backend is used again)."""
        if self._transport is not None:
            await self._transport.close()
