"""Per-launch executor settings: ``executor.nodes=2``, ``executor.time=01:00:00``,
``executor.env_vars.WANDB_MODE=offline`` — without a new profile in config.toml.

One spelling for every front end: an override whose path starts with ``executor.`` sets a
field of the launch's executor profile; every other override sets a field of the task. The
value is checked against the field's type (``nodes`` is an int, ``exclusive`` a bool, a list
takes ``a,b`` or ``[a,b]``) and an unknown field gets a "did you mean". The profile is
rebuilt with :func:`dataclasses.replace`, so its own checks (``__post_init__``) run again.

What cannot be set this way, and why: ``backend`` and ``profile_name`` (pick another
profile instead), ``packager`` and ``tunnel`` (structured; a profile says them), and
``secret_env`` (secret values never travel through overrides, which are recorded).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

PREFIX = "executor."
#: Fields an override may not set (see the module docstring).
FIXED = frozenset({"backend", "profile_name", "packager", "tunnel", "secret_env"})
#: Short names people type for the env table.
ALIASES = {"env": "env_vars", "gpus": "gpus_per_node"}


class ExecutorOverrideError(ValueError):
    """An ``executor.`` override names no field, or its value does not fit the field."""


def is_executor_override(text: str) -> bool:
    """Whether ``text`` sets the executor (``executor.nodes=2``) rather than the task."""
    return text.strip().startswith(PREFIX)


def split_overrides(overrides: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(task overrides, executor overrides)``, each in the given order."""
    task: list[str] = []
    executor: list[str] = []
    for text in overrides:
        (executor if is_executor_override(text) else task).append(text)
    return task, executor


def apply_executor_overrides(profile: Any, overrides: Iterable[str]) -> Any:
    """A copy of ``profile`` with every ``executor.`` override applied (raises
    :class:`ExecutorOverrideError` on the first bad one; nothing is changed then)."""
    overrides = list(overrides)
    if not overrides:
        return profile
    hints = typing.get_type_hints(type(profile))
    fields = {f.name for f in dataclasses.fields(profile) if f.init}
    changes: dict[str, Any] = {}
    for text in overrides:
        path, sep, value = text.strip().partition("=")
        if not sep or not path.startswith(PREFIX):
            raise ExecutorOverrideError(f"`{text}`: expected executor.FIELD=VALUE")
        name, _, key = path[len(PREFIX) :].strip().partition(".")
        if name not in fields:  # a profile's own field wins (Kubernetes has `gpus`)
            name = ALIASES.get(name, name)
        if name in FIXED:
            raise ExecutorOverrideError(
                f"`executor.{name}` cannot be set per launch; choose another executor profile"
            )
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields - FIXED), n=1)
            hint = f"; did you mean `executor.{close[0]}`?" if close else ""
            known = ", ".join(sorted(fields - FIXED))
            raise ExecutorOverrideError(
                f"the {profile.backend} executor has no field `{name}`{hint} (fields: {known})"
            )
        annotation = hints.get(name, Any)
        if key:
            if _origin(annotation) is not dict:
                raise ExecutorOverrideError(f"`executor.{name}` is not a table: drop `.{key}`")
            table = dict(changes.get(name, getattr(profile, name)) or {})
            table[key] = value.strip()
            changes[name] = table
            continue
        changes[name] = _parse(name, value.strip(), annotation)
    try:
        return dataclasses.replace(profile, **changes)
    except (TypeError, ValueError) as exc:
        raise ExecutorOverrideError(f"executor settings: {exc}") from None


def _origin(annotation: Any) -> Any:
    """``dict`` for ``dict[str, str]`` and ``dict[...] | None``; the bare type otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if _is_union(annotation) and len(args) == 1:
        annotation = args[0]
    return typing.get_origin(annotation) or annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _parse(name: str, text: str, annotation: Any) -> Any:
    """``text`` as a value of ``annotation`` (int, float, bool, str, list of str, optional)."""
    optional = _is_union(annotation) and type(None) in typing.get_args(annotation)
    if optional and text.lower() in ("none", "null", ""):
        return None
    kind = _origin(annotation)
    if kind is dict:
        raise ExecutorOverrideError(
            f"`executor.{name}` is a table: set one entry, e.g. executor.{name}.KEY=VALUE"
        )
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is list:
            inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            return [part.strip().strip("'\"") for part in inner.split(",") if part.strip()]
    except ValueError:
        raise ExecutorOverrideError(
            f"`executor.{name}` expects {getattr(kind, '__name__', kind)}, got `{text}`"
        ) from None
    return text.strip("'\"") if len(text) > 1 and text[0] == text[-1] in "'\"" else text
