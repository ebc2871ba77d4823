"""Engine and monitor logic against a scripted in-memory backend (no processes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from core.config import Script
from core.engine import Engine, LaunchError, Plan, registry
from core.engine.executors import ExecutorProfile, register_profile
from core.engine.monitor import PollError
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec
from core.engine.states import JobState, StatusReport
from core.store import Store


@register_profile
@dataclass
class FakeExecutor(ExecutorProfile):
    backend: ClassVar[str] = "fake"
    cluster: str = "c1"

    def target(self) -> str:
        return self.cluster


class FakeBackend:
    """Scripted backend; class-level state so every instance shares it per test."""

    name: ClassVar[str] = "fake"
    store: ClassVar[Store | None] = None
    submitted: ClassVar[list[JobSpec]] = []
    states: ClassVar[dict[str, StatusReport]] = {}
    poll_calls: ClassVar[list[tuple[str, list[Handle]]]] = []
    fail_submit: ClassVar[set[str]] = set()
    fail_poll: ClassVar[bool] = False
    seen_at_submit: ClassVar[list[JobState]] = []
    on_submit: ClassVar[object] = None
    fail_cancel: ClassVar[set[str]] = set()
    cancelled: ClassVar[list[str]] = []

    def __init__(self, target: str) -> None:
        self.target = target

    @classmethod
    def from_profile(cls, profile: FakeExecutor) -> FakeBackend:
        return cls(profile.target())

    async def dryrun(self, job: JobSpec) -> DryRun:
        return DryRun("fake", " ".join(job.argv), {"argv": "\n".join(job.argv)})

    async def submit(self, job: JobSpec) -> Handle:
        assert self.store is not None
        # the experiment must already be recorded when a backend sees the job
        self.seen_at_submit.append(self.store.load(job.experiment_id).job(job.job_name).state)
        if job.job_name in self.fail_submit:
            raise BackendError("scheduler said no")
        hook = FakeBackend.on_submit  # via the class: a plain function, not a bound method
        if callable(hook):
            hook(job)
        self.submitted.append(job)
        handle = Handle("fake", self.target, f"{job.job_name}-{len(self.submitted)}")
        self.states[handle.job_id] = StatusReport(JobState.PENDING, source="fake", reason="Queue")
        return handle

    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        self.poll_calls.append((self.target, list(handles)))
        if self.fail_poll:
            raise ConnectionError("cluster unreachable")
        return {
            h: self.states.get(h.job_id, StatusReport(JobState.UNKNOWN, source="fake"))
            for h in handles
        }

    async def cancel(self, handle: Handle) -> None:
        if any(handle.job_id.startswith(n) for n in self.fail_cancel):
            raise BackendError("scancel: permission denied")
        self.cancelled.append(handle.job_id)
        self.states[handle.job_id] = StatusReport(JobState.CANCELLED, source="fake")

    async def logs(self, handle: Handle, **_: object) -> AsyncIterator[bytes]:
        yield b"log of " + handle.job_id.encode()

    async def close(self) -> None:
        return None


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    FakeBackend.store = Store(tmp_path)
    FakeBackend.submitted = []
    FakeBackend.states = {}
    FakeBackend.poll_calls = []
    FakeBackend.fail_submit = set()
    FakeBackend.fail_poll = False
    FakeBackend.seen_at_submit = []
    FakeBackend.on_submit = None
    FakeBackend.fail_cancel = set()
    FakeBackend.cancelled = []
    registry.register_backend("fake", FakeBackend)
    return Engine(FakeBackend.store)


def plan_of(*names: str, cluster: str = "c1", sequential: bool = False) -> Plan:
    plan = Plan(title="t", sequential=sequential)
    for name in names:
        plan.add(Script(inline=f"echo {name}"), FakeExecutor(cluster=cluster), name=name)
    return plan


async def test_experiment_is_recorded_before_any_submit(engine: Engine) -> None:
    record = await engine.launch(plan_of("a", "b"))
    assert FakeBackend.seen_at_submit == [JobState.UNSUBMITTED, JobState.UNSUBMITTED]
    assert [j.state for j in record.jobs] == [JobState.SUBMITTED, JobState.SUBMITTED]
    assert all(j.handle is not None for j in record.jobs)
    kinds = [e["kind"] for e in engine.store.events(record.id)]
    assert kinds == ["created", "submitted", "submitted"]


async def test_submit_failure_fails_job_and_cancels_dependents(engine: Engine) -> None:
    FakeBackend.fail_submit = {"a"}
    record = await engine.launch(plan_of("a", "b", sequential=True))
    a, b = record.jobs
    assert a.state is JobState.FAILED and "scheduler said no" in (a.reason or "")
    assert b.state is JobState.CANCELLED and "dependency `a`" in (b.reason or "")
    assert FakeBackend.submitted == []


async def test_dependencies_reach_the_backend_as_handles(engine: Engine) -> None:
    plan = Plan(title="deps")
    first = plan.add(Script(inline="true"), FakeExecutor(), name="first")
    plan.add(Script(inline="true"), FakeExecutor(), name="second", dependencies=[first])
    record = await engine.launch(plan)
    second = FakeBackend.submitted[1]
    assert second.dependencies == [record.job("first").handle]
    assert record.job("second").dependencies == ["first"]


def test_plan_rejects_duplicates_and_unknown_dependencies() -> None:
    plan = plan_of("a")
    with pytest.raises(LaunchError, match="used twice"):
        plan.add(Script(inline="true"), FakeExecutor(), name="a")
    with pytest.raises(LaunchError, match="depends on `zzz`"):
        plan.add(Script(inline="true"), FakeExecutor(), name="b", dependencies=["zzz"])


@pytest.mark.parametrize("name", ["a/b", ".hidden", "x|y", "tab\there", "new\nline", ""])
def test_plan_rejects_job_names_that_cannot_be_folders_or_slurm_fields(name: str) -> None:
    with pytest.raises(LaunchError, match="invalid job name"):
        plan_of("a").add(Script(inline="true"), FakeExecutor(), name=name or " ")
    plan_of("a").add(Script(inline="true"), FakeExecutor(), name="eval-2 (final)")


def test_plan_caps_job_names_at_128_bytes() -> None:
    plan_of("a").add(Script(inline="true"), FakeExecutor(), name="n" * 128)
    with pytest.raises(LaunchError, match=r"too long \(300 bytes; at most 128\)") as info:
        plan_of("a").add(Script(inline="true"), FakeExecutor(), name="n" * 300)
    assert len(str(info.value)) < 120  # the name is quoted clipped, not in full
    with pytest.raises(LaunchError, match="at most 128"):  # bytes, not characters
        plan_of("a").add(Script(inline="true"), FakeExecutor(), name="é" * 65)


async def test_monitor_polls_once_per_target_with_every_handle(engine: Engine) -> None:
    for _ in range(3):
        await engine.launch(plan_of("x", "y", cluster="c1"))
    await engine.launch(plan_of("z", cluster="c2"))
    FakeBackend.poll_calls.clear()
    changes = await engine.refresh()
    assert sorted((t, len(h)) for t, h in FakeBackend.poll_calls) == [("c1", 6), ("c2", 1)]
    assert len(changes) == 7 and {c.new for c in changes} == {JobState.PENDING}
    assert {c.report.reason for c in changes} == {"Queue"}


async def test_transitions_are_published_and_terminal_jobs_not_polled(engine: Engine) -> None:
    record = await engine.launch(plan_of("a"))
    queue = engine.monitor.subscribe()
    handle = record.jobs[0].handle
    assert handle is not None
    FakeBackend.states[handle.job_id] = StatusReport(JobState.SUCCEEDED, source="fake", exit_code=0)
    await engine.refresh()
    change = queue.get_nowait()
    assert (change.job, change.old, change.new) == ("a", JobState.SUBMITTED, JobState.SUCCEEDED)
    FakeBackend.poll_calls.clear()
    await engine.refresh()
    assert FakeBackend.poll_calls == []  # nothing live left to poll


async def test_poll_failure_is_an_event_not_a_state(engine: Engine) -> None:
    record = await engine.launch(plan_of("a"))
    queue = engine.monitor.subscribe()
    FakeBackend.fail_poll = True
    assert await engine.refresh() == []
    event = queue.get_nowait()
    assert isinstance(event, PollError) and "cluster unreachable" in event.message
    assert engine.store.load(record.id).jobs[0].state is JobState.SUBMITTED


async def test_unknown_is_recorded_as_unknown(engine: Engine) -> None:
    record = await engine.launch(plan_of("a"))
    FakeBackend.states.clear()
    await engine.refresh()
    assert engine.store.load(record.id).jobs[0].state is JobState.UNKNOWN


async def test_cancel_reaches_backend_and_unsubmitted_jobs_end_cancelled(engine: Engine) -> None:
    record = engine.record(plan_of("never"))
    assert await engine.cancel(record.id) == ["never"]
    job = engine.store.load(record.id).jobs[0]
    assert job.state is JobState.CANCELLED and job.reason == "cancelled before submission"
    launched = await engine.launch(plan_of("a"))
    await engine.cancel(launched.id, "a")
    assert engine.store.load(launched.id).jobs[0].state is JobState.CANCELLED


async def test_relaunch_plan_sets_parent_and_applies_overrides(engine: Engine) -> None:
    record = await engine.launch(plan_of("a"))
    plan = engine.relaunch_plan(record.id, ["inline=echo changed"])
    assert plan.parent == record.id
    assert plan.jobs[0].task.inline == "echo changed"
    child = await engine.launch(plan)
    assert child.parent == record.id
    assert engine.task_of(child.id, "a").inline == "echo changed"


async def test_dryrun_writes_nothing(engine: Engine) -> None:
    (result,) = await engine.dryrun(plan_of("a"))
    assert "echo a" in result.summary
    assert engine.store.list() == [] and FakeBackend.submitted == []


async def test_a_cancel_during_launch_is_not_undone(engine: Engine) -> None:
    plan = plan_of("a", "b", "c")
    record = engine.record(plan)

    def cancel_while_submitting(job: JobSpec) -> None:
        if job.job_name == "a":  # another process cancels the whole experiment meanwhile
            for name in ("a", "b"):
                report = StatusReport(JobState.CANCELLED, source="other", reason="user")
                engine.store.record_statuses(record.id, {name: report})

    FakeBackend.on_submit = cancel_while_submitting
    await engine.submit_recorded(record.id, plan)
    final = engine.store.load(record.id)
    assert [j.state for j in final.jobs][:2] == [JobState.CANCELLED, JobState.CANCELLED]
    assert [j.job_name for j in FakeBackend.submitted] == ["a", "c"]  # b never submitted
    assert FakeBackend.cancelled == ["a-1"]  # a was submitted as the cancel landed: stopped


async def test_cancel_goes_on_when_one_job_cannot_be_cancelled(engine: Engine) -> None:
    record = await engine.launch(plan_of("a", "b"))
    FakeBackend.fail_cancel = {"a"}
    with pytest.raises(BackendError, match="a: scancel: permission denied"):
        await engine.cancel(record.id)
    assert FakeBackend.cancelled == ["b-2"]


async def test_an_unexpected_submit_error_is_recorded_not_left_unsubmitted(engine: Engine) -> None:
    def explode(job: JobSpec) -> None:
        raise RuntimeError("unexpected")

    FakeBackend.on_submit = explode
    record = await engine.launch(plan_of("a", "b", sequential=True))
    a, b = record.jobs
    assert a.state is JobState.FAILED and "unexpected" in (a.reason or "")
    assert b.state is JobState.CANCELLED


# -- waiting: the optional wait_changed capability, and the sleep fallback ---------------


class NoticingBackend(FakeBackend):
    """A fake with the optional ``wait_changed``: it wakes when the test says a job changed."""

    name: ClassVar[str] = "noticing"
    waits: ClassVar[list[tuple[list[Handle], float]]] = []
    changed: ClassVar[asyncio.Event | None] = None
    broken: ClassVar[bool] = False

    async def wait_changed(self, handles: Sequence[Handle], timeout: float) -> None:
        self.waits.append((list(handles), timeout))
        if self.broken:
            raise OSError("no inotify watches left")
        assert self.changed is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()


@register_profile
@dataclass
class NoticingExecutor(FakeExecutor):
    backend: ClassVar[str] = "noticing"


@pytest.fixture
def noticing(engine: Engine) -> type[NoticingBackend]:
    NoticingBackend.waits = []
    NoticingBackend.changed = asyncio.Event()
    NoticingBackend.broken = False
    registry.register_backend("noticing", NoticingBackend)
    return NoticingBackend


def finish(handle: Handle | None, state: JobState = JobState.SUCCEEDED) -> None:
    assert handle is not None
    FakeBackend.states[handle.job_id] = StatusReport(state, source="fake", exit_code=0)


async def test_wait_without_the_capability_polls_until_the_end(engine: Engine) -> None:
    record = await engine.launch(plan_of("a", "b"))
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, finish, record.jobs[0].handle)
    loop.call_later(0.2, finish, record.jobs[1].handle, JobState.FAILED)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.05), 20)
    assert [j.state for j in done.jobs] == [JobState.SUCCEEDED, JobState.FAILED]
    assert len(FakeBackend.poll_calls) >= 3  # it kept polling while waiting


async def test_wait_sleeps_on_the_backend_s_notices_and_ends_when_told(
    engine: Engine, noticing: type[NoticingBackend]
) -> None:
    plan = Plan(title="t")
    plan.add(Script(inline="echo a"), NoticingExecutor(), name="a")
    record = await engine.launch(plan)
    handle = record.jobs[0].handle

    def change() -> None:
        finish(handle)
        assert noticing.changed is not None
        noticing.changed.set()

    asyncio.get_running_loop().call_later(0.1, change)
    # The notice, not the (60 s) timeout, ends the wait: the test's bound is 20 s.
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=60.0), 20)
    assert done.jobs[0].state is JobState.SUCCEEDED
    assert noticing.waits and all(w == ([handle], 60.0) for w in noticing.waits)


async def test_a_job_without_the_capability_keeps_the_sleeps(
    engine: Engine, noticing: type[NoticingBackend]
) -> None:
    """One live job on a backend without notices: waiting on the other's would miss it."""
    plan = Plan(title="t")
    plan.add(Script(inline="echo a"), NoticingExecutor(), name="a")
    plan.add(Script(inline="echo b"), FakeExecutor(), name="b")
    record = await engine.launch(plan)
    asyncio.get_running_loop().call_later(0.1, finish, record.jobs[0].handle)
    asyncio.get_running_loop().call_later(0.1, finish, record.jobs[1].handle)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.05), 20)
    assert [j.state for j in done.jobs] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert noticing.waits == []


