"""What a launch reports while it runs: typed events, one stream per launch.

:meth:`core.engine.Engine.launch` is the only launch path; front ends (CLI, app, Python API)
pass a callback and present these events as they like. Each launch gets its own callback, so
two launches that overlap (two Compose launches in the app) never mix their upload progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine.protocol import Handle
    from core.engine.states import JobState
    from core.store import ExperimentRecord


@dataclass(frozen=True)
class Packaged:
    """A job's code was packaged (or its parent's archive reused)."""

    job: str
    sha256: str
    size: int
    reused: bool


@dataclass(frozen=True)
class PackagingWarning:
    """Packaging has something to say before anything is recorded (e.g. a dirty tree)."""

    text: str


@dataclass(frozen=True)
class Recorded:
    """The experiment is in the store, every job UNSUBMITTED; submission starts now."""

    record: ExperimentRecord


@dataclass(frozen=True)
class Uploading:
    """Bytes of a job's code archive sent to its target so far (``total`` may be 0: skipped)."""

    job: str
    done: int
    total: int


@dataclass(frozen=True)
class Submitted:
    """One job's submission ended: a handle, or a recorded failure (``handle`` is None)."""

    job: str
    state: JobState
    handle: Handle | None
    reason: str | None


LaunchEvent = Packaged | PackagingWarning | Recorded | Uploading | Submitted
OnLaunchEvent = Callable[[LaunchEvent], Any]


class NotLaunched(Exception):
    """The front end declined to go on (e.g. the user did not confirm a packaging warning)."""
