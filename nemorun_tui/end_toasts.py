"""What the app says when jobs end: one toast per job, or one per experiment for a burst.

Why: a sweep's points end together (a 6-point sweep ended within one refresh showed six
toasts stacked over the Runs pane). Ends seen within :data:`GATHER_SECONDS` of each other are
said together, per experiment, with the count of each state; a single end is said as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: How long the app gathers job ends before it says them.
GATHER_SECONDS = 0.3


@dataclass(frozen=True)
class Toast:
    message: str
    title: str
    severity: str


def end_toasts(changes: Sequence[Any]) -> list[Toast]:
    """Toasts for ``StateChange``s into terminal states, in the order experiments ended."""
    by_exp: dict[str, list[Any]] = {}
    for change in changes:
        by_exp.setdefault(change.exp_id, []).append(change)
    toasts = []
    for exp_id, group in by_exp.items():
        ok = all(c.new.value == "SUCCEEDED" for c in group)
        severity = "information" if ok else "warning"
        if len(group) == 1:
            change = group[0]
            reason = f" ({change.report.reason})" if change.report.reason else ""
            code = change.report.exit_code
            exit_text = f", exit {code}" if code is not None else ""
            message = f"{exp_id} / {change.job}: {change.new.value}{exit_text}{reason}"
            toasts.append(Toast(message, "Run ended", severity))
            continue
        counts = Counter(c.new.value for c in group)
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        toasts.append(
            Toast(f"{exp_id}: {len(group)} jobs ended ({summary})", "Runs ended", severity)
        )
    return toasts
