"""Text helpers shared by the panes: states, times, durations, ages.

Everything that depends on "now" takes it as an argument so that panes can use the app's
injected clock (snapshot tests pin it; real use passes ``time.time``). Ages and live
durations are rounded coarsely on purpose: a label that changes every second forces a
redraw every second, which is bytes on a slow SSH link for no news.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.engine.states import TERMINAL_STATES as CORE_TERMINAL_STATES
from core.textsafe import escape_cell, sanitize_terminal


@dataclass(frozen=True)
class StateLook:
    """How one state is shown everywhere: glyph, Rich style (theme variables), the Runs
    table's component class, and whether it is live (still to be watched)."""

    glyph: str
    style: str
    css: str
    live: bool


#: The one table of state presentation (Runs, the jobs panel, Detail, toasts).
STATES: dict[str, StateLook] = {
    "UNSUBMITTED": StateLook("○", "$warning", "pending", live=True),
    "SUBMITTED": StateLook("◔", "$warning", "pending", live=True),
    "PENDING": StateLook("◑", "$warning", "pending", live=True),
    "RUNNING": StateLook("▶", "bold $primary", "running", live=True),
    "SUCCEEDED": StateLook("✔", "$success", "succeeded", live=False),
    "FAILED": StateLook("✘", "bold $error", "failed", live=False),
    "CANCELLED": StateLook("■", "dim", "cancelled", live=False),
    "UNKNOWN": StateLook("?", "italic $warning", "unknown", live=True),
    "DAMAGED": StateLook("!", "bold $error", "damaged", live=False),
}
_UNLISTED = STATES["UNKNOWN"]

LIVE_STATES = frozenset(name for name, look in STATES.items() if look.live)
#: States a job reaches for good (core's definition; DAMAGED is a store condition).
TERMINAL_STATES = frozenset(state.value for state in CORE_TERMINAL_STATES)


def look(state: str) -> StateLook:
    """The presentation of ``state`` (an unlisted one looks UNKNOWN)."""
    return STATES.get(state, _UNLISTED)


def state_label(state: str) -> str:
    """``✔ SUCCEEDED``: the glyph keeps states apart for colour-blind users and in mono."""
    return f"{look(state).glyph} {state}"


def when(ts: float | None) -> str:
    """An absolute local time, compact: ``2024-05-01 13:04``."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def when_seconds(ts: float | None) -> str:
    """An absolute local time with seconds, for timelines."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h14m``, ``3d4h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def age(ts: float | None, now: float) -> str:
    """How long ago, coarse enough to change rarely: ``5s``, ``3m``, ``2h``, ``4d``."""
    if ts is None:
        return "never"
    s = max(0, int(now - ts))
    if s < 60:
        return f"{(s // 5) * 5}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def human_bytes(n: int) -> str:
    """``1.2 GB`` style sizes for the log status line."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def cell(value: object) -> str:
    """A stored or job-given string for one line of the screen: controls shown, not sent.

    Titles, tags, job names, reasons and overrides come from the store; an ``ESC c`` or an
    OSC 0 in one must show as ``\\x1b…`` and never reach the terminal (see core.textsafe).
    """
    return escape_cell(str(value))


def block(value: object) -> str:
    """A multi-line string (dry-run output, an error) with every control and sequence
    removed; newlines and tabs stay."""
    return sanitize_terminal(str(value), keep_sgr=False)


def plain_row(table: Any, *cells: Any) -> None:
    """Add a Rich table row whose text cells are never read as markup nor as controls.

    Run titles, overrides (``tags=[a,b]``) and backend messages (``[Errno 2]``) contain
    square brackets; as markup they would vanish or raise. String cells are also passed
    through :func:`cell`; build ``Text`` cells from :func:`cell` values.
    """
    from rich.text import Text

    table.add_row(*(Text(cell(c)) if isinstance(c, str) else c for c in cells))
