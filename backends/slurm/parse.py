"""Turn squeue/sacct output into :class:`StatusReport` s. Pure functions, tested without Slurm.

Why a separate module: the mapping is where schedulers lie by omission. A job neither command
lists is UNKNOWN (never SUCCEEDED); every report names the command that said so; pending jobs
carry Slurm's reason; array tasks are addressed as ``<array job id>_<task id>`` and an array
job's own handle (``<array job id>``) gets a state aggregated from its tasks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from core.engine.states import JobState, StatusReport

#: squeue -O fields, '|' after each; WorkDir last because a path could contain anything.
SQUEUE_FIELDS = (
    "JobArrayID",
    "ArrayJobID",
    "ArrayTaskID",
    "State",
    "Reason",
    "RestartCnt",
    "exit_code",
    "StartTime",
    "EndTime",
    "WorkDir",
)
SQUEUE_FORMAT = ",".join(f"{f}:|" for f in SQUEUE_FIELDS)
#: sacct -P fields ('|' separated), WorkDir last for the same reason. Submit and JobName tell
#: apart different jobs that share an id (ids restart when slurmctld loses its state or wraps
#: at MaxJobId, while the accounting database keeps the old ones): see :func:`parse_sacct`.
#: Start and End are when the job really started and ended (shown and stored as such).
SACCT_FIELDS = (
    "JobID", "State", "ExitCode", "Reason", "Submit", "Start", "End", "JobName", "WorkDir",
)  # fmt: skip
SACCT_FORMAT = ",".join(SACCT_FIELDS)

_STATE_MAP: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
}
#: Slurm states whose name is itself the explanation of a failure.
_TELLING_STATES = {"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
_NO_REASON = {"", "None", "(null)", "N/A"}


def map_state(slurm_state: str) -> JobState:
    """Slurm's state word (``"CANCELLED by 0"`` included) → ours; anything new → UNKNOWN."""
    word = slurm_state.strip().split(" ", 1)[0].rstrip("+").upper()
    return _STATE_MAP.get(word, JobState.UNKNOWN)


@dataclass
class Row:
    """One job or array task as one scheduler command saw it."""

    key: str  # "123" or "123_4"
    array_job: str | None  # "123" for array tasks, else None
    slurm_state: str
    reason: str | None
    exit_code: int | None
    workdir: str | None
    restarts: int = 0
    source: str = "squeue"
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def state(self) -> JobState:
        return map_state(self.slurm_state)


def _clean_reason(value: str) -> str | None:
    value = value.strip()
    return None if value in _NO_REASON else value


def parse_time(raw: str) -> float | None:
    """A Slurm time (``SLURM_TIME_FORMAT=standard``, printed in UTC: see SACCT_ENV) as a Unix
    time; None for ``Unknown``, ``None``, ``N/A`` or anything unreadable."""
    from datetime import UTC, datetime

    text = raw.strip()
    if not text[:1].isdigit():
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def decode_wait_status(raw: str) -> int | None:
    """squeue's ``exit_code`` is a raw wait(2) status: code << 8, or the killing signal."""
    try:
        status = int(raw)
    except ValueError:
        return None
    if status & 0x7F:
        return 128 + (status & 0x7F)
    return (status >> 8) & 0xFF


def decode_sacct_exit(raw: str) -> int | None:
    """sacct's ``ExitCode`` is ``code:signal``."""
    code, _, sig = raw.partition(":")
    try:
        c, s = int(code), int(sig or 0)
    except ValueError:
        return None
    return 128 + s if s and not c else c


