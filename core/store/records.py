"""The stored schema: what one experiment's manifest holds, checked field by field on read.

A manifest is read back from disk, where anything may have happened to it (a hand edit, a
tool that wrote the wrong types, a name like ``../../x``). ``from_dict`` therefore checks
every field's type and range and raises :class:`DamagedManifestError`'s ``ValueError``
cousin with a reason, so a damaged experiment is listed as DAMAGED instead of failing later
in a place that cannot say why (``time.localtime(1e300)``, a path outside the store).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.engine.protocol import Handle
from core.engine.states import JobState, StatusReport, aggregate_state

SCHEMA_VERSION = 1
#: Names become folder names: at most one path component of this many bytes.
MAX_NAME_BYTES = 255
#: Latest plausible timestamp (year 9999): beyond it ``time.localtime`` overflows.
MAX_TIME = 253_402_300_799.0
_STATES = {s.value: s for s in JobState}


class StoreError(Exception):
    """A store problem the user can act on; ``str()`` is one line."""


class ExperimentNotFound(StoreError):
    """No experiment matches the given id, prefix or title."""


class AmbiguousExperiment(StoreError):
    """A prefix matched several experiments."""


class StoreWriteError(StoreError):
    """The store could not be written (disk full, read-only, permissions): one line."""


class LiveRunError(StoreError):
    """An action that needs a finished experiment (delete) was asked of a live one."""


class DamagedManifestError(StoreError):
    """A manifest exists but cannot be read; listed as damaged, never fatal to a listing."""

    def __init__(self, exp_id: str, reason: str) -> None:
        super().__init__(f"experiment {_short(exp_id)} is damaged: {reason}")
        self.exp_id = exp_id
        self.reason = reason


class DamagedFileError(StoreError, ValueError):
    """A job file (task.json, executor.json, …) exists but cannot be used."""


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a folder name inside the store (None: it can).

    The same rule as the engine's for new jobs (no '/', '|' or control characters, no
    leading '.'), plus NUL and the filesystem's length limit: names come back from disk and
    are joined to paths, so they are checked again on every read.
    """
    if not isinstance(name, str):
        return f"a name must be text, not {type(name).__name__}"
    if not name.strip():
        return "a name must not be empty"
    if name[0] == "." or "/" in name or "|" in name or not name.isprintable():
        shown = name if name.isprintable() else ascii(name)[1:-1]  # never a raw control
        return f"`{_short(shown)}` is not a usable name (no '/', '|', controls, leading '.')"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"a name is longer than {MAX_NAME_BYTES} bytes ({len(name)} chars)"
    return None


# -- field checks (each raises ValueError naming the field) -------------------------------
def _text(data: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        if key not in data:
            raise KeyError(key)
        raise ValueError(f"`{key}` must be text, not {type(value).__name__}")
    return value


def _opt_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"`{key}` must be text or null, not {type(value).__name__}")
    return value


