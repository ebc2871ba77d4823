"""Job states and status reports shared by every layer.

States follow torchx/NeMo Run names so users of either feel at home. A report always says
*who* said so (``source``) and *when* (``observed_at``): the app shows both, and the monitor
never invents a state a backend did not report.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    """Lifecycle of one job. ``UNKNOWN`` means "nobody knows this job", never success."""

    UNSUBMITTED = "UNSUBMITTED"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """True once the job can no longer change state on its own."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class StatusReport:
    """What a backend observed about one job at one moment.

    ``started_at``/``ended_at`` are when the job itself started and ended, as the backend
    recorded them (the supervisor's result file, the scheduler's accounting), not when
    someone looked: a job seen ended 8 s late still ended when it did. None when unknown.
    """

    state: JobState
    source: str
    observed_at: float = field(default_factory=time.time)
    exit_code: int | None = None
    reason: str | None = None
    restarts: int = 0
    started_at: float | None = None
    ended_at: float | None = None

    def end_time(self) -> float:
        """When an ended job ended: its own end time, never later than it was seen."""
        if self.ended_at is None:
            return self.observed_at
        return min(self.ended_at, self.observed_at)

    def to_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "source": self.source,
            "observed_at": self.observed_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "restarts": self.restarts,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatusReport:
        return cls(
            state=JobState(str(data["state"])),
            source=str(data.get("source", "")),
            observed_at=float(data.get("observed_at") or 0.0),
            exit_code=data.get("exit_code"),
            reason=data.get("reason"),
            restarts=int(data.get("restarts") or 0),
            started_at=_time(data.get("started_at")),
            ended_at=_time(data.get("ended_at")),
        )


def _time(value: object) -> float | None:
    """A stored timestamp, or None for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if number == number and abs(number) < 1e11 else None


_ACTIVE_ORDER = (
    JobState.RUNNING,
    JobState.PENDING,
    JobState.SUBMITTED,
    JobState.UNSUBMITTED,
    JobState.UNKNOWN,
)


def aggregate_state(states: list[JobState]) -> JobState:
    """One state for an experiment: live states win, then FAILED > CANCELLED > SUCCEEDED.

    An experiment with no jobs is UNSUBMITTED; one whose jobs are all SUCCEEDED succeeded.
    """
    if not states:
        return JobState.UNSUBMITTED
    present = set(states)
    for state in _ACTIVE_ORDER:
        if state in present:
            return state
    if JobState.FAILED in present:
        return JobState.FAILED
    if JobState.CANCELLED in present:
        return JobState.CANCELLED
    return JobState.SUCCEEDED
