"""The engine: turns tasks into recorded, submitted, watched jobs. Shared by CLI, API and app.

Order of a launch is fixed on purpose (ARCHITECTURE.md, "data flow"): validate everything,
record the experiment with every job UNSUBMITTED (intent first), then submit job by job,
recording each handle the moment it exists. A crash between two steps leaves a store that
tells the truth about what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.engine import launch_guard, launch_window, registry, stale_files
from core.engine.executors import ExecutorProfile, profile_from_dict
from core.engine.launch_events import (
    LaunchEvent,
    NotLaunched,
    OnLaunchEvent,
    Packaged,
    PackagingWarning,
    Recorded,
    Submitted,
    Uploading,
)
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport
from core.settings import Settings, load_settings, resolve_home, resolve_secret_env
from core.store import (
    DamagedFileError,
    ExperimentRecord,
    JobRecord,
    StateChange,
    Store,
    StoreError,
)

if TYPE_CHECKING:
    from core.engine.monitor import Monitor
    from core.engine.preview import JobPreview

TASK_FILE = "task.json"
#: The task as Detail shows it (flattened, signature defaults included), computed where the
#: task was a live object, so the app never imports user code to show a run.
VIEW_FILE = "view.json"
PROVENANCE_FILE = "provenance.json"
EXECUTOR_FILE = "executor.json"
POINT_FILE = "point.json"  # a sweep point's values (core.sweep)
IMPORT_FILE = "nemo_run.json"  # what NeMo Run recorded of an imported job (core.importers)
RUNNER_MODULE = "core.runner"


class LaunchError(ValueError):
    """The experiment cannot be launched as described (bad names, cycles…); nothing written."""


@dataclass
class PlannedJob:
    """A job the user added but that is not recorded yet.

    ``package`` is filled by :meth:`Engine.package` (or carried over from the parent on a
    relaunch, so unchanged code is neither repackaged nor uploaded again).
    """

    name: str
    task: Any
    executor: ExecutorProfile
    dependencies: list[str] = field(default_factory=list)
    package: Any = None
    #: A sweep point's values (core.sweep.Point.to_dict), stored as the job's point.json.
    point: dict[str, Any] | None = None


#: Longest job name, in UTF-8 bytes: it becomes a folder and a Slurm job name.
MAX_JOB_NAME = 128


@dataclass
class Plan:
    """An experiment before it is recorded: what ``Experiment.add`` collects."""

    title: str
    jobs: list[PlannedJob] = field(default_factory=list)
    parent: str | None = None
    tags: list[str] = field(default_factory=list)
    workspace: str | None = None
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    sequential: bool = False
    note: str = ""
    #: Where the jobs run; None: the current directory (a relaunch: the parent's).
    workdir: str | None = None
    #: A sweep on Slurm submitted as one array job: at most this many points run at once
    #: (sbatch's ``%`` throttle); None: no limit (see core.engine.sweep_submit).
    array_throttle: int | None = None

    def add(
        self,
        task: Any,
        executor: ExecutorProfile,
        name: str | None = None,
        dependencies: Sequence[str] = (),
    ) -> str:
        name = name or _default_job_name(task, {j.name for j in self.jobs})
        # Names become folders, Slurm job names and fields of '|'-separated sacct output.
        unusable = name[:1] == "." or "/" in name or "|" in name or not name.isprintable()
        if not name.strip() or unusable:
            raise LaunchError(
                f"invalid job name `{name}`: no '/', '|' or control characters, no leading '.'"
            )
        if len(name.encode()) > MAX_JOB_NAME:  # a folder name has at most 255 bytes
            raise LaunchError(
                f"job name `{name[:40]}...` is too long ({len(name.encode())} bytes; "
                f"at most {MAX_JOB_NAME})"
            )
        if any(j.name == name for j in self.jobs):
            raise LaunchError(f"job name `{name}` is used twice in experiment `{self.title}`")
        known = {j.name for j in self.jobs}
        for dep in dependencies:
            if dep not in known:
                raise LaunchError(f"job `{name}` depends on `{dep}`, which is not added before it")
        self.jobs.append(PlannedJob(name, task, executor, list(dependencies)))
        return name

    def effective_dependencies(self) -> dict[str, list[str]]:
        deps = {j.name: list(j.dependencies) for j in self.jobs}
        if self.sequential:
            for before, after in zip(self.jobs, self.jobs[1:], strict=False):
                if before.name not in deps[after.name]:
                    deps[after.name].append(before.name)
        return deps


def task_name(task: Any) -> str:
    """A readable default name for a task: the function's name, or the script's."""
    from core.serialize import StoredTask

    if isinstance(task, StoredTask):  # it knows its label from its document
        return task.label
    fn = getattr(task, "__fn_or_cls__", None)
    if fn is not None:
        return str(getattr(fn, "__name__", "job"))
    path = getattr(task, "path", None)
    if path:
        return Path(str(path)).stem or "script"
    return "script"


def _default_job_name(task: Any, taken: set[str]) -> str:
    base = task_name(task)
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


@dataclass(frozen=True)
class LogSource:
    """Where a viewer reads a job's log: a file on this machine that the job writes itself
    (``spool=False``), or a file in the store that the viewer fills from
    :meth:`Engine.logs` as it follows (``spool=True``, resumable from its size)."""

    path: Path
    spool: bool


class Engine:
    """One store + settings; every public method is safe to call from any front end."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self._monitor: Monitor | None = None

    @property
    def package_cache(self) -> Path:
        """Content-addressed archives (``<sha256>.tar.gz``), kept so relaunches reuse them."""
        return self.store.home / "packages"

    async def package(self, plan: Plan) -> list[str]:
        """Run each job's packager once (shared configs packaged once); returns warnings.

        A refusing policy raises (``PackagingError``) before anything is recorded. Jobs that
        already carry a package (a relaunch reusing its parent's archive) are left alone.
        """
        warnings: list[str] = []
        done: dict[str, Any] = {}
        for job in plan.jobs:
            if job.package is not None or job.executor.packager is None:
                continue
            from core.fsutil import tighten_private_dir
            from core.packaging import Packager, as_packager

            packager = as_packager(job.executor.packager)
            if type(packager) is Packager:
                continue
            key = _json(packager.to_dict())
            if key not in done:
                tighten_private_dir(self.package_cache)
                done[key] = await packager.package_async(self.package_cache)
                warnings.extend(done[key].warnings)
            job.package = done[key]
        return warnings

    @classmethod
    def from_environment(cls, home: str | Path | None = None) -> Engine:
        return cls(Store(resolve_home(home)), load_settings())

    def loop_restarted(self) -> None:
        """The engine loop died and a fresh one took over: drop what was bound to the old
        one (backend connections, the monitor's queues, the store's sqlite connection)."""
        registry.forget_all()
        self._monitor = None
        self.store.forget_connection()

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            from core.engine.monitor import Monitor

            self._monitor = Monitor(self.store)
            self._monitor.before_record = self._retry_failed
        return self._monitor

    async def _retry_failed(
        self, exp_id: str, reports: dict[str, StatusReport]
    ) -> dict[str, StatusReport]:
        """``retries=N``: re-submit failed jobs with attempts left (core.engine.retries)."""
        from core.engine.retries import retry_failed

        return await retry_failed(self, exp_id, reports)

    # -- composing -----------------------------------------------------------------------
    def profile(self, name: str | None = None) -> ExecutorProfile:
        return self.settings.profile(name)

    def job_spec(
        self,
        exp_id: str,
        job: PlannedJob,
        handles: dict[str, Handle],
        workdir: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> JobSpec:
        """The backend-facing description of one job (argv as a list, secrets apart)."""
        from core.config import Script
        from core.serialize import StoredTask

        job_dir = self.store.job_dir(exp_id, job.name)
        task_file = str(job_dir / TASK_FILE)
        env = dict(job.executor.env_vars)
        task = job.task
        if isinstance(task, StoredTask) and task.kind == "script":
            task = task.script()  # a stored Script document names no user code
        if isinstance(task, Script):
            argv = task.argv(sys.executable)
            env.update(task.env)
            runner_file = None
        else:
            argv = [sys.executable, "-m", RUNNER_MODULE, task_file]
            runner_file = task_file
        return JobSpec(
            experiment_id=exp_id,
            job_name=job.name,
            run_tag=launch_window.run_tag(exp_id, job.name),
            argv=argv,
            executor=job.executor,
            job_dir=str(job_dir),
            workdir=workdir,
            env=env,
            secret_env=resolve_secret_env(job.executor),
            dependencies=[handles[d] for d in job.dependencies if d in handles],
            task_file=runner_file,
            archive=str(job.package.archive) if job.package and job.package.archive else None,
            archive_sha256=job.package.sha256 if job.package else None,
            progress=progress,
        )

    def recipe_plan(
        self,
        workspace: Any,
        recipe: str,
        overrides: Sequence[str] = (),
        *,
        profile: str | None = None,
        title: str | None = None,
    ) -> Plan:
        """The one recipe → plan function: build the recipe, apply overrides, one job.

        ``workspace`` is a loaded :class:`core.recipes.Workspace`. This imports user code, so
        the app calls it only inside its workspace helper process, never in its own.
        """
        from core.engine.executor_overrides import apply_executor_overrides, split_overrides
        from core.nemo_compat import expand_override_files
        from core.overrides import apply_overrides

        found = workspace.get(recipe)
        overrides = expand_override_files(overrides)  # `@file.yaml`: its fields, in place
        # ``executor.nodes=2`` sets this launch's executor; every other override the task.
        task_overrides, executor_overrides = split_overrides(overrides)
        task = apply_overrides(found.make(), task_overrides, factories=workspace.factories)
        executor = apply_executor_overrides(self.profile(profile), executor_overrides)
        plan = Plan(
            title=title or found.name,
            workspace=workspace.source or None,
            recipe=found.name,
            overrides=list(overrides),
        )
        plan.add(task, executor, name=found.name)
        return plan

    def validate(self, plan: Plan) -> None:
        """Everything that can be checked before writing: names, profiles, secrets, backends."""
        if not plan.jobs:
            raise LaunchError(f"experiment `{plan.title}` has no jobs; add one with exp.add(...)")
        from core.engine.stall import StallConfigError, check_profile

        for job in plan.jobs:
            registry.backend_class(job.executor.backend)
            resolve_secret_env(job.executor)
            try:
                check_profile(job.executor)
            except StallConfigError as exc:
                raise LaunchError(f"job `{job.name}`: {exc}") from None
            retries = job.executor.retries
            if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
                raise LaunchError(f"job `{job.name}`: retries must be an integer >= 0")

    def preview(self, plan: Plan, *, preflight: bool = False) -> list[JobPreview]:
        """What each job will run: the call and its config tree, packaging, env (secrets
        redacted), workdir. Cheap, no side effects, no user code imported; see
        :mod:`core.engine.preview`. ``preflight`` also asks packagers for their warnings."""
        from core.engine.preview import preview_plan

        return preview_plan(plan, preflight=preflight)

    async def dryrun(self, plan: Plan) -> list[DryRun]:
        """What each job would submit, with no side effects on the store or any scheduler."""
        self.validate(plan)
        exp_id = "dryrun"
        workdir = os.getcwd()
        from core.engine.sweep_submit import dryrun_array

        arrayed = await dryrun_array(self, exp_id, plan)  # a sweep that is one array job
        if arrayed is not None:
            return [arrayed]
        fake = {
            j.name: Handle(j.executor.backend, j.executor.target(), f"<{j.name}>")
            for j in plan.jobs
        }
        deps = plan.effective_dependencies()
        out = []
        for job in plan.jobs:
            planned = dataclasses.replace(job, dependencies=deps[job.name])
            spec = self.job_spec(exp_id, planned, fake, workdir)
            out.append(await registry.get_backend(job.executor).dryrun(spec))
        return out

    # -- launching -----------------------------------------------------------------------
    def record(self, plan: Plan) -> ExperimentRecord:
        """Write the experiment with every job UNSUBMITTED (the intent), before any submit."""
        from core.serialize import StoredTask

        if (problem := launch_guard.launch_problem()) is not None:
            raise LaunchError(problem)  # a job launching again (see core.engine.launch_guard)
        stale_files.sweep_before_launch(self.store.home)  # what crashed launches left
        self.validate(plan)
        deps = plan.effective_dependencies()
        exp_id = self.store.new_id(plan.title)
        files: dict[str, dict[str, bytes | str]] = {}
        jobs = []
        for job in plan.jobs:
            stored = job.task if isinstance(job.task, StoredTask) else StoredTask.of(job.task)
            files[job.name] = {
                TASK_FILE: stored.document,
                EXECUTOR_FILE: _json(job.executor.to_dict()),
            }
            if stored.view is not None:
                files[job.name][VIEW_FILE] = _json(stored.view.to_dict())
            if job.package is not None:
                files[job.name][PROVENANCE_FILE] = _json(job.package.provenance.to_dict())
            if job.point is not None:
                files[job.name][POINT_FILE] = _json(job.point)
            jobs.append(
                JobRecord(
                    name=job.name,
                    kind=_kind(job.task),
                    backend=job.executor.backend,
                    profile=job.executor.profile_name,
                    dependencies=deps[job.name],
                )
            )
        from core.store.files import check_note, check_tags

        record = ExperimentRecord(
            id=exp_id,
            title=plan.title,
            created_at=time.time(),
            jobs=jobs,
            parent=plan.parent,
            tags=check_tags(list(plan.tags)),
            workspace=plan.workspace,
            recipe=plan.recipe,
            overrides=list(plan.overrides),
            note=check_note(plan.note),
            workdir=plan.workdir or os.getcwd(),
        )
        return self.store.create(record, files)

    async def launch(
        self,
        plan: Plan,
        *,
        on_event: OnLaunchEvent | None = None,
        confirm: Callable[[list[str]], Awaitable[bool]] | None = None,
    ) -> ExperimentRecord:
        """The one launch path: validate, package, record (intent first), submit in order.

        Every front end calls this. ``on_event`` receives this launch's progress
        (:mod:`core.engine.launch_events`), so overlapping launches never share state. When
        packaging warns (a dirty tree is not packaged) and ``confirm`` is given, it is asked
        before anything is written; declining raises :class:`NotLaunched`.
        """
        emit = on_event or _ignore
        self.validate(plan)
        warnings = await self.package(plan)
        for job in plan.jobs:
            pkg = job.package
            if pkg is not None and pkg.sha256:
                emit(Packaged(job.name, pkg.sha256, pkg.size, bool(pkg.reused)))
        for text in warnings:
            emit(PackagingWarning(text))
        if warnings and confirm is not None and not await confirm(warnings):
            raise NotLaunched(f"{plan.title}: not launched")
        record = self.record(plan)
        emit(Recorded(record))
        await self.submit_recorded(record.id, plan, on_event=emit)
        return self.store.load(record.id)

    async def submit_recorded(
        self, exp_id: str, plan: Plan, *, on_event: OnLaunchEvent | None = None
    ) -> None:
        """Submit the recorded jobs of ``plan`` in order; every outcome lands in the store."""
        emit = _guarded(on_event) if on_event is not None else _ignore
        deps = plan.effective_dependencies()
        # Where record() said it runs (a relaunch: the parent's directory, not the shell's).
        workdir = plan.workdir or self.store.load(exp_id).workdir or os.getcwd()
        handles: dict[str, Handle] = {}
        failed: dict[str, str] = {}
        from core.engine.sweep_submit import submit_as_array

        arrayed = await submit_as_array(self, exp_id, plan, emit)  # a sweep: one array job
        for job in plan.jobs:
            if job.name in arrayed:
                continue
            if self.store.load(exp_id).job(job.name).state.is_terminal:
                # Cancelled (or failed) while earlier jobs were being submitted: leave it.
                failed[job.name] = "ended before submission"
                emit(Submitted(job.name, JobState.CANCELLED, None, failed[job.name]))
                continue
            blocked = [d for d in deps[job.name] if d in failed]
            if blocked:
                reason = f"not submitted: dependency `{blocked[0]}` could not be submitted"
                self._set_unsubmittable(exp_id, job.name, JobState.CANCELLED, reason)
                failed[job.name] = reason
                emit(Submitted(job.name, JobState.CANCELLED, None, reason))
                continue
            planned = dataclasses.replace(job, dependencies=deps[job.name])
            progress = _upload_progress(emit, job.name)
            spec = self.job_spec(exp_id, planned, handles, workdir, progress)
            spec.held = True  # released once the handle is recorded (core.engine.launch_window)
            spec.env.update(launch_guard.job_env())  # its depth; last, so not overridable
            try:
                handle = await registry.get_backend(job.executor).submit(spec)
            except Exception as exc:  # any failure is recorded on the job, never left UNSUBMITTED
                detail = str(exc) if isinstance(exc, (BackendError, OSError)) else repr(exc)
                reason = f"submit failed: {detail}"
                self._set_unsubmittable(exp_id, job.name, JobState.FAILED, reason)
                failed[job.name] = reason
                emit(Submitted(job.name, JobState.FAILED, None, reason))
                continue
            launch_window.crash_point("after-submit")  # tests only: the launch window
            try:
                recorded = self._set_submitted(exp_id, job.name, handle, workdir)
            except Exception as exc:  # e.g. a full disk: never leave a job running untracked
                with contextlib.suppress(Exception):
                    await registry.get_backend(job.executor).cancel(handle)
                reason = f"submitted, but its handle could not be recorded (cancelled): {exc}"
                with contextlib.suppress(Exception):
                    self._set_unsubmittable(exp_id, job.name, JobState.FAILED, reason)
                failed[job.name] = reason
                emit(Submitted(job.name, JobState.FAILED, None, reason))
                continue
            handles[job.name] = handle
            if not recorded:
                # A cancel landed while this job was being submitted: honour it now.
                await registry.get_backend(job.executor).cancel(handle)
                emit(Submitted(job.name, JobState.CANCELLED, handle, "cancelled while submitting"))
            else:
                backend = registry.get_backend(job.executor)
                await launch_window.release(backend, handle, self.store, exp_id, job.name)
                emit(Submitted(job.name, JobState.SUBMITTED, handle, None))

    def _set_submitted(
        self, exp_id: str, job_name: str, handle: Handle, workdir: str | None = None
    ) -> bool:
        """Record the handle (and where it was launched from, for retries); False when the
        job had already ended (e.g. cancelled)."""
        now = time.time()
        alive = True

        def mutate(record: ExperimentRecord) -> None:
            nonlocal alive
            job = record.job(job_name)
            job.handle = handle
            if workdir is not None:
                job.workdir = workdir
            if job.state.is_terminal:
                alive = False
                return
            job.state = JobState.SUBMITTED
            job.submitted_at = now
            job.observed_at = now
            job.source = "engine"

        self.store.update(exp_id, mutate)
        self.store.append_event(
            exp_id, {"kind": "submitted", "job": job_name, "handle": str(handle)}
        )
        return alive

    def _set_unsubmittable(self, exp_id: str, job_name: str, state: JobState, reason: str) -> None:
        report = StatusReport(state=state, source="engine", reason=reason)
        self.store.record_statuses(exp_id, {job_name: report})

    # -- watching ------------------------------------------------------------------------
    async def refresh(self, exp_ids: Sequence[str] | None = None) -> list[StateChange]:
        """One monitor tick (batched polls) for the given experiments, or every live one."""
        return await self.monitor.tick(exp_ids)

    async def wait(
        self,
        exp_id: str,
        on_change: Callable[[StateChange], Awaitable[None] | None] | None = None,
        *,
        max_interval: float = 1.0,
    ) -> ExperimentRecord:
        """Poll until every job has ended.

        Between polls it waits on the backends' change notices (``wait_changed``, see
        :data:`core.engine.protocol.OPTIONAL_CAPABILITIES`) when every live job's backend has
        them, so a job's end is seen when it happens; otherwise it sleeps, starting small
        and backing off to ``max_interval``.
        """
        interval = 0.02
        while True:
            for change in await self.refresh([exp_id]):
                if on_change is not None:
                    result = on_change(change)
                    if asyncio.iscoroutine(result):
                        await result
            record = self.store.load(exp_id)
            if all(j.state.is_terminal for j in record.jobs):
                return record
            if not await self._wait_changed(record, max_interval):
                await asyncio.sleep(interval)
                interval = min(max_interval, interval * 1.5)

    async def _wait_changed(self, record: ExperimentRecord, timeout: float) -> bool:
        """Wait on ``wait_changed`` of the live jobs' backends; False (at once) if one lacks it."""
        groups: dict[int, tuple[Any, list[Handle]]] = {}
        for job in record.jobs:
            if job.state.is_terminal:
                continue
            if not job.handle:
                return False
            backend = self.backend_for(record.id, job.name)
            if getattr(backend, "wait_changed", None) is None:
                return False
            groups.setdefault(id(backend), (backend, []))[1].append(job.handle)
        waits = [asyncio.ensure_future(b.wait_changed(hs, timeout)) for b, hs in groups.values()]
        if not waits:
            return False
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        # A backend whose notices failed falls back to sleeping, never to a busy loop.
        return all(t.exception() is None for t in done)

    # -- acting on recorded experiments -----------------------------------------------------
    def executor_of(self, exp_id: str, job: str) -> ExecutorProfile:
        data = self.store.read_job_json(exp_id, job, EXECUTOR_FILE)
        try:
            profile = profile_from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DamagedFileError(f"{exp_id}/{job}/{EXECUTOR_FILE}: {exc}") from None
        configured = self.settings.profiles.get(profile.profile_name or "")
        if configured is not None:
            # Secret values live only in config.toml / the environment; take them from there.
            current = self.settings.profile(profile.profile_name)
            profile.secret_env = {n: current.secret_env.get(n) for n in profile.secret_env}
        return profile

    def task_of(self, exp_id: str, job: str) -> Any:
        """The stored task as a live object. Imports user code: never call it in the app."""
        from core.serialize import loads

        return self._read_task(exp_id, job, loads)

    def stored_task(self, exp_id: str, job: str) -> Any:
        """The stored task as its document (a :class:`core.serialize.StoredTask`), with its
        view when one was recorded. Imports nothing the task names: safe in the app."""
        from core.serialize import StoredTask

        view = self.task_view(exp_id, job, recorded_only=True)
        return self._read_task(exp_id, job, lambda text: StoredTask.from_text(text, view))

    def _read_task(self, exp_id: str, job: str, parse: Callable[[str], Any]) -> Any:
        """``parse`` the job's task.json; any damage is one-line :class:`DamagedFileError`."""
        raw = self.store.read_job_file(exp_id, job, TASK_FILE)
        try:
            return parse(raw.decode())
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            detail = str(exc)[:160] or type(exc).__name__
            raise DamagedFileError(f"{exp_id}/{job}/{TASK_FILE} cannot be read: {detail}") from None

    def task_view(
        self, exp_id: str, job: str, *, recorded_only: bool = False, from_document: bool = False
    ) -> Any:
        """What Detail shows of a job's task, from stored JSON only (no user code).

        The recorded view when there is one; else (runs recorded before views existed) the
        values in the document, without signature defaults — or None with ``recorded_only``.
        ``from_document`` skips the recorded view (to compare two runs on equal terms).
        """
        import json

        from core.serialize import SerializeError, TaskView

        raw = None
        if not from_document:
            with contextlib.suppress(FileNotFoundError):
                raw = self.store.read_job_file(exp_id, job, VIEW_FILE)
        if raw is not None:
            try:
                return TaskView.from_dict(json.loads(raw))
            except (ValueError, RecursionError, SerializeError):
                pass  # a damaged view: fall back to the document itself
        if recorded_only:
            return None
        text = self.store.read_job_file(exp_id, job, TASK_FILE)
        try:
            return TaskView.of_document(json.loads(text))
        except RecursionError:
            raise SerializeError("task document is nested too deeply") from None
        except ValueError as exc:
            raise SerializeError(f"task file is not valid JSON: {exc}") from None

    def rebuilt_tasks(self, exp_id: str, overrides: Sequence[str]) -> dict[str, Any]:
        """Live tasks of the jobs that ``overrides`` touch, with them applied.

        Imports user code (stored callables, workspace factories): the CLI calls it in its
        own process, the app only in its workspace helper process.
        """
        from core.overrides import apply_overrides

        record = self.store.load(exp_id)
        factories = self._factories(record.workspace)
        per_job = _split_overrides(overrides, [j.name for j in record.jobs])
        return {
            name: apply_overrides(self.task_of(exp_id, name), items, factories=factories)
            for name, items in per_job.items()
            if items
        }

    def backend_for(self, exp_id: str, job: str) -> Any:
        return registry.get_backend(self.executor_of(exp_id, job))

    async def cancel(self, exp_id: str, job: str | None = None) -> list[str]:
        """Cancel one job or every live job; returns the names asked to stop."""
        record = self.store.load(exp_id)
        targets = [record.job(job)] if job else list(record.jobs)
        asked = []
        errors = []
        from core.engine.sweep_submit import cancel_batched

        batched = await cancel_batched(self, exp_id, targets)  # e.g. a sweep's array tasks
        asked.extend(batched)
        for rec in targets:
            if rec.state.is_terminal or rec.name in batched:
                continue
            self.store.append_event(exp_id, {"kind": "cancel-requested", "job": rec.name})
            try:
                if rec.handle is None:  # found by its run tag, or marked cancelled
                    rec.handle = await launch_window.handle_to_cancel(
                        self.backend_for(exp_id, rec.name), self.store, exp_id, rec.name
                    )
                if rec.handle is not None:
                    await self.backend_for(exp_id, rec.name).cancel(rec.handle)
            except Exception as exc:  # one job's failure must not spare the others
                errors.append(f"{rec.name}: {exc}")
                continue
            asked.append(rec.name)
        await self.refresh([exp_id])
        if errors:
            raise BackendError(f"cancel failed for {'; '.join(errors)}")
        return asked

    async def logs(
        self,
        exp_id: str,
        job: str | None = None,
        *,
        follow: bool = False,
        offset: int = 0,
        stream: LogStream = "stdout",
        rank: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Log bytes of one job (the only job when ``job`` is None).

        ``rank`` keeps only that rank's lines of a launcher's log (``[rank<N>]:`` prefixed,
        see core.launchers), without the prefix; ``offset`` is then in the whole log.
        """
        record = self.store.load(exp_id)
        rec = record.job(job) if job else _only_job(record)
        if rec.handle is None:
            raise StoreError(
                f"job `{rec.name}` of {exp_id} was never submitted ({rec.state.value})"
            )
        kept = self._imported_log(exp_id, rec, stream)
        if kept is not None:  # an imported job's output, copied at import (core.importers)
            data = kept.read_bytes()[offset:]
            if data:
                yield data
            return
        backend = self.backend_for(exp_id, rec.name)
        where: dict[str, int] = {}
        node_of = getattr(backend, "node_of_rank", None)
        if rank is not None and node_of is not None:  # one log per node: the rank's node
            node = node_of(rec.handle, rank)
            if node is not None:
                where["rank"] = node
        chunks = backend.logs(rec.handle, offset=offset, follow=follow, stream=stream, **where)
        if rank is None:
            async for chunk in chunks:
                yield chunk
            return
        from core.launchers import RankFilter

        picked = RankFilter(rank)
        async for chunk in chunks:
            if out := picked.feed(chunk):
                yield out
        if rest := picked.flush():
            yield rest

    def _imported_log(self, exp_id: str, rec: JobRecord, stream: LogStream) -> Path | None:
        """The copy of an ended imported job's log (its scheduler's files are not ours)."""
        if not rec.state.is_terminal or rec.backend == "local":  # local: the backend reads it
            return None
        job_dir = self.store.job_dir(exp_id, rec.name)
        kept = job_dir / "logs" / f"{stream}.log"
        if (job_dir / IMPORT_FILE).is_file() and kept.is_file():
            return kept
        return None

    def log_source(self, exp_id: str, job: str, stream: LogStream = "stdout") -> LogSource:
        """Where to read a job's log from (blocking; front ends never look at backend files)."""
        rec = self.store.load(exp_id).job(job)
        if rec.handle is None:
            raise StoreError(f"job `{job}` of {exp_id} was never submitted ({rec.state.value})")
        backend = self.backend_for(exp_id, job)
        in_place = getattr(backend, "local_log_path", None)
        if in_place is not None:
            with contextlib.suppress(BackendError):  # e.g. the job's files are gone
                path = in_place(rec.handle, stream)
                if path is not None:
                    return LogSource(Path(path), spool=False)
        logs = self.store.job_dir(exp_id, job) / "logs"
        kept = logs / f"{stream}.log"  # a copy the store keeps of a job that has ended
        if kept.is_file():
            return LogSource(kept, spool=False)
        return LogSource(logs / f".fetched-{stream}.log", spool=True)

    async def spool_log(self, exp_id: str, job: str, stream: LogStream, path: Path) -> None:
        """Follow a job's log into ``path`` (a :class:`LogSource` with ``spool``), resuming
        from the bytes already there; ends when the job has ended and all was copied."""
        path.parent.mkdir(parents=True, exist_ok=True)
        offset = path.stat().st_size if path.exists() else 0
        with path.open("ab") as out:
            async for chunk in self.logs(exp_id, job, follow=True, offset=offset, stream=stream):
                out.write(chunk)
                out.flush()

    def relaunch_plan(
        self,
        exp_id: str,
        overrides: Sequence[str] = (),
        *,
        executor: str | None = None,
        repackage: bool = False,
        tasks: dict[str, Any] | None = None,
    ) -> Plan:
        """A new plan from a recorded experiment, with overrides applied; parent is set.

        Jobs no override touches keep their stored document as is (nothing is imported, so
        a relaunch as-is is safe in the app). ``tasks`` gives the already rebuilt tasks of
        the touched jobs (the app gets them from its workspace helper); without it they are
        rebuilt here with :meth:`rebuilt_tasks`. The parent's archive is reused when it is
        still in the package cache (same code, nothing to upload); ``repackage`` packages
        the current tree instead.
        """
        from core.engine.executor_overrides import apply_executor_overrides, split_overrides

        record = self.store.load(exp_id)
        # ``executor.time=2:00:00`` changes every job's executor for this launch (recorded
        # with the other overrides); the rest are the tasks'.
        task_overrides, executor_overrides = split_overrides(overrides)
        if tasks is None:
            tasks = self.rebuilt_tasks(exp_id, task_overrides) if task_overrides else {}
        plan = Plan(
            title=record.title,
            parent=record.id,
            tags=list(record.tags),
            workspace=record.workspace,
            recipe=record.recipe,
            overrides=[*record.overrides, *overrides],
            workdir=record.workdir,
        )
        for job in record.jobs:
            task = tasks.get(job.name)
            if task is None:
                task = self.stored_task(exp_id, job.name)
            profile = self.profile(executor) if executor else self.executor_of(exp_id, job.name)
            profile = apply_executor_overrides(profile, executor_overrides)
            package = None if repackage else self.recorded_package(exp_id, job.name)
            plan.jobs.append(PlannedJob(job.name, task, profile, list(job.dependencies), package))
        return plan

    def provenance_of(self, exp_id: str, job: str) -> dict[str, Any] | None:
        """The stored code provenance of a job, or None when it ran without packaging."""
        import json

        try:
            return dict(json.loads(self.store.read_job_file(exp_id, job, PROVENANCE_FILE)))
        except FileNotFoundError:
            return None

    def recorded_package(self, exp_id: str, job: str) -> Any:
        """The job's archive as a reusable package, if it is still cached and intact."""
        from core.packaging import PackageResult, Provenance, file_sha256

        data = self.provenance_of(exp_id, job)
        sha = (data or {}).get("archive_sha256")
        if not data or not sha:
            return None
        archive = self.package_cache / f"{sha}.tar.gz"
        if not archive.is_file() or file_sha256(archive) != sha:
            return None
        return PackageResult(
            archive=archive,
            sha256=sha,
            size=archive.stat().st_size,
            provenance=Provenance.from_dict(data),
            reused=True,
        )

    def _factories(self, workspace: str | None) -> dict[str, Any]:
        if not workspace:
            return {}
        from core.recipes import load_workspace

        try:
            return dict(load_workspace(workspace).factories)
        except Exception:
            return {}


def _only_job(record: ExperimentRecord) -> JobRecord:
    if len(record.jobs) != 1:
        names = ", ".join(j.name for j in record.jobs)
        raise StoreError(f"experiment {record.id} has several jobs ({names}); name one")
    return record.jobs[0]


def _split_overrides(overrides: Sequence[str], job_names: list[str]) -> dict[str, list[str]]:
    """Route ``job.path=value`` to that job; other overrides go to every job."""
    out: dict[str, list[str]] = {name: [] for name in job_names}
    for text in overrides:
        head = text.split("=", 1)[0].split(".", 1)[0]
        if len(job_names) > 1 and head in out and "." in text.split("=", 1)[0]:
            out[head].append(text[len(head) + 1 :])
        else:
            for name in job_names:
                out[name].append(text)
    return out


def _ignore(event: LaunchEvent) -> None:
    return None


def _guarded(on_event: OnLaunchEvent) -> OnLaunchEvent:
    """A front end's presenter that raises must not stop the submission of later jobs."""

    def emit(event: LaunchEvent) -> None:
        with contextlib.suppress(Exception):
            on_event(event)

    return emit


def _upload_progress(emit: OnLaunchEvent, job: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        emit(Uploading(job, done, total))

    return report


def _kind(task: Any) -> str:
    from core.config import task_kind
    from core.serialize import StoredTask

    return task.kind if isinstance(task, StoredTask) else task_kind(task)


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True) + "\n"
