"""``ls`` filters: state, title, tag, age and archived, applied to the index's summaries.

Filtering happens on the summaries the index already serves (10,000 rows filter in a few
milliseconds), so every filter has the same meaning as the app's ``state:``/``tag:`` ones and
no SQL is built from user input.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from typing import Any

#: Every state a row can show, DAMAGED included (a damaged manifest has no job states).
STATES = (
    "UNSUBMITTED",
    "SUBMITTED",
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
    "UNKNOWN",
    "DAMAGED",
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGO = re.compile(r"(\d{1,6})\s*([smhdw])")


class FilterError(ValueError):
    """A filter that cannot mean anything; one line (the CLI exits 2)."""


class ListingFilter:
    """What ``ls`` shows: ``archived`` None for all, False for the default listing.

    A plain class, not a dataclass: ``ls`` stays clear of ``dataclasses`` (and ``inspect``).
    """

    __slots__ = ("archived", "since", "states", "tags", "title")

    def __init__(
        self,
        states: frozenset[str] = frozenset(),
        title: str | None = None,
        tags: tuple[str, ...] = (),
        since: float | None = None,
        archived: bool | None = False,
    ) -> None:
        self.states = states
        self.title = title
        self.tags = tags
        self.since = since
        self.archived = archived

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ListingFilter:
        archived: bool | None = False
        if getattr(args, "all", False):
            archived = None
        elif getattr(args, "archived", False):
            archived = True
        return cls(
            states=parse_states(args.state) if getattr(args, "state", None) else frozenset(),
            title=args.title.casefold() if getattr(args, "title", None) else None,
            tags=tuple(t for given in getattr(args, "tag", None) or [] for t in given.split(",")),
            since=parse_since(args.since) if getattr(args, "since", None) else None,
            archived=archived,
        )

    @property
    def is_default(self) -> bool:
        """The plain listing (the one the index keeps rendered)."""
        return (
            not self.states
            and self.title is None
            and not self.tags
            and self.since is None
            and self.archived is False
        )

    @property
    def in_python(self) -> bool:
        """Some filter needs every row (the archived one and a limit are SQL's)."""
        return bool(self.states or self.title is not None or self.tags or self.since is not None)

    def keeps(self, row: Any) -> bool:
        state = "DAMAGED" if row.damaged else row.state
        if self.states and state not in self.states:
            return False
        if self.title is not None and self.title not in row.title.casefold():
            return False
        if self.tags and not set(self.tags) <= set(row.tags):
            return False
        return self.since is None or row.created_at >= self.since

    def apply(self, rows: Sequence[Any]) -> list[Any]:
        return [r for r in rows if self.keeps(r)]


def parse_states(text: str) -> frozenset[str]:
    """``running,failed`` → the states, in any case; an unknown one names the known ones."""
    out = set()
    for part in text.split(","):
        name = part.strip().upper()
        if not name:
            continue
        if name not in STATES:
            raise FilterError(
                f"--state: unknown state {part.strip()!r} (states: {', '.join(STATES).lower()})"
            )
        out.add(name)
    if not out:
        raise FilterError("--state needs a state, e.g. --state running,failed")
    return frozenset(out)


def parse_since(text: str, now: float | None = None) -> float:
    """A start time: an age (``30m``, ``2h``, ``7d``, ``1w``, or ``1d12h``), or a local
    date ``YYYY-MM-DD`` with an optional ``HH:MM[:SS]``."""
    value = text.strip()
    now = time.time() if now is None else now
    if _AGO.fullmatch(value) or re.fullmatch(r"(?:\d{1,6}\s*[smhdw]\s*)+", value):
        return now - sum(int(n) * _UNITS[u] for n, u in _AGO.findall(value))
    for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"):
        try:
            return time.mktime(time.strptime(value, fmt))
        except (ValueError, OverflowError):
            continue
    shown = value if len(value) <= 30 else value[:27] + "..."
    raise FilterError(
        f"--since takes an age (30m, 2h, 7d) or a date (2026-12-01[ 14:00]), got {shown!r}"
    )
