"""The fields of a task as a user edits them: dotted path, type, value, set or default.

``nemorun-tui recipes RECIPE`` prints these, so a user can see what ``KEY=VALUE`` takes
before writing one. Values are the same display text as :func:`core.serialize.flatten`
(so ``Path('/data')`` and ``[1, 2]`` read the way the app shows them and can be typed
back); types come from the annotations the override checker uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from core.config import fiddle_kind


@dataclass(frozen=True)
class FieldInfo:
    """One editable place in a task."""

    path: str
    #: The annotation as text ("int", "list[str] | None"); "" where there is none.
    type: str
    #: Display text of the value the task gives it (``<required>`` when it has none).
    value: str
    #: True when the recipe sets it; False when it is the signature's default.
    explicit: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def describe_fields(task: Any) -> list[FieldInfo]:
    """Every leaf and every sub-config of ``task``, in display order (see the module)."""
    from core.serialize import flatten

    shown = flatten(task, include_defaults=True)
    explicit = set(flatten(task))
    types: dict[str, str] = {}
    _collect_types(task, "", types, 0)
    out = []
    for path, value in shown.items():
        if path == "__fn__" or path == "__value__":
            continue
        if path.endswith(".__fn__"):
            path = path[: -len(".__fn__")]
            out.append(FieldInfo(path, types.get(path, ""), value, True))
            continue
        out.append(FieldInfo(path, types.get(path, ""), value, path in explicit))
    return out


def _collect_types(value: Any, where: str, out: dict[str, str], depth: int) -> None:
    """Annotation text of every parameter of every Config/Partial under ``value``."""
    if depth > 50:
        return
    from core.overrides import _type_hints, _type_name

    if fiddle_kind(value) is not None:
        fn = value.__fn_or_cls__
        hints = _type_hints(fn)
        for name, ann in hints.items():
            if name != "return":
                out[_join(where, name)] = _type_name(ann)
        arguments = getattr(value, "__arguments__", {})
        for name, item in arguments.items():
            _collect_types(item, _join(where, name), out, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                _collect_types(item, _join(where, key), out, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _collect_types(item, _join(where, str(index)), out, depth + 1)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
