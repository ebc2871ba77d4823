"""The monitor: one batched poll per backend target per tick, transitions into the store.

It is the only writer of observed states. Each tick gathers the live jobs of the wanted
experiments, groups their handles by (backend, target), calls ``poll`` once per group, writes
changes (one manifest write per experiment) and publishes them to subscribers — the app
listens on a queue. A backend that raises is reported as an error event for its group; the
other groups still update, and nothing is marked as ended because a poll failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from core.engine import launch_window, registry, stale_files
from core.engine.executors import ExecutorProfile, profile_from_dict
from core.engine.protocol import Backend, Handle
from core.engine.stall import StallNotice, check_stalls
from core.engine.states import TERMINAL_STATES, StatusReport
from core.store import DamagedManifestError, ExperimentNotFound, StateChange, Store

EXECUTOR_FILE = "executor.json"


@dataclass(frozen=True)
class PollError:
    """A backend failed to answer a poll; shown to the user, never turned into a state."""

    backend: str
    target: str
    message: str
    at: float


MonitorEvent = StateChange | PollError | StallNotice

#: Called with (exp_id, reports) before they are recorded; returns the reports to record
#: (the engine's retries take out the FAILED reports of jobs it re-submitted).
BeforeRecord = Callable[[str, dict[str, StatusReport]], Awaitable[dict[str, StatusReport]]]


class Monitor:
    """Polls live jobs in batches and records what it sees."""

    def __init__(
        self,
        store: Store,
        backend_for: Callable[[ExecutorProfile], Backend] = registry.get_backend,
    ) -> None:
        self.store = store
        self._backend_for = backend_for
        self._profiles: dict[tuple[str, str], ExecutorProfile] = {}
        self._subscribers: list[asyncio.Queue[MonitorEvent]] = []
        self.last_poll: dict[tuple[str, str], float] = {}
        self.poll_calls = 0
        self._adopter = launch_window.Adopter()  # jobs whose launcher died unrecorded
        self.before_record: BeforeRecord | None = None

    def subscribe(self) -> asyncio.Queue[MonitorEvent]:
        queue: asyncio.Queue[MonitorEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[MonitorEvent]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def _publish(self, event: MonitorEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    def _profile(self, exp_id: str, job: str) -> ExecutorProfile:
        key = (exp_id, job)
        profile = self._profiles.get(key)
        if profile is None:
            raw = self.store.read_job_file(exp_id, job, EXECUTOR_FILE)
            profile = profile_from_dict(json.loads(raw))
            self._profiles[key] = profile
        return profile

    def _job_backend(self, exp_id: str) -> Callable[[str], Backend]:
        return lambda job: self._backend_for(self._profile(exp_id, job))

    def live_experiments(self) -> list[str]:
        """Ids whose aggregate state is not terminal (from the index)."""
        terminal = {state.value for state in TERMINAL_STATES}
        return [s.id for s in self.store.list() if s.state not in terminal and not s.damaged]

    async def tick(self, exp_ids: Sequence[str] | None = None) -> list[StateChange]:
        """Poll every live job of ``exp_ids`` (default: all live experiments) once."""
        ids = list(exp_ids) if exp_ids is not None else self.live_experiments()
        groups: dict[tuple[str, str], list[tuple[str, str, Handle]]] = defaultdict(list)
        backends: dict[tuple[str, str], Backend] = {}
        for exp_id in ids:
            try:
                record = self.store.load(exp_id)
            except (DamagedManifestError, ExperimentNotFound):
                continue
            if await self._adopter.sweep(self.store, record, self._job_backend(exp_id)):
                record = self.store.load(exp_id)
            stale_files.sweep_experiment_once(self.store.exp_dir(exp_id))
            for job in record.jobs:
                if job.handle is None or job.state.is_terminal:
                    continue
                try:
                    profile = self._profile(exp_id, job.name)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    self._publish(
                        PollError(job.backend, "?", f"{exp_id}/{job.name}: {exc}", time.time())
                    )
                    continue
                key = (job.handle.backend, job.handle.target)
                groups[key].append((exp_id, job.name, job.handle))
                if key not in backends:
                    backends[key] = self._backend_for(profile)
        results = await asyncio.gather(
            *(self._poll_group(key, backends[key], members) for key, members in groups.items())
        )
        per_exp: dict[str, dict[str, StatusReport]] = defaultdict(dict)
        for members, reports in zip(groups.values(), results, strict=True):
            if reports is None:
                continue
            for exp_id, job_name, handle in members:
                report = reports.get(handle)
                if report is not None:
                    per_exp[exp_id][job_name] = report
        changes: list[StateChange] = []
        for exp_id, job_reports in per_exp.items():
            try:
                if self.before_record is not None:
                    job_reports = await self.before_record(exp_id, job_reports)
                changes.extend(self.store.record_statuses(exp_id, job_reports))
            except (DamagedManifestError, ExperimentNotFound):
                continue
        for change in changes:
            self._publish(change)
        await self._check_stalls(list(per_exp))
        return changes

    async def _check_stalls(self, exp_ids: list[str]) -> None:
        """Hang detection (core.engine.stall) for the experiments just polled."""
        records = []
        for exp_id in exp_ids:
            with contextlib.suppress(DamagedManifestError, ExperimentNotFound):
                records.append(self.store.load(exp_id))
        if records:
            await check_stalls(self.store, records, self._profile, self._backend_for, self._publish)

    async def _poll_group(
        self, key: tuple[str, str], backend: Backend, members: list[tuple[str, str, Handle]]
    ) -> dict[Handle, StatusReport] | None:
        handles = sorted({h for _, _, h in members})
        self.poll_calls += 1
        try:
            reports = await backend.poll(handles)
        except Exception as exc:
            self._publish(PollError(key[0], key[1], f"{type(exc).__name__}: {exc}", time.time()))
            return None
        self.last_poll[key] = time.time()
        return reports

    async def run(self, interval: float = 2.0, stop: asyncio.Event | None = None) -> None:
        """Tick forever; ticks are chained (the next starts ``interval`` after one ends)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
