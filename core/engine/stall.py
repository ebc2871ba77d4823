"""Hang detection: a RUNNING job whose logs stopped growing is flagged STALLED.

``stall_after`` on a profile (``"15m"``, ``"90s"``, ``"1h30m"``; off by default) says how
long a job may stay silent. STALLED is a flag on the job (``JobRecord.stalled`` with
``last_output_at``, the time of its last output), never a state: the job is still RUNNING
as far as its scheduler knows, and the flag goes away when output resumes or the job ends.

How silence is measured: backends with the optional ``log_activity(handles)`` capability
report, per job, its log bytes and the last modification time of its log files (local: a
``stat``; Slurm: one ``stat`` command for every watched job of the cluster). The last
modification time is the time of the last output, so a fresh process (``nemorun-tui
status``) sees a stall at once, with no history of its own.

``on_stall``: ``"flag"`` only flags; ``"notify"`` also publishes a :class:`StallNotice` to the
monitor's subscribers (the app shows a notification); ``"cancel"`` also cancels the job. The
flag, and every action taken, is an event in the experiment's ``events.jsonl``.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.engine.states import JobState

if TYPE_CHECKING:
    from core.engine.executors import ExecutorProfile
    from core.engine.protocol import Backend, Handle
    from core.store import ExperimentRecord, Store

ON_STALL = ("flag", "notify", "cancel")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


class StallConfigError(ValueError):
    """``stall_after`` or ``on_stall`` cannot be understood."""


def parse_duration(text: Any) -> float | None:
    """``"15m"`` → 900.0; ``"1h30m"``, ``"90s"``, a bare number of seconds; None/"" → None."""
    if text is None or text == "" or text is False:
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", raw):
            seconds = float(raw)
        else:
            parts = _PART.findall(raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise StallConfigError(
                    f"stall_after {text!r} is not a duration (e.g. '15m', '90s', '1h30m')"
                )
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds < 10 * 365 * 86400:
        raise StallConfigError(f"stall_after {text!r} must be a positive duration")
    return seconds


def check_profile(profile: ExecutorProfile) -> None:
    """Raise :class:`StallConfigError` on an unusable ``stall_after``/``on_stall``."""
    parse_duration(getattr(profile, "stall_after", None))
    action = getattr(profile, "on_stall", "flag") or "flag"
    if action not in ON_STALL:
        raise StallConfigError(f"on_stall {action!r} must be one of {', '.join(ON_STALL)}")


@dataclass(frozen=True)
class StallNotice:
    """A job was flagged STALLED and its profile asked to be told (``on_stall="notify"``)."""

    exp_id: str
    job: str
    last_output_at: float
    silent_for: float
    action: str


@dataclass
class _Watched:
    exp_id: str
    job: str
    handle: Handle
    after: float
    action: str
    stalled: bool


async def check_stalls(
    store: Store,
    records: Sequence[ExperimentRecord],
    profile_of: Callable[[str, str], ExecutorProfile],
    backend_for: Callable[[ExecutorProfile], Backend],
    publish: Callable[[Any], None],
    *,
    now: float | None = None,
) -> list[StallNotice]:
    """Flag (or unflag) the RUNNING jobs of ``records`` that watch for stalls; act on new ones.

    One ``log_activity`` call per backend instance; a backend without it is skipped (its
    jobs are never flagged: silence cannot be measured there). Errors never stop a tick.
    """
    groups: dict[int, tuple[Any, list[_Watched]]] = defaultdict(lambda: (None, []))
    for record in records:
        for job in record.jobs:
            if job.state is not JobState.RUNNING or job.handle is None:
                if job.stalled and job.state.is_terminal:
                    _set_flag(store, record.id, job.name, False, job.last_output_at)
                continue
            try:
                profile = profile_of(record.id, job.name)
                after = parse_duration(getattr(profile, "stall_after", None))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if after is None:
                continue
            backend = backend_for(profile)
            if getattr(backend, "log_activity", None) is None:
                continue
            entry = groups[id(backend)]
            if entry[0] is None:
                groups[id(backend)] = entry = (backend, entry[1])
            action = str(getattr(profile, "on_stall", "flag") or "flag")
            entry[1].append(_Watched(record.id, job.name, job.handle, after, action, job.stalled))
    notices: list[StallNotice] = []
    for backend, watched in groups.values():
        try:
            activity = await backend.log_activity([w.handle for w in watched])
        except Exception:  # a failed stat is no evidence of a stall
            continue
        t = time.time() if now is None else now
        for w in watched:
            seen = activity.get(w.handle)
            if seen is None:
                continue
            _, last_output = seen
            silent = t - last_output
            stalled = silent >= w.after
            if stalled == w.stalled:
                continue
            _set_flag(store, w.exp_id, w.job, stalled, last_output)
            if not stalled:
                continue
            notice = StallNotice(w.exp_id, w.job, last_output, silent, w.action)
            notices.append(notice)
            if w.action == "notify":
                publish(notice)
            elif w.action == "cancel":
                await _cancel(store, backend, w)
    return notices


def _set_flag(
    store: Store, exp_id: str, job: str, stalled: bool, last_output: float | None
) -> None:
    def mutate(record: ExperimentRecord) -> bool:
        rec = record.job(job)
        if rec.stalled == stalled and rec.last_output_at == last_output:
            return False
        rec.stalled = stalled
        rec.last_output_at = last_output
        return True

    store.update(exp_id, mutate)
    store.append_event(
        exp_id,
        {
            "kind": "stalled" if stalled else "output-resumed",
            "job": job,
            "last_output_at": last_output,
        },
    )


async def _cancel(store: Store, backend: Any, w: _Watched) -> None:
    store.append_event(w.exp_id, {"kind": "cancel-requested", "job": w.job, "by": "stall"})
    try:
        await backend.cancel(w.handle)
    except Exception as exc:  # recorded; the flag stays
        store.append_event(
            w.exp_id, {"kind": "stall-cancel-failed", "job": w.job, "error": str(exc)}
        )
