"""Tasks as JSON (exact round trip), built straight from JSON, and shown as text and diffs.

Why our own format rather than fiddle's serializer: the store must stay readable without
this program, a job process must build a task *without importing fiddle* (0.25 s), and
workspace files loaded from a path must be importable again in another process. The format
(``schema_version`` 1) is a JSON document::

    {"schema_version": 1, "kind": "partial", "modules": {...}, "task": <node>}

A node is a JSON scalar, a JSON list (a Python list), or an object tagged by ``"type"``:
``config``/``partial`` (``fn`` + ``args``), ``script``, ``dict``, ``tuple``, ``enum``,
``dataclass``, ``ref`` (a callable or class by import path), ``path``, ``float`` (nan/inf)
and ``shared`` (a second reference to a node that carries the same ``id``). Object keys are
visited in sorted order, so the same task always gives the same document.

``modules`` maps synthetic module names (workspace files imported from a path, see
:mod:`core.recipes`) to their file paths, so :func:`import_ref` can import them elsewhere.

Nothing here imports fiddle at module level: :func:`build_task` never needs it, and the
functions that make fiddle objects import :mod:`core.config` when called.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib
import importlib.util
import json
import math
import os
import pathlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import fiddle_kind

if TYPE_CHECKING:
    from core.config import Task

__all__ = [
    "SCHEMA_VERSION",
    "Change",
    "SerializeError",
    "StoredTask",
    "TaskView",
    "build_task",
    "callable_ref",
    "diff",
    "diff_flat",
    "dump_task",
    "dumps",
    "flatten",
    "flatten_document",
    "format_diff",
    "import_module_from_file",
    "import_ref",
    "load_task",
    "loads",
    "register_module_file",
    "render",
    "synthetic_module_name",
]

SCHEMA_VERSION = 1

#: Synthetic module name -> absolute file path, for modules imported from a file path.
_MODULE_FILES: dict[str, str] = {}


class SerializeError(ValueError):
    """A task (or task document) cannot be written or read; the message is one line."""


# --------------------------------------------------------------------------- module refs


def synthetic_module_name(path: str) -> str:
    """Stable module name for a file imported by path: same file, same name, any process."""
    absolute = os.path.abspath(path)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(absolute))[0]) or "workspace"
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:8]
    return f"nemorun_workspace_{stem}_{digest}"


def _main_module_name() -> str:
    """An importable name for ``__main__`` (the user's launch script), for job processes.

    ``python -m pkg.mod`` keeps its real name. ``python job.py`` gets the synthetic name of
    ``job.py``, aliased to the running ``__main__`` here so that loading the task in this
    process does not execute the script a second time. A job process imports the file under
    that name, so its ``if __name__ == "__main__":`` block does not run there.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    path = getattr(main, "__file__", None)
    if main is None or not path:
        raise SerializeError(
            "functions defined interactively (no script file) cannot be run as jobs; "
            "move them into a module or workspace"
        )
    name = synthetic_module_name(path)
    sys.modules.setdefault(name, main)
    register_module_file(name, path)
    return name


def register_module_file(module: str, path: str) -> None:
    """Remember that ``module`` was imported from ``path`` (not importable by name)."""
    _MODULE_FILES[module] = os.path.abspath(path)


def import_module_from_file(module: str, path: str) -> Any:
    """Import the file ``path`` as module ``module`` (or return it if already imported).

    The module is put in ``sys.modules`` *before* it runs, under the given name, so that
    dataclasses, pickle and our own references resolve to the very same objects. Its
    directory is added to ``sys.path`` so it can import its sibling files, as it could when
    run as a script (unless that folder is a package, whose files import each other through
    the package).
    """
    existing = sys.modules.get(module)
    if existing is not None:
        return existing
    path = os.path.abspath(path)
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path!r} as a Python module")
    mod = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    is_package = os.path.exists(os.path.join(folder, "__init__.py"))
    if not is_package and folder not in sys.path:
        sys.path.append(folder)  # appended: a workspace must not shadow installed modules
    sys.modules[module] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(module, None)
        raise
    register_module_file(module, path)
    return mod


