"""NeMo Run-style Python API over the engine: ``Experiment`` and ``run``.

Differences users will notice, on purpose: ``run()`` returns the outcome and raises
:class:`RunFailedError` on failure (NeMo Run's returns None); ``from_title`` picks the newest
by creation time recorded in the manifest, not by file ctime.
"""

from __future__ import annotations

import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.engine import Engine, Plan, launch_guard, task_name
from core.engine.executors import ExecutorProfile
from core.engine.protocol import DryRun, LogStream
from core.engine.states import JobState
from core.store import ExperimentRecord, ExperimentSummary

if TYPE_CHECKING:
    from core.engine.job_output import JobFailure

T = TypeVar("T")


class RunFailedError(RuntimeError):
    """A job ended FAILED or CANCELLED; ``record`` holds the experiment as stored.

    ``failures`` says what each job that did not succeed left (see
    :class:`core.engine.job_output.JobFailure`); ``exc_type``, ``exc_message``,
    ``stderr_tail`` and ``log_path`` are the first one's, for the common one-job case.
    """

    def __init__(
        self, record: ExperimentRecord, failures: Sequence[JobFailure] | None = None
    ) -> None:
        from core.engine.job_output import JobFailure

        if failures is None:
            failures = [
                JobFailure(j.name, j.state.value, j.exit_code, j.reason)
                for j in record.jobs
                if j.state is not JobState.SUCCEEDED
            ]
        self.record = record
        self.failures = list(failures)
        first = self.failures[0] if self.failures else None
        self.exc_type = first.exc_type if first else None
        self.exc_message = first.exc_message if first else None
        self.stderr_tail = list(first.stderr_tail) if first else []
        self.log_path = first.log_path if first else None
        from core.textsafe import escape_cell

        # The message is printed wherever the error surfaces (a terminal, a notebook): the
        # job's stderr and reasons in it are text, their escape sequences shown, not sent.
        message = f"experiment {record.id} did not succeed: " + "; ".join(
            escape_cell(f.describe()) for f in self.failures
        )
        if self.stderr_tail:
            message += "\n  last stderr lines:\n" + "\n".join(
                f"    {escape_cell(line)}" for line in self.stderr_tail[-5:]
            )
        if self.log_path:
            message += f"\n  log: {self.log_path}"
        super().__init__(message)


