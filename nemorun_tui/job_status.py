"""What ``status`` and Detail add for retried, restarted and stalled jobs (issue 13).

Shared by the CLI and the app's Detail pane, so both say the same: these lines are built
from the stored record only (no backend, no engine), and every stored string goes through
:func:`core.textsafe.escape_cell` before it reaches the terminal.
"""

from __future__ import annotations

import time
from typing import Any


def job_extras(job: Any, retries: int | None) -> list[str]:
    """Words for a job's status line: STALLED flag, restarts."""
    extra = []
    if job.stalled and job.last_output_at:
        extra.append(f"STALLED: no output since {_clock(job.last_output_at)}")
    if job.restarts:
        extra.append(f"restarted {job.restarts}x by the scheduler")
    return extra


def attempt_lines(job: Any, retries: int | None) -> list[str]:
    """Indented lines listing a job's attempts, when it has (or may have) more than one."""
    from core.textsafe import escape_cell as cell

    if not job.attempts and not retries:
        return []
    total = (retries or 0) + 1
    lines = [f"      attempt {job.attempt} of {max(total, job.attempt)}"]
    for a in job.attempts:
        bits = [a.state.value]
        if a.exit_code is not None:
            bits.append(f"exit {a.exit_code}")
        if a.reason:
            bits.append(f"({cell(a.reason)})")
        if a.handle is not None:
            bits.append(cell(a.handle.job_id))
        if a.submitted_at:
            bits.append(f"{_clock(a.submitted_at)}-{_clock(a.ended_at) if a.ended_at else '?'}")
        lines.append(f"      attempt {a.number}: {' '.join(bits)}")
    return lines


def detail_rows(job: Any, retries: int | None) -> list[tuple[str, str]]:
    """(key, value) rows for Detail: STALLED flag, restarts, the attempts."""
    rows = [("flag", e) for e in job_extras(job, retries) if e.startswith("STALLED")]
    if job.restarts:
        rows.append(("restarts", f"{job.restarts} (requeued by the scheduler: same job)"))
    for line in attempt_lines(job, retries):
        key, _, value = line.strip().partition(": ")
        rows.append((key, value) if value else ("attempts", key))
    return rows


def json_attempts(record: Any, data: dict[str, Any]) -> None:
    """``status --json``: each job's ``attempts`` lists every attempt, the current one last."""
    for job, out in zip(record.jobs, data.get("jobs", []), strict=False):
        out["attempts"] = [a.to_dict() for a in job.all_attempts()]
        out["attempt"] = job.attempt
        out["stalled"] = job.stalled
        out["last_output_at"] = job.last_output_at


def retries_of(store: Any, exp_id: str, job: str) -> int | None:
    """The job's ``retries`` from its stored profile (None when it cannot be read)."""
    try:
        data = store.read_job_json(exp_id, job, "executor.json")
    except Exception:
        return None
    value = data.get("retries") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))
