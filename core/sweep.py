"""Parameter sweeps: Hydra-multirun-style values expanded into points, one job per point.

``nemorun-tui run train -m optimizer.lr=1e-3,3e-4 seed=range(0,3)`` is six jobs in one
experiment. Why this lives apart from :mod:`core.overrides`: a sweep value is *several*
override values (``1e-3,3e-4``), and only after splitting it does each point go through the
ordinary override check, so a sweep accepts exactly what a single run accepts.

Value syntax (after Hydra's):

* ``a=1,2,3`` a comma list; commas inside quotes or brackets do not split
  (``a='x,y'`` is one value, ``a=[1,2],[3]`` two lists), nor does ``\\,``;
* ``a=range(1,10,2)`` like Python's range (end excluded; floats allowed);
* ``a=choice(x,y)`` the listed values (the same as ``a=x,y``);
* ``a=5`` one value: the same in every point, so not part of the job names.

Points form the cartesian grid (the first key varies slowest, as in Hydra), or with
``mode="zip"`` the i-th values of every list together (the lists must be equally long).
Every point is built and checked before anything is written (:func:`check_points`): one bad
value anywhere refuses the whole sweep with the point it belongs to.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.overrides import OverrideError, parse_override

__all__ = [
    "MAX_POINTS",
    "Point",
    "SweepError",
    "SweepParam",
    "check_points",
    "expand",
    "parse_param",
    "split_values",
]

#: Most points one sweep may have: past it a typo (``range(0,1e9)``) would write a million
#: job folders; the grid's size is computed before any point is made.
MAX_POINTS = 10_000
#: Longest job name made from the varying values, in UTF-8 bytes (the engine allows 128).
MAX_NAME_BYTES = 100
#: The file in each point's job folder saying which values it took (the sweep view reads it).
POINT_FILE = "point.json"

SweepMode = Literal["grid", "zip"]
_FUNCTION = re.compile(r"\A\s*(range|choice)\s*\((.*)\)\s*\Z", re.DOTALL)
_CLOSE = {"(": ")", "[": "]", "{": "}"}


class SweepError(OverrideError):
    """A sweep cannot be expanded or one of its points is invalid; ``str()`` is one line."""


@dataclass(frozen=True)
class SweepParam:
    """One ``path op values`` item of a sweep: the dotted path and its value texts."""

    path: str
    op: str
    values: tuple[str, ...]

    @property
    def varies(self) -> bool:
        return len(self.values) > 1

    def override(self, value: str) -> str:
        return f"{self.path}{self.op}{value}"


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its overrides (every parameter) and the values that vary."""

    index: int
    name: str
    overrides: tuple[str, ...]
    #: Varying dotted path -> the value as shown (quotes removed), in parameter order.
    values: dict[str, str] = field(default_factory=dict)

    def to_dict(self, mode: str, throttle: int | None = None) -> dict[str, Any]:
        """What :data:`POINT_FILE` holds: enough to show and relaunch the point."""
        return {
            "index": self.index,
            "values": dict(self.values),
            "overrides": list(self.overrides),
            "mode": mode,
            "throttle": throttle,
        }


# -- parsing ---------------------------------------------------------------------------------
def split_values(raw: str) -> list[str]:
    """The values of one sweep item (``1,2``, ``range(0,3)``, ``choice(a,b)``) as texts."""
    match = _FUNCTION.match(raw)
    if match is not None:
        kind, inner = match[1], match[2]
        args = _split_top(inner)
        if kind == "range":
            return _range(args, raw)
        if not args or any(not a.strip() for a in args):
            raise SweepError(f"`{raw}`: choice() needs values, e.g. choice(a,b)")
        return [a.strip() for a in args]
    parts = _split_top(raw)
    if len(parts) > 1 and any(not p.strip() for p in parts):
        raise SweepError(f"`{raw}`: an empty value in a comma list (write '' for empty text)")
    return [p.strip() if len(parts) > 1 else p for p in parts]


