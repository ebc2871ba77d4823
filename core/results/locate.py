"""Where a job's outputs are: which transport reaches them and which directory holds them.

``NEMORUN_JOB_DIR`` is that directory as the job saw it. A backend tells where it is with the
optional capability ``async job_outputs(handle) -> JobOutputs`` (the Slurm backend: the job
dir on the cluster, over its SSH or local transport; the local backend: the run directory).
A backend without it is read where the store keeps the job (its folder on this machine).
"""

from __future__ import annotations

import contextlib
import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.transport import Transport

if TYPE_CHECKING:
    from core.engine import Engine
    from core.engine.protocol import LogStream

STREAMS: tuple[LogStream, ...] = ("stdout", "stderr")


@dataclass
class JobOutputs:
    """The job directory and log files of one job, and the transport that reaches them."""

    transport: Transport
    job_dir: str
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        return self.transport.target != "local"


@dataclass
class Declared:
    """What a profile or recipe declares beyond the defaults (see ``ExecutorProfile``)."""

    artifacts: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    metrics_regex: str | None = None
    #: The recipe's config field a checkpoint path goes into on relaunch (e.g. ``resume_from``).
    checkpoint_field: str | None = None


async def locate(engine: Engine, exp_id: str, job: str) -> JobOutputs:
    """The outputs of one submitted job (``StoreError`` when it was never submitted)."""
    from core.store import StoreError
    from core.transport.local import local_transport

    rec = engine.store.load(exp_id).job(job)
    if rec.handle is None:
        raise StoreError(f"job `{job}` of {exp_id} was never submitted ({rec.state.value})")
    backend = engine.backend_for(exp_id, job)
    capability = getattr(backend, "job_outputs", None)
    if capability is not None:
        from core.engine.protocol import BackendError

        try:
            found = await capability(rec.handle)
        except BackendError:
            # The backend's own files are gone (a run dir moved, a purged scratch): what the
            # store kept of the job is all there is.
            found = None
        if isinstance(found, JobOutputs):
            return found
    logs: dict[str, str] = {}
    for stream in STREAMS:
        with contextlib.suppress(Exception):
            source = engine.log_source(exp_id, job, stream)
            if not source.spool:
                logs[stream] = str(source.path)
    return JobOutputs(local_transport(), str(engine.store.job_dir(exp_id, job)), logs)


def declared(engine: Engine, exp_id: str, job: str) -> Declared:
    """The profile's declarations, plus the recipe's ``[recipes.<name>]`` table in config.toml.

    Recipe tables are read from the settings file, not from the recipe's module: the app and
    the CLI must never import user code to find out where a run's metrics are.
    """
    out = Declared()
    with contextlib.suppress(Exception):
        profile = engine.executor_of(exp_id, job)
        out.artifacts = [str(g) for g in getattr(profile, "artifacts", None) or []]
        out.metrics = [str(g) for g in getattr(profile, "metrics", None) or []]
        out.metrics_regex = getattr(profile, "metrics_regex", None) or None
    record = engine.store.load(exp_id)
    table = recipe_table(engine, record.recipe)
    out.artifacts += [str(g) for g in table.get("artifacts") or []]
    out.metrics += [str(g) for g in table.get("metrics") or []]
    out.metrics_regex = table.get("metrics_regex") or out.metrics_regex
    out.checkpoint_field = table.get("checkpoint_field") or None
    return out


def recipe_table(engine: Engine, recipe: str | None) -> dict[str, Any]:
    """``[recipes.<recipe>]`` of config.toml, or an empty table."""
    path = getattr(engine.settings, "path", None)
    if not recipe or path is None:
        return {}
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    table = (raw.get("recipes") or {}).get(recipe) or {}
    return dict(table) if isinstance(table, dict) else {}
