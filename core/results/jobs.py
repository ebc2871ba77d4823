"""The results of a stored job, for front ends: locate it once, then read what it made."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from core.results.artifacts import ArtifactListing, list_artifacts, record, recorded
from core.results.locate import declared, locate
from core.results.watch import JobMetrics, MetricsSnapshot

if TYPE_CHECKING:
    from core.engine import Engine


async def job_metrics(engine: Engine, exp_id: str, job: str) -> JobMetrics:
    """A reader of the job's metrics that the caller keeps and refreshes."""
    outputs = await locate(engine, exp_id, job)
    return JobMetrics(outputs, declared(engine, exp_id, job))


async def read_metrics(engine: Engine, exp_id: str, job: str) -> MetricsSnapshot:
    """Every metric of the job, read once."""
    return await (await job_metrics(engine, exp_id, job)).refresh()


async def artifacts(
    engine: Engine, exp_id: str, job: str, *, store: bool = True
) -> ArtifactListing:
    """List the job's artifacts now and record the listing in the store.

    When the job's files cannot be reached (a purged scratch, no connection) the last
    recorded listing is returned with the problem noted, rather than an empty one.
    """
    rec = engine.store.load(exp_id).job(job)
    try:
        outputs = await locate(engine, exp_id, job)
        listing = await list_artifacts(outputs, declared(engine, exp_id, job))
    except Exception as exc:
        old = recorded(engine.store, exp_id, job)
        if old is None:
            raise
        old.problem = f"showing the listing recorded earlier: {exc}"
        return old
    listing.final = rec.state.is_terminal
    if store:
        with contextlib.suppress(Exception):  # a read-only store still lists
            record(engine.store, exp_id, job, listing)
    return listing


class MetricsCache:
    """Metric readers kept per job between refreshes (the app's live views use one).

    Lives on the engine loop. Each refresh reads only what the job's files grew by, and
    returns *copies* of the series, so the UI thread draws data nobody is appending to.
    """

    def __init__(self) -> None:
        self.readers: dict[tuple[str, str], JobMetrics] = {}
        self.errors: dict[tuple[str, str], str] = {}

    async def refresh(self, engine: Engine, exp_id: str) -> dict[str, MetricsSnapshot]:
        from core.results.series import Series

        record = engine.store.load(exp_id)
        out: dict[str, MetricsSnapshot] = {}
        for job in record.jobs:
            if job.handle is None:
                continue
            key = (exp_id, job.name)
            try:
                reader = self.readers.get(key)
                if reader is None:
                    reader = self.readers[key] = await job_metrics(engine, exp_id, job.name)
                snap = await reader.refresh()
            except Exception as exc:
                out[job.name] = MetricsSnapshot(problems=[f"{type(exc).__name__}: {exc}"])
                continue
            copied = {
                name: Series(s.name, s.source, s.steps[:], s.values[:], s.times[:])
                for name, s in snap.series.items()
            }
            out[job.name] = MetricsSnapshot(copied, snap.problems, snap.files)
        return out


async def record_end(engine: Engine, exp_id: str, job: str) -> Any:
    """At a job's end: record its artifacts (``artifacts.json``) and, when it failed, its
    cause (``cause.json``); returns the cause or None. Best effort: a listing that cannot be
    made now is made when someone looks."""
    from core.results.triage import triage

    with contextlib.suppress(Exception):
        await artifacts(engine, exp_id, job)
    rec = engine.store.load(exp_id).job(job)
    if rec.state.value in ("FAILED", "CANCELLED", "UNKNOWN"):
        with contextlib.suppress(Exception):
            return await triage(engine, exp_id, job)
    return None