def _split_top(text: str) -> list[str]:
    """Split at commas outside quotes and brackets; ``\\,`` is a literal comma."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    stack: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            current.append(ch)
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch == "\\" and text[i + 1 : i + 2] == ",":
            current.append(",")
            i += 1
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch in _CLOSE:
            stack.append(_CLOSE[ch])
            current.append(ch)
        elif stack and ch == stack[-1]:
            stack.pop()
            current.append(ch)
        elif ch == "," and not stack:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    if quote is not None:
        raise SweepError(f"`{text}`: unterminated quote {quote}")
    parts.append("".join(current))
    return parts


def _number(text: str, raw: str) -> int | float:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SweepError(f"`{raw}`: range() takes numbers, got `{text.strip()}`")
    return value


def _range(args: list[str], raw: str) -> list[str]:
    if not 1 <= len(args) <= 3 or any(not a.strip() for a in args):
        raise SweepError(f"`{raw}`: range() takes 1 to 3 numbers: range(start, stop[, step])")
    nums = [_number(a, raw) for a in args]
    start: int | float = 0 if len(nums) == 1 else nums[0]
    stop: int | float = nums[0] if len(nums) == 1 else nums[1]
    step: int | float = nums[2] if len(nums) == 3 else 1
    if step == 0:
        raise SweepError(f"`{raw}`: range() step must not be zero")
    count = max(0, math.ceil((stop - start) / step))
    if count == 0:
        raise SweepError(f"`{raw}`: range() is empty")
    if count > MAX_POINTS:
        raise SweepError(f"`{raw}`: range() has {count} values (at most {MAX_POINTS})")
    if all(isinstance(n, int) for n in (start, stop, step)):
        return [str(start + i * step) for i in range(count)]
    # Floats: start + i*step, rounded so 0.1 steps read 0.3, not 0.30000000000000004.
    return [repr(round(start + i * step, 12)) for i in range(count)]


def parse_param(text: str) -> SweepParam:
    """``path op values`` → :class:`SweepParam` (the path checked like any override)."""
    override = parse_override(text)
    return SweepParam(override.dotted, override.op, tuple(split_values(override.raw_value)))


def _literal(value: Any) -> str:
    """A Python value as override text (``run.sweep`` lists): quoted strings stay one value."""
    import enum

    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, str):
        return repr(value)
    return repr(value)


def params_from_mapping(values: Mapping[str, Any]) -> list[SweepParam]:
    """``run.sweep``'s ``{"a.b": [1, 2], "c": "range(0,3)"}`` → parameters.

    A string is sweep syntax (as on the command line); any other sequence lists the values
    themselves; a scalar is one value for every point.
    """
    params = []
    for key, spec in values.items():
        if isinstance(spec, str):
            params.append(parse_param(f"{key}={spec}"))
            continue
        parse_override(f"{key}=0")  # the path, checked like any override
        if isinstance(spec, Sequence | range):
            items = [_literal(v) for v in spec]
            if not items:
                raise SweepError(f"`{key}`: no values to sweep over")
        else:
            items = [_literal(spec)]
        params.append(SweepParam(key, "=", tuple(items)))
    return params


# -- expansion -------------------------------------------------------------------------------
def expand(
    params: Sequence[SweepParam], mode: SweepMode = "grid", *, base_name: str = "point"
) -> list[Point]:
    """Every point of the sweep, in order; raises :class:`SweepError` before making any
    when the grid is too large or zipped lists differ in length."""
    if mode not in ("grid", "zip"):
        raise SweepError(f"sweep mode must be `grid` or `zip`, not `{mode}`")
    seen: set[str] = set()
    for p in params:
        if p.path in seen:
            raise SweepError(f"`{p.path}` is swept twice; give all its values in one item")
        seen.add(p.path)
    varying = [p for p in params if p.varies]
    if mode == "zip":
        lengths = {len(p.values) for p in varying}
        if len(lengths) > 1:
            sizes = ", ".join(f"{p.path}: {len(p.values)}" for p in varying)
            raise SweepError(f"zip needs equally long value lists ({sizes})")
        count = lengths.pop() if lengths else 1
        combos: Any = (tuple(p.values[i % len(p.values)] for p in params) for i in range(count))
    else:
        count = math.prod(len(p.values) for p in params)
        combos = itertools.product(*(p.values for p in params))
    if count > MAX_POINTS:
        raise SweepError(f"the sweep has {count} points (at most {MAX_POINTS})")
    labels = _labels(varying)
    points: list[Point] = []
    names: set[str] = set()
    for index, combo in enumerate(combos):
        overrides = tuple(p.override(v) for p, v in zip(params, combo, strict=True))
        shown = {p.path: _shown_value(v) for p, v in zip(params, combo, strict=True) if p.varies}
        name = _job_name(labels, shown, base_name, index, names)
        names.add(name)
        points.append(Point(index, name, overrides, shown))
    return points


def _labels(varying: Sequence[SweepParam]) -> dict[str, str]:
    """Short column/name labels: the last path component, unless two share it."""
    last = [p.path.rsplit(".", 1)[-1] for p in varying]
    return {
        p.path: (short if last.count(short) == 1 else p.path)
        for p, short in zip(varying, last, strict=True)
    }


def _shown_value(text: str) -> str:
    """A value as a person reads it: ``'x,y'`` shows as ``x,y``."""
    stripped = text.strip()
    if stripped[:1] in "'\"" and len(stripped) >= 2:
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return stripped
        if isinstance(value, str):
            return value
    return stripped


_UNSAFE = re.compile(r"[/|\x00-\x1f\x7f]")


def _job_name(
    labels: Mapping[str, str], shown: Mapping[str, str], base: str, index: int, taken: set[str]
) -> str:
    """``lr=0.001,seed=2``; unusable characters become ``_``; clipped and made unique."""
    if not shown:
        name = base
    else:
        name = ",".join(f"{labels[path]}={value}" for path, value in shown.items())
    name = _UNSAFE.sub("_", name)
    if not name.isprintable():
        name = "".join(ch if ch.isprintable() else "_" for ch in name)
    if name.startswith("."):
        name = "_" + name[1:]
    if not name.strip():
        name = f"{base}-{index}"
    while len(name.encode()) > MAX_NAME_BYTES:
        name = name[:-1]
    if name in taken:
        name = f"{name}#{index}"
    return name


# -- checking --------------------------------------------------------------------------------
def check_points(
    task: Any,
    points: Sequence[Point],
    *,
    factories: Mapping[str, Callable[[], Any]] | None = None,
    base_overrides: Sequence[str] = (),
) -> list[Any]:
    """The task of every point (``base_overrides`` then the point's), all built and checked
    before the caller writes anything; the first bad point raises :class:`SweepError`."""
    from core.overrides import apply_overrides

    tasks = []
    for point in points:
        try:
            tasks.append(
                apply_overrides(task, [*base_overrides, *point.overrides], factories=factories)
            )
        except OverrideError as exc:
            raise SweepError(f"sweep point {point.index} ({point.name}): {exc}") from None
    return tasks