async def test_failing_notices_fall_back_to_sleeping(
    engine: Engine, noticing: type[NoticingBackend]
) -> None:
    noticing.broken = True
    plan = Plan(title="t")
    plan.add(Script(inline="echo a"), NoticingExecutor(), name="a")
    record = await engine.launch(plan)
    asyncio.get_running_loop().call_later(0.2, finish, record.jobs[0].handle)
    done = await asyncio.wait_for(engine.wait(record.id, max_interval=0.05), 20)
    assert done.jobs[0].state is JobState.SUCCEEDED
    assert noticing.waits  # it was asked, failed, and the engine slept instead


async def test_a_ranks_log_is_read_from_the_node_that_runs_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend with one log per node (Kubernetes pods) says which node runs a global rank
    (``node_of_rank``); the engine reads that node's log and keeps that rank's lines."""
    per_node = {0: b"[rank0]:a\n[rank1]:b\n", 1: b"[rank2]:c\n[rank3]:d\n"}
    asked: list[int] = []

    async def logs(
        self: FakeBackend, handle: Handle, *, rank: int = 0, **_: object
    ) -> AsyncIterator[bytes]:
        asked.append(rank)
        yield per_node[rank]

    record = await engine.launch(plan_of("ddp"))
    monkeypatch.setattr(FakeBackend, "logs", logs)
    assert [b"".join([c async for c in engine.logs(record.id, rank=r)]) for r in (1, 3)] == [
        b"b\n",
        b"",  # without node_of_rank, node 0's log: rank 3 is not there
    ]
    monkeypatch.setattr(FakeBackend, "node_of_rank", lambda self, h, rank: rank // 2, raising=False)
    asked.clear()
    assert [b"".join([c async for c in engine.logs(record.id, rank=r)]) for r in (1, 3)] == [
        b"b\n",
        b"d\n",
    ]
    assert asked == [0, 1]
