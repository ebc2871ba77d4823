"""The engine: turns tasks into recorded, submitted, watched jobs. Shared by CLI, API and app.

Order of a launch is fixed on purpose (ARCHITECTURE.md, "data flow"): validate everything,
record the experiment with every job UNSUBMITTED (intent first), then submit job by job,
recording each handle the moment it exists. A crash between two steps leaves a store that
tells the truth about what happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import launch_guard, launch_window, registry, stale_files
from core.executors import ExecutorProfile, LocalExecutor, profile_from_dict
from core.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.settings import Settings, load_settings, resolve_home, resolve_secret_env
from core.states import JobState, StatusReport
from core.store import (
    ExperimentRecord,
    JobRecord,
    StateChange,
    Store,
    StoreError,
)

if TYPE_CHECKING:
    from core.monitor import Monitor

TASK_FILE = "task.json"
PROVENANCE_FILE = "provenance.json"
EXECUTOR_FILE = "executor.json"
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


class Engine:
    """One store + settings; every public method is safe to call from any front end."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self._monitor: Monitor | None = None
        #: Front ends set this to show upload progress (bytes done, bytes total).
        self.upload_progress: Callable[[int, int], None] | None = None

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
            from core.fsutil import ensure_private_dir
            from core.packaging import Packager, as_packager

            packager = as_packager(job.executor.packager)
            if type(packager) is Packager:
                continue
            key = _json(packager.to_dict())
            if key not in done:
                ensure_private_dir(self.package_cache)
                done[key] = await packager.package_async(self.package_cache)
                warnings.extend(done[key].warnings)
            job.package = done[key]
        return warnings

    @classmethod
    def from_environment(cls, home: str | Path | None = None) -> Engine:
        return cls(Store(resolve_home(home)), load_settings())

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            from core.monitor import Monitor

            self._monitor = Monitor(self.store)
        return self._monitor

    # -- composing -----------------------------------------------------------------------
    def profile(self, name: str | None = None) -> ExecutorProfile:
        return self.settings.profile(name)

    def job_spec(
        self, exp_id: str, job: PlannedJob, handles: dict[str, Handle], workdir: str
    ) -> JobSpec:
        """The backend-facing description of one job (argv as a list, secrets apart)."""
        from core.config import Script

        job_dir = self.store.job_dir(exp_id, job.name)
        task_file = str(job_dir / TASK_FILE)
        env = dict(job.executor.env_vars)
        if isinstance(job.task, Script):
            argv = job.task.argv(sys.executable)
            env.update(job.task.env)
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
            progress=self.upload_progress,
        )

    def validate(self, plan: Plan) -> None:
        """Everything that can be checked before writing: names, profiles, secrets, backends."""
        if not plan.jobs:
            raise LaunchError(f"experiment `{plan.title}` has no jobs; add one with exp.add(...)")
        for job in plan.jobs:
            registry.backend_class(job.executor.backend)
            resolve_secret_env(job.executor)

    async def dryrun(self, plan: Plan) -> list[DryRun]:
        """What each job would submit, with no side effects on the store or any scheduler."""
        self.validate(plan)
        exp_id = "dryrun"
        workdir = os.getcwd()
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
        from core.serialize import dumps

        if (problem := launch_guard.launch_problem()) is not None:
            raise LaunchError(problem)  # a job launching again (see core.launch_guard)
        stale_files.sweep_before_launch(self.store.home)  # what crashed launches left
        self.validate(plan)
        deps = plan.effective_dependencies()
        exp_id = self.store.new_id(plan.title)
        files: dict[str, dict[str, bytes | str]] = {}
        jobs = []
        for job in plan.jobs:
            files[job.name] = {
                TASK_FILE: dumps(job.task),
                EXECUTOR_FILE: _json(job.executor.to_dict()),
            }
            if job.package is not None:
                files[job.name][PROVENANCE_FILE] = _json(job.package.provenance.to_dict())
            jobs.append(
                JobRecord(
                    name=job.name,
                    kind=_kind(job.task),
                    backend=job.executor.backend,
                    profile=job.executor.profile_name,
                    dependencies=deps[job.name],
                )
            )
        record = ExperimentRecord(
            id=exp_id,
            title=plan.title,
            created_at=time.time(),
            jobs=jobs,
            parent=plan.parent,
            tags=list(plan.tags),
            workspace=plan.workspace,
            recipe=plan.recipe,
            overrides=list(plan.overrides),
        )
        return self.store.create(record, files)

    async def launch(self, plan: Plan) -> ExperimentRecord:
        """Package, record, then submit every job in dependency order."""
        self.validate(plan)
        await self.package(plan)
        record = self.record(plan)
        await self.submit_recorded(record.id, plan)
        return self.store.load(record.id)

    async def submit_recorded(self, exp_id: str, plan: Plan) -> None:
        deps = plan.effective_dependencies()
        workdir = os.getcwd()
        handles: dict[str, Handle] = {}
        failed: dict[str, str] = {}
        for job in plan.jobs:
            if self.store.load(exp_id).job(job.name).state.is_terminal:
                # Cancelled (or failed) while earlier jobs were being submitted: leave it.
                failed[job.name] = "ended before submission"
                continue
            blocked = [d for d in deps[job.name] if d in failed]
            if blocked:
                reason = f"not submitted: dependency `{blocked[0]}` could not be submitted"
                self._set_unsubmittable(exp_id, job.name, JobState.CANCELLED, reason)
                failed[job.name] = reason
                continue
            planned = dataclasses.replace(job, dependencies=deps[job.name])
            spec = self.job_spec(exp_id, planned, handles, workdir)
            spec.held = True  # released once the handle is recorded (core.launch_window)
            spec.env.update(launch_guard.job_env())  # its depth; last, so not overridable
            try:
                handle = await registry.get_backend(job.executor).submit(spec)
            except Exception as exc:  # any failure is recorded on the job, never left UNSUBMITTED
                detail = str(exc) if isinstance(exc, (BackendError, OSError)) else repr(exc)
                reason = f"submit failed: {detail}"
                self._set_unsubmittable(exp_id, job.name, JobState.FAILED, reason)
                failed[job.name] = reason
                continue
            launch_window.crash_point("after-submit")  # tests only: the launch window
            handles[job.name] = handle
            if not self._set_submitted(exp_id, job.name, handle):
                # A cancel landed while this job was being submitted: honour it now.
                await registry.get_backend(job.executor).cancel(handle)
            else:
                backend = registry.get_backend(job.executor)
                await launch_window.release(backend, handle, self.store, exp_id, job.name)

    def _set_submitted(self, exp_id: str, job_name: str, handle: Handle) -> bool:
        """Record the handle; False when the job had already ended (e.g. cancelled)."""
        now = time.time()
        alive = True

        def mutate(record: ExperimentRecord) -> None:
            nonlocal alive
            job = record.job(job_name)
            job.handle = handle
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
        """Poll until every job has ended; the interval starts small and backs off."""
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
            await asyncio.sleep(interval)
            interval = min(max_interval, interval * 1.5)

    # -- acting on recorded experiments -----------------------------------------------------
    def executor_of(self, exp_id: str, job: str) -> ExecutorProfile:
        import json

        data = json.loads(self.store.read_job_file(exp_id, job, EXECUTOR_FILE))
        profile = profile_from_dict(data)
        configured = self.settings.profiles.get(profile.profile_name or "")
        if configured is not None:
            # Secret values live only in config.toml / the environment; take them from there.
            current = self.settings.profile(profile.profile_name)
            profile.secret_env = {n: current.secret_env.get(n) for n in profile.secret_env}
        return profile

    def task_of(self, exp_id: str, job: str) -> Any:
        from core.serialize import loads

        return loads(self.store.read_job_file(exp_id, job, TASK_FILE).decode())

    def backend_for(self, exp_id: str, job: str) -> Any:
        return registry.get_backend(self.executor_of(exp_id, job))

    async def cancel(self, exp_id: str, job: str | None = None) -> list[str]:
        """Cancel one job or every live job; returns the names asked to stop."""
        record = self.store.load(exp_id)
        targets = [record.job(job)] if job else list(record.jobs)
        asked = []
        errors = []
        for rec in targets:
            if rec.state.is_terminal:
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
    ) -> AsyncIterator[bytes]:
        """Log bytes of one job (the only job when ``job`` is None)."""
        record = self.store.load(exp_id)
        rec = record.job(job) if job else _only_job(record)
        if rec.handle is None:
            raise StoreError(
                f"job `{rec.name}` of {exp_id} was never submitted ({rec.state.value})"
            )
        backend = self.backend_for(exp_id, rec.name)
        async for chunk in backend.logs(rec.handle, offset=offset, follow=follow, stream=stream):
            yield chunk

    def relaunch_plan(
        self,
        exp_id: str,
        overrides: Sequence[str] = (),
        *,
        executor: str | None = None,
        repackage: bool = False,
    ) -> Plan:
        """A new plan from a recorded experiment, with overrides applied; parent is set.

        The parent's archive is reused when it is still in the package cache (same code,
        nothing to upload); ``repackage`` packages the current tree instead.
        """
        from core.overrides import apply_overrides

        record = self.store.load(exp_id)
        factories = self._factories(record.workspace)
        per_job = _split_overrides(overrides, [j.name for j in record.jobs])
        plan = Plan(
            title=record.title,
            parent=record.id,
            tags=list(record.tags),
            workspace=record.workspace,
            recipe=record.recipe,
            overrides=[*record.overrides, *overrides],
        )
        for job in record.jobs:
            task = self.task_of(exp_id, job.name)
            if per_job.get(job.name):
                task = apply_overrides(task, per_job[job.name], factories=factories)
            profile = self.profile(executor) if executor else self.executor_of(exp_id, job.name)
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


def _kind(task: Any) -> str:
    from core.config import task_kind

    return task_kind(task)


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def default_executor() -> ExecutorProfile:
    return LocalExecutor(profile_name="local")