def _engine(home: str | Path | None) -> Engine:
    return Engine.from_environment(home)


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run an engine coroutine to completion on the process's one engine loop.

    One loop for every call, so backend connections (one SSH connection per host) are made
    once and reused by ``run()``, ``status()`` and ``logs()``. Works from a notebook too: the
    caller's own event loop (if any) is merely blocked while the call runs.
    """
    from core.engine.loop_thread import shared_loop

    return shared_loop().run_sync(coro)


class Experiment:
    """A titled group of jobs launched and tracked together.

    ``with Experiment("sweep") as exp: exp.add(task, name="a"); exp.run()``
    """

    def __init__(
        self,
        title: str,
        executor: ExecutorProfile | None = None,
        *,
        home: str | Path | None = None,
        tags: Sequence[str] = (),
        engine: Engine | None = None,
        note: str = "",
    ) -> None:
        self.engine = engine or _engine(home)
        self.executor = executor
        self.plan = Plan(title=title, tags=list(tags), note=note)
        self.id: str | None = None
        #: Set when run() was skipped because a job is importing this script (see
        #: core.engine.launch_guard): status(), logs(), wait() and cancel() then do nothing.
        self.skipped: ExperimentRecord | None = None

    @property
    def title(self) -> str:
        return self.plan.title

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add(
        self,
        task: Any,
        executor: ExecutorProfile | None = None,
        name: str | None = None,
        dependencies: Sequence[str] = (),
        plugins: Sequence[Any] = (),
    ) -> str:
        """Add a job; returns its id (its name) to use in ``dependencies`` of later jobs.

        ``plugins`` (``run.Plugin``) get ``setup(task, executor)`` now, before launch, on
        this job's own copy of the executor (core.nemo_compat)."""
        if self.id is not None:
            raise RuntimeError(f"experiment {self.id} was already launched; use reset()")
        profile = executor or self.executor or self.engine.profile()
        if plugins:
            from core.nemo_compat import apply_plugins

            task, profile = apply_plugins(plugins, task, profile)
        return self.plan.add(task, profile, name=name, dependencies=dependencies)

    def dryrun(self, *, print_out: bool = True) -> list[DryRun]:
        """Show what would be submitted; writes nothing. Printed as text: a task's strings
        (scripts, arguments) never reach the terminal as control sequences."""
        from core.textsafe import sanitize_terminal

        results: list[DryRun] = _sync(self.engine.dryrun(self.plan))
        if print_out:
            for result in results:
                shown = f"# {result.backend}: {result.summary}\n" + "".join(
                    f"## {name}\n{text}\n" for name, text in result.artifacts.items()
                )
                print(sanitize_terminal(shown, keep_sgr=False), end="")
        return results

    def run(
        self, sequential: bool = False, detach: bool = False, *, stream: bool = True
    ) -> ExperimentRecord:
        """Record and submit; unless ``detach``, wait for every job to end, its output
        streaming to ``sys.stdout``/``sys.stderr`` as the CLI's does (``stream=False``:
        quietly).

        Inside a job that is importing this script, nothing is launched: a warning names the
        fix and a stand-in record (every job UNSUBMITTED, stored nowhere) is returned.
        """
        if launch_guard.in_task_import():
            return self._skip("exp.run()")
        self.plan.sequential = sequential
        record: ExperimentRecord = _sync(self.engine.launch(self.plan))
        self.id = record.id
        if detach:
            return record
        return self.wait(stream=stream)

    def _skip(self, call: str) -> ExperimentRecord:
        launch_guard.warn_skipped(call)
        self.skipped = launch_guard.skipped_record(self.plan, f"not launched: {call} {_SKIP}")
        return self.skipped

    def wait(self, *, stream: bool = False) -> ExperimentRecord:
        """Wait for every job to end; ``stream`` prints their output meanwhile."""
        if self.skipped is not None:
            return self.skipped
        if self.id is None:
            raise RuntimeError("experiment not launched yet")
        if stream:
            from core.engine.job_output import wait_streaming

            streamed: ExperimentRecord = _sync(wait_streaming(self.engine, self.id))
            return streamed
        result: ExperimentRecord = _sync(self.engine.wait(self.id))
        return result

    def failures(self) -> list[JobFailure]:
        """What each job that did not succeed left: exception, stderr tail, log path."""
        from core.engine.job_output import failures_of

        return list(_sync(failures_of(self.engine, self.record)))

    def reset(self) -> Experiment:
        """A fresh copy of this experiment (same jobs) that will run under a new id."""
        clone = Experiment(self.plan.title, self.executor, engine=self.engine, tags=self.plan.tags)
        clone.plan.jobs = list(self.plan.jobs)
        clone.plan.parent = self.id
        return clone

    def _require_id(self) -> str:
        if self.id is None:
            raise RuntimeError("experiment not launched yet")
        return self.id

    def status(self, *, refresh: bool = True, return_dict: bool = False) -> dict[str, Any]:
        """Each job's state; ``return_dict`` (NeMo Run's) gives per job ``status``,
        ``handle``, ``executor`` (backend) and ``local_dir`` instead."""
        if self.skipped is not None:
            record = self.skipped
        else:
            exp_id = self._require_id()
            if refresh:
                _sync(self.engine.refresh([exp_id]))
            record = self.engine.store.load(exp_id)
        if not return_dict:
            return {j.name: j.state for j in record.jobs}
        return {
            j.name: {
                "status": j.state,
                "handle": str(j.handle) if j.handle else None,
                "executor": j.backend,
                "job_id": j.handle.job_id if j.handle else None,
                "local_dir": None
                if self.skipped is not None
                else str(self.engine.store.job_dir(record.id, j.name)),
            }
            for j in record.jobs
        }

    def logs(
        self, job: str | None = None, *, stream: LogStream = "stdout", regex: str | None = None
    ) -> str:
        """The job's output; with ``regex`` (NeMo Run's), only the lines it matches."""
        if regex is not None:
            import re

            pattern = re.compile(regex)
            text = self.logs(job, stream=stream)
            return "".join(line for line in text.splitlines(True) if pattern.search(line))
        if self.skipped is not None:
            return ""
        exp_id = self._require_id()

        async def collect() -> bytes:
            chunks = [c async for c in self.engine.logs(exp_id, job, stream=stream)]
            return b"".join(chunks)

        return _sync(collect()).decode(errors="replace")

    def cancel(self, job: str | None = None) -> list[str]:
        if self.skipped is not None:
            return []
        return _sync(self.engine.cancel(self._require_id(), job))

    @property
    def record(self) -> ExperimentRecord:
        if self.skipped is not None:
            return self.skipped
        return self.engine.store.load(self._require_id())

    @classmethod
    def from_id(cls, exp_id: str, *, home: str | Path | None = None) -> Experiment:
        engine = _engine(home)
        record = engine.store.load(engine.store.resolve(exp_id))
        exp = cls(record.title, engine=engine, tags=record.tags)
        exp.id = record.id
        return exp

    @classmethod
    def from_title(cls, title: str, *, home: str | Path | None = None) -> Experiment:
        engine = _engine(home)
        matches = [s for s in engine.store.list() if s.title == title]
        if not matches:
            from core.store import ExperimentNotFound

            raise ExperimentNotFound(f"no experiment titled `{title}`")
        newest = max(matches, key=lambda s: (s.created_at, s.id))
        return cls.from_id(newest.id, home=home)

    @classmethod
    def catalog(
        cls, title: str | None = None, *, home: str | Path | None = None
    ) -> list[ExperimentSummary]:
        """Stored experiments, newest first (optionally only those with ``title``)."""
        rows = _engine(home).store.list()
        return [r for r in rows if title is None or r.title == title]


def run(
    task: Any,
    executor: ExecutorProfile | None = None,
    *,
    name: str | None = None,
    title: str | None = None,
    detach: bool = False,
    dryrun: bool = False,
    home: str | Path | None = None,
    stream: bool = True,
) -> ExperimentRecord | list[DryRun]:
    """Run one task and return its stored outcome; raises ``RunFailedError`` if it failed
    (with the exception, the last stderr lines and the log path). While it runs, its output
    streams to ``sys.stdout``/``sys.stderr``; ``stream=False`` keeps it quiet."""
    exp = Experiment(title or name or _title_for(task), executor, home=home)
    exp.add(task, name=name)
    if dryrun:
        return exp.dryrun()
    if launch_guard.in_task_import():
        return exp._skip("run.run()")
    record = exp.run(detach=detach, stream=stream)
    if not detach and record.state is not JobState.SUCCEEDED:
        raise RunFailedError(record, exp.failures())
    return record


_SKIP = 'was called while a job imported this script (no `if __name__ == "__main__":` guard)'

#: Opt in to launching from inside a job (see core.engine.launch_guard; still depth-bounded).
allow_nested_launch = launch_guard.allow_nested_launch


def _title_for(task: Any) -> str:
    """The function's name; a script is titled after the calling program."""
    if getattr(task, "__fn_or_cls__", None) is not None:
        return task_name(task)
    return Path(sys.argv[0]).stem or "run"
