"""The results of a stored job, for front ends: locate it once, then read what it made."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

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
