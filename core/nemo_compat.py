"""NeMo Run's habits over our engine: ``run.Plugin``, ``run.autoconvert``, override files.

So that a NeMo Run script runs after changing only its import line
(``import nemorun_tui as run``), these behave as NeMo Run documents them:

* :class:`Plugin`: ``setup(task, executor)`` runs before launch (at ``exp.add(...,
  plugins=[...])``) and may change both; the executor is a copy per job, as in NeMo Run.
* :func:`autoconvert`: a factory returning plain objects (a dataclass instance, lists of
  them) returns their :class:`core.config.Config` instead.
* :func:`expand_override_files`: ``@file.yaml|toml|json`` on a command line stands for the
  file's nested mapping as dotted overrides (``{"trainer": {"max_steps": 5}}`` →
  ``trainer.max_steps=5``), in place, so later overrides still win.
* :func:`task_as_data`: the resolved config as plain data (``--to-yaml``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Plugin", "apply_plugins", "autoconvert", "expand_override_files", "task_as_data"]


class Plugin:
    """Changes a task and its executor before launch (NeMo Run's ``run.Plugin``).

    Subclass it (a dataclass works) and override :meth:`setup`; pass instances as
    ``exp.add(task, plugins=[...])``.
    """

    def setup(self, task: Any, executor: Any) -> None:
        """Change ``task`` and/or ``executor`` in place; the default does nothing."""
        return None


def apply_plugins(plugins: Sequence[Any], task: Any, executor: Any) -> tuple[Any, Any]:
    """Run every plugin's ``setup`` on this job's own copy of the executor."""
    if not plugins:
        return task, executor
    executor = copy.deepcopy(executor)  # a plugin's change is this job's only
    for plugin in plugins:
        setup = getattr(plugin, "setup", None)
        if not callable(setup):
            raise TypeError(f"plugin {type(plugin).__name__} has no setup(task, executor)")
        setup(task, executor)
    return task, executor


def autoconvert(fn: Callable[..., Any] | None = None, /, **_: Any) -> Any:
    """Make ``fn`` return a Config of what it builds (NeMo Run's ``run.autoconvert``)."""

    def wrap(inner: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(inner)
        def converted(*args: Any, **kwargs: Any) -> Any:
            return to_config(inner(*args, **kwargs))

        return converted

    return wrap(fn) if fn is not None else wrap


def to_config(value: Any) -> Any:
    """Dataclass instances (nested, in lists/tuples/dicts) become Configs; tasks stay."""
    from core.config import fiddle_kind

    if fiddle_kind(value) is not None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        from core.config import Config

        fields = {
            f.name: to_config(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return Config(type(value), **fields)
    if isinstance(value, list):
        return [to_config(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_config(v) for v in value)
    if isinstance(value, dict):
        return {k: to_config(v) for k, v in value.items()}
    return value


def expand_override_files(items: Sequence[str]) -> list[str]:
    """Replace every ``@path`` item by the overrides its file holds (yaml, toml or json)."""
    from core.overrides import OverrideError

    out: list[str] = []
    for item in items:
        if not item.startswith("@"):
            out.append(item)
            continue
        path = Path(item[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OverrideError(f"cannot read overrides file {item[1:]}: {exc}") from None
        data = _parse_file(path, text)
        if not isinstance(data, dict):
            raise OverrideError(f"{item[1:]}: expected a mapping of fields at the top")
        out.extend(_flatten(data, ""))
    return out


def _parse_file(path: Path, text: str) -> Any:
    from core.overrides import OverrideError

    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise OverrideError(
                    "YAML override files need PyYAML (pip install pyyaml)"
                ) from None
            return yaml.safe_load(text)
    except OverrideError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OverrideError(f"{path.name} is not valid {suffix[1:]}: {first}") from None
    raise OverrideError(f"overrides file {path.name}: use .yaml, .yml, .toml or .json")


def _flatten(data: dict[str, Any], prefix: str) -> list[str]:
    """Nested mappings become dotted paths; any other value is written as a Python literal
    (strings quoted, so a value is never read as a factory name or split)."""
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, f"{path}."))
        else:
            out.append(f"{path}={value!r}")
    return out


def task_as_data(task: Any) -> Any:
    """The task as nested plain data: ``{"_target_": "mod.fn", field: value, ...}``."""
    from core.config import fiddle_kind

    kind = fiddle_kind(task)
    if kind is not None:
        fn = task.__fn_or_cls__
        data: dict[str, Any] = {
            "_target_": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"
        }
        if kind == "partial":
            data["_partial_"] = True
        for name, value in task.__arguments__.items():
            data[name] = task_as_data(value)
        return data
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        return {f.name: task_as_data(getattr(task, f.name)) for f in dataclasses.fields(task)}
    if isinstance(task, list | tuple):
        return [task_as_data(v) for v in task]
    if isinstance(task, dict):
        return {str(k): task_as_data(v) for k, v in task.items()}
    if task is None or isinstance(task, bool | int | float | str):
        return task
    if hasattr(task, "inline") and hasattr(task, "entrypoint"):  # a Script
        return {"_script_": {"inline": task.inline, "path": task.path, "args": list(task.args)}}
    if callable(task):
        return f"{getattr(task, '__module__', '?')}.{getattr(task, '__qualname__', task)}"
    return repr(task)


def to_yaml(data: Any) -> str:
    """YAML text of plain data (PyYAML when installed; else JSON, which YAML also reads)."""
    try:
        import yaml
    except ImportError:
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False))