def _time(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`{key}` must be a number, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0.0 <= seconds <= MAX_TIME:
        raise ValueError(f"`{key}` is not a plausible time ({seconds:g})")
    return seconds


def _opt_time(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return None if value is None else _time(value, key)


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**63:
        raise ValueError(f"`{key}` must be an integer")
    return value


def _texts(data: Mapping[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"`{key}` must be a list of text")
    return list(value)


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"`{key}` must be true or false, not {type(value).__name__}")
    return value


def _handle(value: Any) -> Handle | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("`handle` must be an object")
    for key in ("backend", "target", "job_id"):
        if not isinstance(value.get(key), str):
            raise ValueError(f"`handle.{key}` must be text")
    return Handle.from_dict(value)


@dataclass
class Attempt:
    """One earlier submission of a job that was retried (``retries=N`` on its profile).

    The job's own fields describe its current (last) attempt; these are the ones before it,
    oldest first, numbered from 1, each with its handle, outcome and times.
    """

    number: int
    handle: Handle | None = None
    state: JobState = JobState.FAILED
    exit_code: int | None = None
    reason: str | None = None
    submitted_at: float | None = None
    ended_at: float | None = None
    restarts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "handle": self.handle.to_dict() if self.handle else None,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "submitted_at": self.submitted_at,
            "ended_at": self.ended_at,
            "restarts": self.restarts,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Attempt:
        if not isinstance(data, dict):
            raise ValueError("an attempt must be an object")
        number = _opt_int(data, "number")
        if number is None or number < 1:
            raise ValueError("an attempt needs a `number` >= 1")
        state = data.get("state", "FAILED")
        if not isinstance(state, str) or state not in _STATES:
            raise ValueError(f"attempt {number} has an unknown state {_short(repr(state), 40)}")
        return cls(
            number=number,
            handle=_handle(data.get("handle")),
            state=_STATES[state],
            exit_code=_opt_int(data, "exit_code"),
            reason=_opt_text(data, "reason"),
            submitted_at=_opt_time(data, "submitted_at"),
            ended_at=_opt_time(data, "ended_at"),
            restarts=max(0, _opt_int(data, "restarts") or 0),
        )


def _attempts(data: Mapping[str, Any]) -> list[Attempt]:
    value = data.get("attempts")
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 10_000:
        raise ValueError("`attempts` must be a list")
    return [Attempt.from_dict(a) for a in value]


@dataclass
class JobRecord:
    """One job of an experiment as the store knows it.

    ``attempts`` are the earlier submissions of a retried job (the job's own fields are its
    current attempt: see :attr:`attempt`). ``workdir`` is where it was launched from (a retry
    runs there again). ``last_output_at``/``log_bytes``/``stalled`` are hang detection's
    (core.engine.stall): STALLED is a flag on a RUNNING job, not a state.
    """

    name: str
    kind: str
    backend: str
    profile: str | None = None
    handle: Handle | None = None
    state: JobState = JobState.UNSUBMITTED
    source: str | None = None
    observed_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    restarts: int = 0
    dependencies: list[str] = field(default_factory=list)
    submitted_at: float | None = None
    ended_at: float | None = None
    #: When the job itself started running, as its backend said (None: not yet, or the
    #: backend did not say); a queued job's wait is ``started_at - submitted_at``.
    started_at: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    workdir: str | None = None
    last_output_at: float | None = None
    log_bytes: int | None = None
    stalled: bool = False

    @property
    def attempt(self) -> int:
        """The number of the current attempt (1 until the job is retried)."""
        return len(self.attempts) + 1

    def all_attempts(self) -> list[Attempt]:
        """Every attempt, the current one last (built from the job's own fields)."""
        current = Attempt(
            number=self.attempt,
            handle=self.handle,
            state=self.state,
            exit_code=self.exit_code,
            reason=self.reason,
            submitted_at=self.submitted_at,
            ended_at=self.ended_at,
            restarts=self.restarts,
        )
        return [*self.attempts, current]

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        # Written only when used, so manifests of jobs without them stay as they were.
        if self.attempts:
            extra["attempts"] = [a.to_dict() for a in self.attempts]
        if self.workdir is not None:
            extra["workdir"] = self.workdir
        if self.last_output_at is not None:
            extra["last_output_at"] = self.last_output_at
        if self.log_bytes is not None:
            extra["log_bytes"] = self.log_bytes
        if self.stalled:
            extra["stalled"] = True
        return {
            **extra,
            "name": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "profile": self.profile,
            "handle": self.handle.to_dict() if self.handle else None,
            "state": self.state.value,
            "source": self.source,
            "observed_at": self.observed_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "restarts": self.restarts,
            "dependencies": list(self.dependencies),
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        """A job read back from disk; ``ValueError``/``KeyError`` name what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a job entry must be an object, not {type(data).__name__}")
        name = _text(data, "name")
        problem = name_problem(name)
        if problem:
            raise ValueError(f"job name: {problem}")
        state = data.get("state", "UNSUBMITTED")
        if not isinstance(state, str) or state not in _STATES:
            raise ValueError(f"job `{name}` has an unknown state {_short(repr(state), 40)}")
        restarts = _opt_int(data, "restarts") or 0
        dependencies = _texts(data, "dependencies")
        return cls(
            name=name,
            kind=_text(data, "kind", ""),
            backend=_text(data, "backend"),
            profile=_opt_text(data, "profile"),
            handle=_handle(data.get("handle")),
            state=_STATES[state],
            source=_opt_text(data, "source"),
            observed_at=_opt_time(data, "observed_at"),
            exit_code=_opt_int(data, "exit_code"),
            reason=_opt_text(data, "reason"),
            restarts=max(0, restarts),
            dependencies=dependencies,
            submitted_at=_opt_time(data, "submitted_at"),
            ended_at=_opt_time(data, "ended_at"),
            started_at=_opt_time(data, "started_at"),
            attempts=_attempts(data),
            workdir=_opt_text(data, "workdir"),
            last_output_at=_opt_time(data, "last_output_at"),
            log_bytes=_opt_int(data, "log_bytes"),
            stalled=data.get("stalled") is True,
        )

    @property
    def duration(self) -> float | None:
        """Seconds the job ran: from its start to its end (or to now while live). From its
        submission when the backend never said when it started (the time queued included).
        None while it waits to start: it has not run yet."""
        if self.started_at is None and self.state in _NOT_STARTED:
            return None
        begin = self.started_at if self.started_at is not None else self.submitted_at
        if begin is None:
            return None
        end = self.ended_at if self.ended_at is not None else time.time()
        return max(0.0, end - begin)

    @property
    def queued(self) -> float | None:
        """Seconds between submission and start, when both are known."""
        if self.submitted_at is None or self.started_at is None:
            return None
        return max(0.0, self.started_at - self.submitted_at)


_NOT_STARTED = frozenset({JobState.UNSUBMITTED, JobState.SUBMITTED, JobState.PENDING})


@dataclass
class ExperimentRecord:
    """The manifest of one experiment."""

    id: str
    title: str
    created_at: float
    jobs: list[JobRecord] = field(default_factory=list)
    parent: str | None = None
    tags: list[str] = field(default_factory=list)
    workspace: str | None = None
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION
    #: A free-text note (run management); empty when none.
    note: str = ""
    #: Hidden from the default listings (``ls --archived`` shows it); nothing else changes.
    archived: bool = False
    #: The directory the jobs were launched from (a relaunch runs there again).
    workdir: str | None = None

    def job(self, name: str) -> JobRecord:
        for job in self.jobs:
            if job.name == name:
                return job
        known = ", ".join(j.name for j in self.jobs) or "none"
        raise StoreError(f"experiment {self.id} has no job `{_short(name)}` (jobs: {known})")

    @property
    def state(self) -> JobState:
        return aggregate_state([j.state for j in self.jobs])

    @property
    def stalled_jobs(self) -> int:
        """How many RUNNING jobs are flagged STALLED (core.engine.stall); a flag, not a state."""
        return sum(1 for j in self.jobs if j.stalled and j.state is JobState.RUNNING)

    @property
    def backends(self) -> list[str]:
        return sorted({j.backend for j in self.jobs})

    @property
    def executors(self) -> list[str]:
        """Where the jobs ran, as ``backend/profile`` (just the backend when the profile is
        unnamed or named after it): what a user picked, e.g. ``slurm/ci`` vs ``slurm/big``."""
        return sorted({executor_label(j.backend, j.profile) for j in self.jobs})

    @property
    def ended_at(self) -> float | None:
        if not self.jobs or not self.state.is_terminal:
            return None
        ends = [j.ended_at for j in self.jobs if j.ended_at is not None]
        return max(ends) if ends else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "parent": self.parent,
            "tags": list(self.tags),
            "workspace": self.workspace,
            "recipe": self.recipe,
            "overrides": list(self.overrides),
            "jobs": [j.to_dict() for j in self.jobs],
            "note": self.note,
            "archived": self.archived,
            "workdir": self.workdir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentRecord:
        """A manifest read back from disk, every field checked (see the module docstring)."""
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ValueError("missing schema_version")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version} is newer than this nemorun-tui ({SCHEMA_VERSION})"
            )
        exp_id = _text(data, "id")
        problem = name_problem(exp_id)
        if problem:
            raise ValueError(f"id: {problem}")
        jobs_data = data.get("jobs")
        if jobs_data is None:
            jobs_data = []
        if not isinstance(jobs_data, list):
            raise ValueError(f"`jobs` must be a list, not {type(jobs_data).__name__}")
        jobs = [JobRecord.from_dict(j) for j in jobs_data]
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError("two jobs have the same name")
        return cls(
            id=exp_id,
            title=_text(data, "title"),
            created_at=_time(data["created_at"], "created_at"),
            jobs=jobs,
            parent=_opt_text(data, "parent"),
            tags=_texts(data, "tags"),
            workspace=_opt_text(data, "workspace"),
            recipe=_opt_text(data, "recipe"),
            overrides=_texts(data, "overrides"),
            schema_version=version,
            note=_text(data, "note", ""),
            archived=_flag(data, "archived"),
            workdir=_opt_text(data, "workdir"),
        )


@dataclass(slots=True)
class ExperimentSummary:
    """One row of a listing, served from the index (fields in the index's column order)."""

    id: str
    title: str
    created_at: float
    state: str
    parent: str | None = None
    tags: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    n_jobs: int = 0
    ended_at: float | None = None
    damaged: str | None = None
    executors: tuple[str, ...] = ()
    archived: bool = False
    note: str = ""
    #: RUNNING jobs flagged STALLED (hang detection): the Runs table marks the row.
    stalled: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "archived": self.archived,
            "note": self.note,
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "state": self.state,
            "parent": self.parent,
            "tags": list(self.tags),
            "backends": list(self.backends),
            "executors": list(self.executors),
            "jobs": self.n_jobs,
            "damaged": self.damaged,
        }


@dataclass(frozen=True)
class StateChange:
    """A transition the store recorded (what the monitor publishes to the app)."""

    exp_id: str
    job: str
    old: JobState
    new: JobState
    report: StatusReport


_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(title: str) -> str:
    """A short, filesystem-safe form of a title used as the id's readable prefix."""
    slug = _SLUG.sub("-", title.lower()).strip("-")[:40].strip("-")
    return slug or "exp"


def executor_label(backend: str, profile: str | None) -> str:
    """``backend/profile``, or the backend alone when the profile adds nothing."""
    return backend if not profile or profile == backend else f"{backend}/{profile}"


def dump_manifest(record: ExperimentRecord) -> str:
    return json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n"


def parse_manifest(exp_id: str, raw: bytes) -> ExperimentRecord:
    """The record in ``raw``, or :class:`DamagedManifestError` saying what is wrong."""
    if not raw.strip():
        raise DamagedManifestError(exp_id, "experiment.json is empty")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise DamagedManifestError(exp_id, "experiment.json is nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = _short(str(exc), 120)
        raise DamagedManifestError(
            exp_id, f"experiment.json is not valid JSON ({reason})"
        ) from None
    if not isinstance(data, dict):
        raise DamagedManifestError(exp_id, "experiment.json is not a JSON object")
    try:
        record = ExperimentRecord.from_dict(data)
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DamagedManifestError(exp_id, f"experiment.json: {_short(detail, 160)}") from None
    if record.id != exp_id:
        # A folder renamed or copied by hand: reading it as the id inside would show one
        # experiment twice and let writes land in the wrong folder.
        raise DamagedManifestError(
            exp_id,
            f"experiment.json belongs to `{_short(record.id)}`, not to its folder `{exp_id}`",
        )
    return record
