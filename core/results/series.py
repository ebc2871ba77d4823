"""Metric series: what every reader produces and every front end plots.

A series is three parallel ``array('d')`` columns (step, value, wall time; NaN for an unknown
time) so 100,000 points cost 2.4 MB, not 100,000 tuples. Times are when the training code
logged the value (the file says so); a reader that cannot know it leaves NaN rather than
stamping the moment we happened to read the line.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

NAN = float("nan")


@dataclass
class Series:
    """One metric of one run, from one source file."""

    name: str
    source: str
    steps: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))
    times: array[float] = field(default_factory=lambda: array("d"))

    def append(self, step: float, value: float, time: float | None = None) -> None:
        self.steps.append(step)
        self.values.append(value)
        self.times.append(NAN if time is None else time)

    def __len__(self) -> int:
        return len(self.values)

    def last(self) -> tuple[float, float, float | None] | None:
        """(step, value, time) of the latest point, or None when empty."""
        if not self.values:
            return None
        time = self.times[-1]
        return self.steps[-1], self.values[-1], None if math.isnan(time) else time

    def has_times(self) -> bool:
        return any(not math.isnan(t) for t in self.times)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "points": [
                {
                    "step": _number(s),
                    "value": _json_float(v),
                    "time": None if math.isnan(t) else t,
                }
                for s, v, t in zip(self.steps, self.values, self.times, strict=True)
            ],
        }


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _json_float(value: float) -> float | str:
    """JSON has no NaN or infinity: they are written as the strings Python prints."""
    return value if math.isfinite(value) else repr(value)


@dataclass(frozen=True, slots=True)
class Point:
    """One value as a reader decoded it, before it joins its series."""

    name: str
    step: float
    value: float
    time: float | None = None