def parse_squeue(text: str) -> list[Row]:
    """Rows of ``squeue -h -r -t all -O SQUEUE_FORMAT``."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", len(SQUEUE_FIELDS) - 1)
        if len(parts) < len(SQUEUE_FIELDS):
            continue
        job_array_id, array_job, task, state, reason, restarts, exit_raw, start, end, workdir = (
            parts
        )
        workdir = workdir[:-1] if workdir.endswith("|") else workdir
        task = task.strip()
        is_task = task not in ("N/A", "")
        key = f"{array_job.strip()}_{task}" if is_task else job_array_id.strip()
        try:
            restart_count = int(restarts)
        except ValueError:
            restart_count = 0
        mapped = map_state(state)
        rows.append(
            Row(
                key=key,
                array_job=array_job.strip() if is_task else None,
                slurm_state=state.strip(),
                reason=_clean_reason(reason),
                exit_code=decode_wait_status(exit_raw) if mapped.is_terminal else None,
                workdir=workdir.strip() or None,
                restarts=restart_count,
                source="squeue",
                # squeue's times of a pending or running job are forecasts: keep real ones.
                started_at=parse_time(start) if mapped is not JobState.PENDING else None,
                ended_at=parse_time(end) if mapped.is_terminal else None,
            )
        )
    return rows


def expand_task_spec(spec: str) -> list[str]:
    """``"[0-3,7,10-14:2%4]"`` → task ids. A step after ':' is honoured, a ``%`` limit dropped."""
    spec = spec.strip().strip("[]").split("%", 1)[0]
    out: list[str] = []
    for part in filter(None, spec.split(",")):
        rng, _, step_s = part.partition(":")
        step = int(step_s) if step_s.isdigit() else 1
        if "-" in rng:
            lo, hi = rng.split("-", 1)
            out.extend(str(i) for i in range(int(lo), int(hi) + 1, step))
        elif rng.isdigit():
            out.append(rng)
    return out


class _SacctRecord(NamedTuple):
    base: str  # the job id, or the array's id for its tasks
    array_job: str | None
    keys: list[str]
    state: str
    exit_raw: str
    reason: str
    workdir: str
    submit: str
    name: str
    start: str
    end: str


def parse_sacct(text: str, names: Mapping[str, str] | None = None) -> list[Row]:
    """Rows of ``sacct -n -P -X -D -o SACCT_FORMAT``; requeues become ``restarts``.

    ``-D`` lists every record under an id: one per run of a requeued job (same name), but also
    unrelated jobs whose id was reused (the accounting database outlives slurmctld's id
    counter). Per id, one job counts, recognised by its name (our run tag, unique per
    submission): the name in ``names`` (job id -> name) when we know what we submitted, else
    the most recently submitted job's. Its runs, oldest first, make the restart count.
    Pending array tasks not yet split off appear as ``123_[4-9]`` and are expanded.
    Submit times must be ISO (``SLURM_TIME_FORMAT=standard``) to compare as text.
    """
    records: list[_SacctRecord] = []
    newest: dict[str, tuple[str, str]] = {}  # base id -> (submit, name) of its newest record
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 7)
        if len(parts) < 8:
            continue
        job_id, state, exit_raw, reason, submit, start, end, rest = parts
        name, _, workdir = rest.partition("|")  # our names never hold '|'; a WorkDir may
        workdir = workdir[:-1] if workdir.endswith("|") else workdir
        job_id = job_id.strip()
        if "." in job_id:  # a step (batch, extern): not a job
            continue
        if "_" in job_id:
            array_job, _, task = job_id.partition("_")
            keys = [f"{array_job}_{t}" for t in expand_task_spec(task)] if "[" in task else [job_id]
        else:
            array_job, keys = None, [job_id]
        base = array_job or job_id
        submit = submit.strip() if submit.strip()[:1].isdigit() else ""  # "Unknown" sorts first
        records.append(
            _SacctRecord(
                base, array_job, keys, state, exit_raw, reason, workdir, submit, name, start, end
            )
        )
        if base not in newest or submit >= newest[base][0]:
            newest[base] = (submit, name)

    latest: dict[str, Row] = {}
    runs: dict[str, int] = {}
    expected = {base: (names or {}).get(base) or newest[base][1] for base in newest}
    for rec in sorted(records, key=lambda r: r.submit):  # stable: oldest first
        if rec.name != expected[rec.base]:
            continue  # another job that had this id
        mapped = map_state(rec.state)
        for key in rec.keys:
            runs[key] = runs.get(key, 0) + 1
            latest[key] = Row(
                key=key,
                array_job=rec.array_job,
                slurm_state=rec.state.strip(),
                reason=_clean_reason(rec.reason),
                exit_code=decode_sacct_exit(rec.exit_raw) if mapped.is_terminal else None,
                workdir=rec.workdir.strip() or None,
                restarts=runs[key] - 1,
                source="sacct",
                started_at=parse_time(rec.start) if mapped is not JobState.PENDING else None,
                ended_at=parse_time(rec.end) if mapped.is_terminal else None,
            )
    return list(latest.values())


def report_from_row(
    row: Row, *, exit_code: int | None = None, now: float | None = None
) -> StatusReport:
    """One row → one report; ``exit_code`` (from the job's exit-code file) wins when given."""
    state = row.state
    reason: str | None
    word = row.slurm_state.split(" ", 1)[0].rstrip("+").upper()
    if state is JobState.PENDING:
        reason = row.reason or ("requeued" if word.startswith("REQUEUE") else None)
    elif state is JobState.RUNNING:
        reason = word.lower() if word not in ("RUNNING",) else None
    elif state is JobState.CANCELLED:
        by = row.slurm_state.partition(" by ")[2].strip()
        parts = []
        if row.reason and row.reason.startswith("Dependency"):
            parts.append(f"a dependency failed ({row.reason})")
        elif row.reason:
            parts.append(row.reason)
        parts.append(f"cancelled by uid {by}" if by else "cancelled")
        reason = "; ".join(parts)
    elif state is JobState.FAILED:
        bits = [word] if word in _TELLING_STATES else []
        if row.reason:
            bits.append(row.reason)
        reason = ", ".join(bits) or None
    elif state is JobState.UNKNOWN:
        reason = f"unrecognised Slurm state {row.slurm_state!r}"
    else:
        reason = None
    code = exit_code if exit_code is not None else row.exit_code
    if state is JobState.CANCELLED:
        code = exit_code  # Slurm's number for a killed or never-started job means nothing
    if state is JobState.SUCCEEDED and code is None:
        code = 0
    if not state.is_terminal:
        code = None
    return StatusReport(
        state=state,
        source=row.source,
        observed_at=time.time() if now is None else now,
        exit_code=code,
        reason=reason,
        restarts=row.restarts,
        started_at=row.started_at,
        ended_at=row.ended_at if state.is_terminal else None,
    )


@dataclass
class ArraySummary:
    """An array job's tasks, for its aggregate report."""

    reports: dict[str, StatusReport] = field(default_factory=dict)

    def aggregate(self) -> StatusReport:
        """All ended → FAILED if any failed, else CANCELLED if any was, else SUCCEEDED;
        otherwise RUNNING while any task runs, else PENDING. The reason counts the tasks."""
        reports = list(self.reports.values())
        states = [r.state for r in reports]
        counts: dict[str, int] = {}
        for s in states:
            counts[s.value] = counts.get(s.value, 0) + 1
        summary = ", ".join(f"{n} {name.lower()}" for name, n in sorted(counts.items()))
        sources = sorted({r.source for r in reports})
        if states and all(s.is_terminal for s in states):
            if JobState.FAILED in states:
                state = JobState.FAILED
            elif JobState.CANCELLED in states:
                state = JobState.CANCELLED
            else:
                state = JobState.SUCCEEDED
            codes = [r.exit_code for r in reports if r.exit_code]
            exit_code: int | None = (
                codes[0] if codes else (0 if state is JobState.SUCCEEDED else None)
            )
        elif JobState.RUNNING in states:
            state, exit_code = JobState.RUNNING, None
        elif JobState.UNKNOWN in states and not any(s is JobState.PENDING for s in states):
            state, exit_code = JobState.UNKNOWN, None
        else:
            state, exit_code = JobState.PENDING, None
        starts = [r.started_at for r in reports if r.started_at is not None]
        ends = [r.ended_at for r in reports if r.ended_at is not None]
        # An array ended when its last task did (and only if every task's end is known).
        ended_at = max(ends) if state.is_terminal and len(ends) == len(reports) else None
        pending = [r.reason for r in reports if r.state is JobState.PENDING and r.reason]
        reason = f"{len(reports)} tasks: {summary}"
        if pending:
            reason += f" (pending: {pending[0]})"
        return StatusReport(
            state=state,
            source="+".join(sources) or "squeue",
            observed_at=max((r.observed_at for r in reports), default=time.time()),
            exit_code=exit_code,
            reason=reason,
            restarts=sum(r.restarts for r in reports),
            started_at=min(starts) if starts else None,
            ended_at=ended_at,
        )


def task_sort_key(key: str) -> tuple[int, int]:
    """Order ``"123_4"`` keys numerically."""
    job, _, task = key.partition("_")
    return (int(job) if job.isdigit() else 0, int(task) if task.isdigit() else -1)


def array_job_of(job_id: str) -> str:
    """``"123_4"`` → ``"123"``; ``"123"`` → ``"123"``."""
    return job_id.split("_", 1)[0]


_JOB_ID = re.compile(r"^\d+(_\d+)?$")


def is_job_id(job_id: str) -> bool:
    """A Slurm job id or array task id as this backend writes handles."""
    return bool(_JOB_ID.match(job_id))


def group_by_key(rows: Iterable[Row]) -> dict[str, Row]:
    return {row.key: row for row in rows}