def import_ref(module: str, qualname: str, modules_map: Mapping[str, str] | None = None) -> Any:
    """Return the object named ``module``/``qualname``.

    Modules listed in ``modules_map`` (synthetic name -> file path) are imported from their
    file; everything else by its import name.
    """
    mod = sys.modules.get(module)
    try:
        if mod is None:
            path = (modules_map or {}).get(module) or _MODULE_FILES.get(module)
            if path is not None:
                if not os.path.exists(path):
                    raise SerializeError(f"module `{module}` file {path} no longer exists")
                mod = import_module_from_file(module, path)
            else:
                mod = importlib.import_module(module)
    except SerializeError:
        raise
    except Exception as exc:
        raise SerializeError(
            f"cannot import `{module}` (for `{qualname}`): {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = mod
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SerializeError(f"`{module}` has no attribute `{qualname}`") from None
    return obj


def callable_ref(obj: Any) -> dict[str, str]:
    """``{"module", "qualname"}`` for a module-level function or class, checked to resolve."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    label = getattr(obj, "__name__", repr(obj))
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise SerializeError(f"cannot reference {label!r}: it has no module/qualified name")
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise SerializeError(
            f"cannot reference `{qualname}`: define it at module level so a job can import it"
        )
    mod = sys.modules.get(module)
    target: Any = mod
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not obj:
        raise SerializeError(f"cannot reference {label!r}: `{module}.{qualname}` is not it")
    if module == "__main__":
        module = _main_module_name()
    return {"module": module, "qualname": qualname}


# --------------------------------------------------------------------------- helpers


def _fiddle() -> Any:
    """The fiddle module if something imported it; None means no fiddle object can exist."""
    return sys.modules.get("fiddle")


def _buildable_kind(value: Any) -> str | None:
    kind = fiddle_kind(value)
    if kind is not None:
        return kind
    fdl = _fiddle()
    if fdl is not None and isinstance(value, fdl.Buildable):
        raise SerializeError(f"unsupported fiddle type {type(value).__name__}")
    return None


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _is_script(value: Any) -> bool:
    # core.config is cheap to import (fiddle loads lazily there), but avoid it when unused.
    config = sys.modules.get("core.config")
    return config is not None and isinstance(value, config.Script)


def _arguments(buildable: Any) -> dict[str, Any]:
    args = dict(buildable.__arguments__)
    positional = [key for key in args if not isinstance(key, str)]
    if positional:
        name = _fn_name(buildable.__fn_or_cls__)
        raise SerializeError(f"`{name}`: positional *args are not supported; use keywords")
    tags = getattr(buildable, "__argument_tags__", None) or {}
    if any(tags.values()):
        raise SerializeError(f"`{_fn_name(buildable.__fn_or_cls__)}`: fiddle tags unsupported")
    return args


def _fn_name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


_SCRIPT_FIELDS = ("path", "inline", "args", "env", "entrypoint", "m")


# --------------------------------------------------------------------------- dump


class _Dumper:
    """One dump: counts shared objects first, then writes nodes in sorted key order."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.keepalive: list[Any] = []
        self.ids: dict[int, int] = {}
        self.modules: dict[str, str] = {}

    @staticmethod
    def _shareable(value: Any) -> bool:
        return (
            isinstance(value, list | dict)
            or _buildable_kind(value) is not None
            or _is_dataclass_instance(value)
        )

    def count(self, value: Any) -> None:
        if self._shareable(value):
            key = id(value)
            self.counts[key] = self.counts.get(key, 0) + 1
            if self.counts[key] > 1:
                return
            self.keepalive.append(value)
        for child in _children(value):
            self.count(child)

    def ref(self, obj: Any) -> dict[str, str]:
        ref = callable_ref(obj)
        path = _MODULE_FILES.get(ref["module"])
        if path is not None:
            self.modules[ref["module"]] = path
        return ref

    def dump(self, value: Any, where: str) -> Any:
        key = id(value)
        if self.counts.get(key, 0) > 1:
            if key in self.ids:
                return {"type": "shared", "id": self.ids[key]}
            self.ids[key] = len(self.ids) + 1
            node = self._dump_new(value, where)
            node["id"] = self.ids[key]
            return node
        return self._dump_new(value, where)

    def _dump_new(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int) and type(value) is int:
            return value
        if isinstance(value, float) and type(value) is float:
            if math.isfinite(value):
                return value
            return {"type": "float", "value": repr(value)}
        kind = _buildable_kind(value)
        if kind is not None:
            args = _arguments(value)
            return {
                "type": kind,
                "fn": self.ref(value.__fn_or_cls__),
                "args": {name: self.dump(args[name], _join(where, name)) for name in sorted(args)},
            }
        if _is_script(value):
            node: dict[str, Any] = {"type": "script"}
            for name in _SCRIPT_FIELDS:
                item = getattr(value, name)
                node[name] = dict(sorted(item.items())) if isinstance(item, dict) else item
            return node
        if isinstance(value, enum.Enum):
            if value.name is None:
                raise SerializeError(f"{where or 'task'}: composite enum value {value!r}")
            return {"type": "enum", "cls": self.ref(type(value)), "name": value.name}
        if isinstance(value, list):
            return [self.dump(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if type(value) is tuple:
            return {
                "type": "tuple",
                "items": [self.dump(item, f"{where}[{i}]") for i, item in enumerate(value)],
            }
        if isinstance(value, dict) and type(value) is dict:
            bad = [k for k in value if not isinstance(k, str)]
            if bad:
                raise SerializeError(
                    f"{where or 'task'}: dict keys must be strings, got {bad[0]!r}"
                )
            return {
                "type": "dict",
                "items": {k: self.dump(value[k], _join(where, k)) for k in sorted(value)},
            }
        if _is_dataclass_instance(value):
            fields = [f.name for f in dataclasses.fields(value) if f.init]
            return {
                "type": "dataclass",
                "cls": self.ref(type(value)),
                "fields": {
                    name: self.dump(getattr(value, name), _join(where, name))
                    for name in sorted(fields)
                },
            }
        if isinstance(value, pathlib.PurePath):
            return {"type": "path", "path": str(value)}
        if isinstance(value, type) or callable(value):
            return {"type": "ref", **self.ref(value)}
        raise SerializeError(
            f"{where or 'task'}: cannot store a value of type {type(value).__name__}"
        )


def _children(value: Any) -> Iterator[Any]:
    """Direct children the serializer descends into (for counting shared objects)."""
    if _buildable_kind(value) is not None:
        yield from value.__arguments__.values()
    elif isinstance(value, list | tuple):
        yield from value
    elif isinstance(value, dict):
        yield from value.values()
    elif _is_dataclass_instance(value) and not _is_script(value):
        for f in dataclasses.fields(value):
            if f.init:
                yield getattr(value, f.name)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def dump_task(task: Task) -> dict[str, Any]:
    """The JSON-able document for ``task`` (a Config, Partial or Script)."""
    from core.config import task_kind

    kind = task_kind(task)
    dumper = _Dumper()
    dumper.count(task)
    node = dumper.dump(task, "")
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "modules": dict(sorted(dumper.modules.items())),
        "task": node,
    }


def dumps(task: Task) -> str:
    """``dump_task`` as stable JSON text (sorted keys, indent 2, trailing newline)."""
    return json.dumps(dump_task(task), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- load / build


def _check_document(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or "task" not in data:
        raise SerializeError("not a task document (expected an object with `task`)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise SerializeError(
            f"task document has schema_version {version!r}; this version reads {SCHEMA_VERSION}"
        )
    modules = data.get("modules") or {}
    for name, path in modules.items():
        _MODULE_FILES.setdefault(name, path)
    return data


class _Loader:
    """Turns nodes back into objects; ``build`` decides what a config/partial becomes."""

    def __init__(
        self,
        modules: Mapping[str, str],
        make_buildable: Callable[[str, Any, dict[str, Any]], Any],
        make_script: Callable[[dict[str, Any]], Any],
    ) -> None:
        self.modules = modules
        self.make_buildable = make_buildable
        self.make_script = make_script
        self.definitions: dict[int, Any] = {}
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def collect(self, node: Any) -> None:
        """Find every node carrying an ``id`` so references may precede definitions."""
        if isinstance(node, list):
            for item in node:
                self.collect(item)
        elif isinstance(node, dict):
            if "id" in node and node.get("type") != "shared":
                self.definitions[int(node["id"])] = node
            for key, item in node.items():
                if key not in ("fn", "cls"):
                    self.collect(item)

    def ref(self, ref: Any) -> Any:
        if not isinstance(ref, dict) or "module" not in ref or "qualname" not in ref:
            raise SerializeError(f"bad reference {ref!r}")
        return import_ref(ref["module"], ref["qualname"], self.modules)

    def load(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.load(item) for item in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind == "shared":
            node = self.definitions.get(int(node["id"]))
            if node is None:
                raise SerializeError("shared reference to an unknown id")
        if "id" in node:
            ident = int(node["id"])
            if ident in self.done:
                return self.done[ident]
            if ident in self.active:
                raise SerializeError("task document contains a cycle")
            self.active.add(ident)
            value = self._load_new(node)
            self.active.discard(ident)
            self.done[ident] = value
            return value
        return self._load_new(node)

    def _load_new(self, node: dict[str, Any]) -> Any:
        kind = node.get("type")
        if kind in ("config", "partial"):
            fn = self.ref(node["fn"])
            args = {name: self.load(value) for name, value in node.get("args", {}).items()}
            return self.make_buildable(kind, fn, args)
        if kind == "script":
            return self.make_script({name: node.get(name) for name in _SCRIPT_FIELDS})
        if kind == "dict":
            return {key: self.load(value) for key, value in node["items"].items()}
        if kind == "tuple":
            return tuple(self.load(item) for item in node["items"])
        if kind == "enum":
            cls = self.ref(node["cls"])
            try:
                return cls[node["name"]]
            except KeyError:
                raise SerializeError(f"{_fn_name(cls)} has no member {node['name']!r}") from None
        if kind == "dataclass":
            cls = self.ref(node["cls"])
            fields = {name: self.load(value) for name, value in node["fields"].items()}
            return cls(**fields)
        if kind == "ref":
            return self.ref(node)
        if kind == "path":
            return pathlib.Path(node["path"])
        if kind == "float":
            return float(node["value"])
        raise SerializeError(f"unknown node type {kind!r}")


def _script_from(fields: dict[str, Any]) -> Any:
    from core.config import Script

    return Script(
        path=fields["path"],
        inline=fields["inline"],
        args=list(fields.get("args") or []),
        env=dict(fields.get("env") or {}),
        entrypoint=fields.get("entrypoint") or "bash",
        m=bool(fields.get("m")),
    )


def load_task(data: Mapping[str, Any]) -> Task:
    """Rebuild the task from :func:`dump_task` output, as our ``Config``/``Partial``/``Script``."""
    document = _check_document(data)

    def make(kind: str, fn: Any, args: dict[str, Any]) -> Any:
        from core.config import Config, Partial

        cls = Partial if kind == "partial" else Config
        try:
            return cls(fn, **args)
        except (TypeError, AttributeError) as exc:
            raise SerializeError(f"cannot configure `{_fn_name(fn)}`: {exc}") from exc

    loader = _Loader(document.get("modules") or {}, make, _script_from)
    loader.collect(document["task"])
    return loader.load(document["task"])  # type: ignore[no-any-return]  # as the document says


def loads(text: str) -> Task:
    """:func:`load_task` from JSON text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SerializeError(f"task file is not valid JSON: {exc}") from exc
    return load_task(data)


def build_task(data: Mapping[str, Any]) -> Any:
    """Build the task straight from its document, the way ``fdl.build`` would.

    A Config becomes the result of calling its callable, a Partial a ``functools.partial``,
    a Script a :class:`core.config.Script`. Shared nodes are built once. fiddle is never
    imported, which keeps job start-up fast.
    """
    document = _check_document(data)

    def make(kind: str, fn: Any, args: dict[str, Any]) -> Any:
        if kind == "partial":
            return functools.partial(fn, **args)
        return fn(**args)

    loader = _Loader(document.get("modules") or {}, make, _script_from)
    loader.collect(document["task"])
    return loader.load(document["task"])


# --------------------------------------------------------------------------- display


def _signature_order(fn: Any) -> list[str]:
    """Parameter names in signature order (stable display order for arguments)."""
    params = _parameters(fn)
    return list(params) if params is not None else []


def _parameters(fn: Any) -> dict[str, Any] | None:
    import inspect

    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _ordered_args(buildable: Any) -> list[tuple[str, Any]]:
    args = _arguments(buildable)
    order = [name for name in _signature_order(buildable.__fn_or_cls__) if name in args]
    order += sorted(name for name in args if name not in order)
    return [(name, args[name]) for name in order]


def _short(value: Any) -> str:
    """A compact, deterministic one-line display of any storable value."""
    kind = _buildable_kind(value)
    if kind is not None:
        inner = ", ".join(f"{name}={_short(item)}" for name, item in _ordered_args(value))
        name = _fn_name(value.__fn_or_cls__)
        if kind == "partial":
            return f"partial({name}{', ' + inner if inner else ''})"
        return f"{name}({inner})"
    if _is_script(value):
        inner = ", ".join(f"{name}={_short(item)}" for name, item in _script_items(value))
        return f"Script({inner})"
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(item) for item in value) + "]"
    if isinstance(value, tuple) and type(value) is tuple:
        inner = ", ".join(_short(item) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in _sorted_items(value)) + "}"
    if _is_dataclass_instance(value):
        inner = ", ".join(
            f"{f.name}={_short(getattr(value, f.name))}"
            for f in dataclasses.fields(value)
            if f.init
        )
        return f"{type(value).__name__}({inner})"
    if isinstance(value, pathlib.PurePath):
        return f"Path({str(value)!r})"
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return _fn_name(value)
    return repr(value)


_SCRIPT_DEFAULTS: dict[str, Any] = {"args": [], "env": {}, "entrypoint": "bash", "m": False}


def _sorted_items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Dict items in key order, as stored documents keep them (display must not depend on
    the order a dict happened to be built in)."""
    try:
        return sorted(mapping.items())
    except TypeError:
        return list(mapping.items())


def _script_items(script: Any) -> list[tuple[str, Any]]:
    """Script fields worth showing: the one of ``path``/``inline`` set, and non-defaults."""
    items: list[tuple[str, Any]] = []
    for name in _SCRIPT_FIELDS:
        value = getattr(script, name)
        if name in ("path", "inline"):
            if value is not None:
                items.append((name, value))
        elif value != _SCRIPT_DEFAULTS[name]:
            items.append((name, value))
    return items


_WIDTH = 88


def render(task: Any, *, width: int = _WIDTH) -> str:
    """Readable, indented, deterministic text of a task (for the detail pane and diffs).

    Configs read as calls (``Trainer(max_steps=10)``), Partials as
    ``partial(train, ...)``; a node stays on one line when it fits in ``width``.
    """
    return _render(task, 0, 0, width)


def _render(value: Any, level: int, used: int, width: int) -> str:
    """Render at nesting ``level``; ``used`` columns are already taken on the first line."""
    one_line = _short(value)
    if used + len(one_line) <= width:
        return one_line
    pad = "  " * (level + 1)
    close = "  " * level
    kind = _buildable_kind(value)
    if kind is not None or _is_script(value):
        items = _ordered_args(value) if kind is not None else _script_items(value)
        lines = [
            f"{pad}{name}={_render(item, level + 1, len(pad) + len(name) + 2, width)},"
            for name, item in items
        ]
        if kind == "partial":
            head = f"partial({_fn_name(value.__fn_or_cls__)},"
        elif kind == "config":
            head = f"{_fn_name(value.__fn_or_cls__)}("
        else:
            head = "Script("
        return head + "\n" + "\n".join(lines) + f"\n{close})"
    if isinstance(value, list | tuple) and value:
        opener, closer = ("[", "]") if isinstance(value, list) else ("(", ")")
        lines = [f"{pad}{_render(item, level + 1, len(pad) + 1, width)}," for item in value]
        return opener + "\n" + "\n".join(lines) + f"\n{close}{closer}"
    if isinstance(value, dict) and value:
        lines = [
            f"{pad}{key!r}: {_render(item, level + 1, len(pad) + len(repr(key)) + 3, width)},"
            for key, item in _sorted_items(value)
        ]
        return "{\n" + "\n".join(lines) + f"\n{close}}}"
    return one_line


def default_value(fn: Any, name: str, default: Any) -> Any:
    """A parameter's default as a user would write it: a dataclass field's
    ``default_factory`` is called (its signature shows only a ``<factory>`` placeholder).
    A factory that fails shows as ``<factory failed: …>``, never as the placeholder."""
    if default is not getattr(dataclasses, "_HAS_DEFAULT_FACTORY", object()):
        return default
    if dataclasses.is_dataclass(fn):
        for item in dataclasses.fields(fn):
            if item.name == name and item.default_factory is not dataclasses.MISSING:
                try:
                    return item.default_factory()
                except Exception as exc:
                    return _Shown(f"<factory failed: {type(exc).__name__}>")
    return _Shown("<factory>")


class _Shown(str):
    """Text shown as is by :func:`_short` (not quoted like a str value)."""

    def __repr__(self) -> str:
        return str(self)


def flatten(
    task: Any, *, include_defaults: bool = False, max_width: int | None = None
) -> dict[str, str]:
    """Dotted path -> display value, one entry per leaf (the app's tree and diffs use it).

    Each Config/Partial node also has ``<path>.__fn__`` (``Trainer`` or ``partial(train)``)
    so that swapping the callable shows up. Dicts are expanded by key and lists holding
    configs by index; other lists are one value. With ``include_defaults``, unset parameters
    show their signature default (or ``<required>``).
    """
    out: dict[str, str] = {}
    _flatten(task, "", out, include_defaults)
    if max_width is not None:
        out = {k: v if len(v) <= max_width else v[: max_width - 1] + "…" for k, v in out.items()}
    return dict(sorted(out.items(), key=lambda item: _path_key(item[0])))


def _flatten(value: Any, where: str, out: dict[str, str], defaults: bool) -> None:
    kind = _buildable_kind(value)
    if kind is not None:
        fn = value.__fn_or_cls__
        out[_join(where, "__fn__")] = (
            f"partial({_fn_name(fn)})" if kind == "partial" else _fn_name(fn)
        )
        args = dict(_ordered_args(value))
        for name, item in args.items():
            _flatten(item, _join(where, name), out, defaults)
        if defaults:
            for name, param in (_parameters(fn) or {}).items():
                if name in args or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue
                shown = (
                    "<required>"
                    if param.default is param.empty
                    else _short(default_value(fn, name, param.default))
                )
                out[_join(where, name)] = shown
        return
    if _is_script(value):
        out[_join(where, "__fn__")] = "Script"
        for name in _SCRIPT_FIELDS:
            _flatten(getattr(value, name), _join(where, name), out, defaults)
        return
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        for key, item in value.items():
            _flatten(item, _join(where, key), out, defaults)
        return
    if isinstance(value, list | tuple) and any(
        _buildable_kind(item) is not None or isinstance(item, dict) for item in value
    ):
        for index, item in enumerate(value):
            _flatten(item, _join(where, str(index)), out, defaults)
        return
    out[where or "__value__"] = _short(value)


_NUMBER = re.compile(r"\d+")


def _path_key(path: str) -> tuple[tuple[int, int | str], ...]:
    """Sort ``layers.2`` before ``layers.10``; ``__fn__`` first within its node."""
    parts: list[tuple[int, int | str]] = []
    for part in path.split("."):
        if _NUMBER.fullmatch(part):
            parts.append((1, int(part)))
        elif part == "__fn__":
            parts.append((0, ""))
        else:
            parts.append((2, part))
    return tuple(parts)


@dataclass(frozen=True)
class Change:
    """One difference between two tasks; ``old``/``new`` is None when added/removed."""

    path: str
    old: str | None
    new: str | None

    def __str__(self) -> str:
        old = "(unset)" if self.old is None else self.old
        new = "(unset)" if self.new is None else self.new
        return f"{self.path}: {old} → {new}"


def diff(a: Any, b: Any, *, include_defaults: bool = False) -> list[Change]:
    """Changed, added and removed dotted paths from ``a`` to ``b``, sorted by path."""
    return diff_flat(
        flatten(a, include_defaults=include_defaults),
        flatten(b, include_defaults=include_defaults),
    )


def diff_flat(left: Mapping[str, str], right: Mapping[str, str]) -> list[Change]:
    """:func:`diff` of two :func:`flatten` results (e.g. two stored views)."""
    changes = [
        Change(path, left.get(path), right.get(path))
        for path in set(left) | set(right)
        if left.get(path) != right.get(path)
    ]
    return sorted(changes, key=lambda change: _path_key(change.path))


def format_diff(changes: list[Change]) -> str:
    """One ``path: old → new`` line per change (``(unset)`` for a missing side)."""
    if not changes:
        return "no changes"
    return "\n".join(str(change) for change in changes)


# --------------------------------------------------------------------------- stored tasks
# The app must never import user code (a workspace module may do anything when imported), so
# it works with tasks as stored documents: a relaunch copies the document, and Detail and the
# diff read a *view* (the flattened config, signature defaults included) that was computed
# where the task was a live object (the launching process, or the app's workspace helper).


@dataclass(frozen=True)
class TaskView:
    """What Detail and Compose show of a task: dotted path -> value, and which were set."""

    flat: dict[str, str]
    explicit: frozenset[str]
    #: False when computed from the document alone: signature defaults are not known then.
    with_defaults: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"flat": dict(self.flat), "explicit": sorted(self.explicit)}

    @classmethod
    def from_dict(cls, data: Any) -> TaskView:
        """Read a stored view; a malformed one is a :class:`SerializeError`, never a crash."""
        if not isinstance(data, dict):
            raise SerializeError("task view is not an object")
        flat, explicit = data.get("flat"), data.get("explicit")
        if not isinstance(flat, dict) or not isinstance(explicit, list):
            raise SerializeError("task view lacks `flat`/`explicit`")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in flat.items()):
            raise SerializeError("task view has non-text entries")
        return cls(dict(flat), frozenset(str(p) for p in explicit))

    @classmethod
    def of(cls, task: Any) -> TaskView:
        """The view of a live task (needs the task's callables: call it where they live)."""
        return cls(flatten(task, include_defaults=True), frozenset(flatten(task)))

    @classmethod
    def of_document(cls, data: Mapping[str, Any]) -> TaskView:
        """The view of a stored document alone: explicit values, no defaults, no imports."""
        flat = flatten_document(data)
        return cls(flat, frozenset(flat), with_defaults=False)


@dataclass(frozen=True)
class StoredTask:
    """A task as its stored document (``dumps`` text), usable in a plan without building it.

    The engine records ``document`` as is; a Script document is rebuilt (it names no user
    code) when a job spec needs its argv.
    """

    document: str
    kind: str
    label: str
    view: TaskView | None = None

    @classmethod
    def from_text(cls, text: str, view: TaskView | None = None) -> StoredTask:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise SerializeError(f"task file is not valid JSON: {exc}") from None
        document = _check_document(data)
        kind = str(document.get("kind") or "")
        if kind not in ("config", "partial", "script"):
            raise SerializeError(f"task document has unknown kind {kind!r}")
        return cls(text, kind, _document_label(document), view)

    @classmethod
    def of(cls, task: Any) -> StoredTask:
        """Serialize a live task, with its view."""
        return cls.from_text(dumps(task), TaskView.of(task))

    def view_or_document(self) -> TaskView:
        return (
            self.view if self.view is not None else TaskView.of_document(json.loads(self.document))
        )

    def script(self) -> Any:
        """The :class:`core.config.Script` of a script document (names no user code)."""
        if self.kind != "script":
            raise SerializeError("not a script task")
        return loads(self.document)


def _document_label(document: Mapping[str, Any]) -> str:
    """A job-name-like label for a document: the function's name, or the script's."""
    node = document.get("task")
    if isinstance(node, dict) and node.get("type") in ("config", "partial"):
        fn = node.get("fn")
        if isinstance(fn, dict):
            return str(fn.get("qualname", "job")).rsplit(".", 1)[-1] or "job"
    if isinstance(node, dict) and node.get("type") == "script" and node.get("path"):
        return pathlib.PurePath(str(node["path"])).stem or "script"
    return "script" if document.get("kind") == "script" else "job"


def flatten_document(data: Mapping[str, Any]) -> dict[str, str]:
    """:func:`flatten` of a stored document without importing anything it names.

    Signature defaults are unknown here, so only stored values appear; arguments are in
    stored (sorted) order. Used for runs recorded without a view.
    """
    document = _check_document(data)
    definitions: dict[int, Any] = {}
    _collect_ids(document["task"], definitions, 0)
    out: dict[str, str] = {}
    _flatten_node(document["task"], "", out, definitions, 0)
    return dict(sorted(out.items(), key=lambda item: _path_key(item[0])))


_MAX_DOC_DEPTH = 200


def _collect_ids(node: Any, into: dict[int, Any], depth: int) -> None:
    if depth > _MAX_DOC_DEPTH:
        raise SerializeError("task document is nested too deeply")
    if isinstance(node, list):
        for item in node:
            _collect_ids(item, into, depth + 1)
    elif isinstance(node, dict):
        if "id" in node and node.get("type") != "shared" and isinstance(node["id"], int):
            into[node["id"]] = node
        for key, item in node.items():
            if key not in ("fn", "cls"):
                _collect_ids(item, into, depth + 1)


def _resolve(node: Any, definitions: dict[int, Any]) -> Any:
    if isinstance(node, dict) and node.get("type") == "shared":
        found = definitions.get(node.get("id"))  # type: ignore[arg-type]  # no id: not found
        if found is None:
            raise SerializeError("shared reference to an unknown id")
        return found
    return node


def _ref_name(ref: Any) -> str:
    return str(ref.get("qualname", "?")) if isinstance(ref, dict) else "?"


def _flatten_node(
    node: Any, where: str, out: dict[str, str], defs: dict[int, Any], depth: int
) -> None:
    if depth > _MAX_DOC_DEPTH:
        raise SerializeError("task document is nested too deeply")
    node = _resolve(node, defs)
    kind = node.get("type") if isinstance(node, dict) else None
    if kind in ("config", "partial"):
        name = _ref_name(node.get("fn"))
        out[_join(where, "__fn__")] = f"partial({name})" if kind == "partial" else name
        args = node.get("args") or {}
        for arg in sorted(args):
            _flatten_node(args[arg], _join(where, arg), out, defs, depth + 1)
        return
    if kind == "script":
        out[_join(where, "__fn__")] = "Script"
        for name in _SCRIPT_FIELDS:
            _flatten_node(node.get(name), _join(where, name), out, defs, depth + 1)
        return
    if kind == "dict" and node.get("items"):
        for key, item in node["items"].items():
            _flatten_node(item, _join(where, key), out, defs, depth + 1)
        return
    items = node if isinstance(node, list) else None
    if items and any(
        isinstance(_resolve(i, defs), dict)
        and _resolve(i, defs).get("type") in ("config", "partial", "dict")
        for i in items
    ):
        for index, item in enumerate(items):
            _flatten_node(item, _join(where, str(index)), out, defs, depth + 1)
        return
    out[where or "__value__"] = _short_node(node, defs, depth)


def _short_node(node: Any, defs: dict[int, Any], depth: int) -> str:
    """:func:`_short` of a stored node (the same display, without the live objects)."""
    if depth > _MAX_DOC_DEPTH:
        raise SerializeError("task document is nested too deeply")
    node = _resolve(node, defs)
    if isinstance(node, list):
        return "[" + ", ".join(_short_node(i, defs, depth + 1) for i in node) + "]"
    if not isinstance(node, dict):
        return repr(node)
    kind = node.get("type")
    if kind in ("config", "partial"):
        args = node.get("args") or {}
        inner = ", ".join(f"{k}={_short_node(args[k], defs, depth + 1)}" for k in sorted(args))
        name = _ref_name(node.get("fn"))
        if kind == "partial":
            return f"partial({name}{', ' + inner if inner else ''})"
        return f"{name}({inner})"
    if kind == "script":
        shown = [
            f"{name}={node.get(name)!r}"
            for name in _SCRIPT_FIELDS
            if (name in ("path", "inline") and node.get(name) is not None)
            or (name not in ("path", "inline") and node.get(name) != _SCRIPT_DEFAULTS[name])
        ]
        return f"Script({', '.join(shown)})"
    if kind == "enum":
        return f"{_ref_name(node.get('cls')).rsplit('.', 1)[-1]}.{node.get('name')}"
    if kind == "tuple":
        items = [_short_node(i, defs, depth + 1) for i in node.get("items") or []]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if kind == "dict":
        pairs = node.get("items") or {}
        return (
            "{"
            + ", ".join(
                f"{k!r}: {_short_node(v, defs, depth + 1)}" for k, v in sorted(pairs.items())
            )
            + "}"
        )
    if kind == "dataclass":
        fields = node.get("fields") or {}
        inner = ", ".join(
            f"{k}={_short_node(v, defs, depth + 1)}" for k, v in sorted(fields.items())
        )
        return f"{_ref_name(node.get('cls')).rsplit('.', 1)[-1]}({inner})"
    if kind == "path":
        return f"Path({str(node.get('path'))!r})"
    if kind == "ref":
        return _ref_name(node)
    if kind == "float":
        return str(node.get("value"))
    return repr(node)
