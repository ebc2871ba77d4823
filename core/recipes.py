"""Recipes (named task makers), factories (named sub-config makers) and workspaces.

A *workspace* is the user's Python file, folder or module that defines recipes with
``@recipe`` and factories with ``@factory``. Files are imported under a stable synthetic
module name (``nemorun_workspace_<stem>_<hash>``) that :mod:`core.serialize` records with the
file's path, so a job process on the same filesystem can import the same functions again.

Installed packages contribute recipes through the ``nemorun_tui.recipes`` entry-point group
(each value names a module to import). Which workspace to use (flag, environment variable,
config file) is the caller's decision; this module only loads what it is given.

fiddle is not imported here: decorating and collecting recipes never needs it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from core.serialize import import_module_from_file, register_module_file, synthetic_module_name

if TYPE_CHECKING:
    from core.config import Task

__all__ = [
    "ENTRY_POINT_GROUP",
    "Recipe",
    "RecipeError",
    "UnknownRecipeError",
    "Workspace",
    "WorkspaceError",
    "discover",
    "factory",
    "load_workspace",
    "recipe",
    "registered",
    "synthetic_module_name",
]

ENTRY_POINT_GROUP = "nemorun_tui.recipes"
WORKSPACE_FILES = ("workspace.py", "recipes.py")
_MARKER = "__nemorun_recipe__"

RecipeKind = Literal["recipe", "factory"]


class WorkspaceError(Exception):
    """A workspace cannot be found or imported; ``str()`` is one line for the user."""


class RecipeError(Exception):
    """A recipe is badly declared, fails, or returns something that is not a task."""


class UnknownRecipeError(LookupError):
    """No recipe of that name; the message lists close matches and what is available."""

    def __str__(self) -> str:
        # LookupError would repr() a single argument; we want the plain sentence.
        return str(self.args[0]) if self.args else ""


def _where(exc: BaseException, filename: str | None) -> str:
    """`` (line N)`` in ``filename`` where ``exc`` happened, else the deepest frame."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        if filename is None or os.path.abspath(exc.filename or "") == filename:
            return f" (line {exc.lineno})"
        return f" ({os.path.basename(exc.filename or '?')}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    if filename is not None:
        for frame in reversed(frames):
            if os.path.abspath(frame.filename) == filename:
                return f" (line {frame.lineno})"
    if frames:
        return f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
    return ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class Recipe:
    """A registered recipe or factory: the function plus where it came from."""

    name: str
    fn: Callable[..., Any]
    help: str
    module: str
    path: str | None
    kind: RecipeKind = "recipe"

    def make(self, **kwargs: Any) -> Task:
        """Call the function; a recipe must return a Config, Partial or Script.

        Failures become a one-line :class:`RecipeError` pointing at the recipe's line.
        """
        try:
            result = self.fn(**kwargs)
        except Exception as exc:
            source = os.path.abspath(self.path) if self.path else None
            raise RecipeError(
                f"{self.kind} `{self.name}` failed: {_one_line(exc)}{_where(exc, source)}"
            ) from exc
        if self.kind == "recipe":
            from core.config import task_kind

            try:
                task_kind(result)
            except TypeError:
                raise RecipeError(
                    f"recipe `{self.name}` returned {type(result).__name__}, "
                    "expected a Config, Partial or Script"
                ) from None
        return result  # type: ignore[no-any-return]  # a factory's result, checked above

    def describe(self) -> str:
        """A few lines for ``--help``-like listings: name, help, signature and source."""
        try:
            signature = str(inspect.signature(self.fn))
        except (TypeError, ValueError):
            signature = "(...)"
        try:
            line = inspect.getsourcelines(self.fn)[1]
        except (OSError, TypeError):
            line = None
        source = self.path or self.module
        if line is not None:
            source = f"{source}:{line}"
        lines = [f"{self.name}{signature}" + (f" — {self.help}" if self.help else "")]
        lines.append(f"  {self.kind} defined in {source}")
        return "\n".join(lines)


#: module name -> recipe name -> Recipe, filled by the decorators as modules execute.
_REGISTRY: dict[str, dict[str, Recipe]] = {}


def registered(module: str | None = None) -> dict[str, Recipe]:
    """Recipes and factories registered so far (all, or those of one module)."""
    if module is not None:
        return dict(_REGISTRY.get(module, {}))
    return {f"{mod}:{name}": r for mod, entries in _REGISTRY.items() for name, r in entries.items()}


def _register(fn: Callable[..., Any], name: str | None, help: str | None, kind: RecipeKind) -> Any:
    if not callable(fn):
        raise RecipeError(f"@{kind} needs a function, got {type(fn).__name__}")
    recipe_name = name or getattr(fn, "__name__", None)
    if not recipe_name or not re.fullmatch(r"[A-Za-z_][\w\-]*", recipe_name):
        raise RecipeError(f"@{kind}: {recipe_name!r} is not a usable name")
    module = getattr(fn, "__module__", None) or "__main__"
    doc = inspect.getdoc(fn) or ""
    text = help if help is not None else (doc.strip().splitlines() or [""])[0]
    path = getattr(sys.modules.get(module), "__file__", None)
    entry = Recipe(recipe_name, fn, text, module, path, kind)
    entries = _REGISTRY.setdefault(module, {})
    previous = entries.get(recipe_name)
    if previous is not None and previous.fn.__qualname__ != fn.__qualname__:
        raise RecipeError(
            f"name `{recipe_name}` is used twice in {module} "
            f"(`{previous.fn.__qualname__}` and `{fn.__qualname__}`)"
        )
    entries[recipe_name] = entry  # same function re-executed (module reload): replace
    setattr(fn, _MARKER, entry)
    return fn


@overload
def recipe(fn: Callable[..., Any], /) -> Callable[..., Any]: ...
@overload
def recipe(
    fn: None = None, /, *, name: str | None = None, help: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...
def recipe(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    help: str | None = None,
) -> Any:
    """Register a function returning a Config, Partial or Script as a runnable recipe.

    Usable bare (``@recipe``) or with arguments (``@recipe(name="pretrain", help=...)``).
    The function is returned unchanged, only marked, so it stays callable and testable.
    Every recipe is also a factory name for overrides.
    """
    if fn is not None:
        return _register(fn, name, help, "recipe")
    return lambda inner: _register(inner, name, help, "recipe")


@overload
def factory(fn: Callable[..., Any], /) -> Callable[..., Any]: ...
@overload
def factory(
    fn: None = None, /, *, name: str | None = None, help: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...
def factory(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    help: str | None = None,
) -> Any:
    """Register a sub-config maker usable by name in overrides (``trainer=small_trainer``)."""
    if fn is not None:
        return _register(fn, name, help, "factory")
    return lambda inner: _register(inner, name, help, "factory")


@dataclass
class Workspace:
    """Recipes and factories available to the user, and where they came from."""

    source: str
    recipes: dict[str, Recipe] = field(default_factory=dict)
    factory_recipes: dict[str, Recipe] = field(default_factory=dict)
    modules: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def factories(self) -> dict[str, Callable[[], Any]]:
        """Name -> zero-argument maker, for ``apply_overrides(factories=...)``.

        Every recipe and every factory counts; a factory shadows a recipe of the same name.
        """
        makers: dict[str, Callable[[], Any]] = {n: r.make for n, r in self.recipes.items()}
        makers.update({n: r.make for n, r in self.factory_recipes.items()})
        return makers

    def get(self, name: str) -> Recipe:
        """The recipe called ``name``, or an :class:`UnknownRecipeError` naming close ones."""
        found = self.recipes.get(name)
        if found is not None:
            return found
        names = sorted(self.recipes)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = "; did you mean " + " or ".join(f"`{c}`" for c in close) + "?" if close else ""
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none"
        raise UnknownRecipeError(f"unknown recipe `{name}`{hint} (available: {shown})")

    def add_module(self, module: Any, *, override: bool = True) -> list[str]:
        """Collect the recipes of an imported module; returns name clashes it skipped.

        A module's recipes are those it registered plus marked functions it imported from
        elsewhere (so a workspace can re-export another's recipes).
        """
        entries = dict(_REGISTRY.get(module.__name__, {}))
        for value in list(vars(module).values()):
            entry = getattr(value, _MARKER, None) if callable(value) else None
            if isinstance(entry, Recipe) and entry.name not in entries:
                entries[entry.name] = entry
            elif isinstance(entry, Recipe) and entries[entry.name].fn is not value:
                other = entries[entry.name]
                raise WorkspaceError(
                    f"recipe name `{entry.name}` is used twice in {module.__name__}: "
                    f"{other.module}.{other.fn.__qualname__} and "
                    f"{entry.module}.{entry.fn.__qualname__}"
                )
        skipped: list[str] = []
        for name, entry in sorted(entries.items()):
            target = self.recipes if entry.kind == "recipe" else self.factory_recipes
            if name in target and not override and target[name].fn is not entry.fn:
                skipped.append(name)
                continue
            target[name] = entry
        self.modules.append(module.__name__)
        return skipped


def _looks_like_path(ref: str) -> bool:
    return ref.endswith(".py") or os.sep in ref or "/" in ref or os.path.exists(ref)


def load_workspace(ref: str, *, origin: str | None = None, reload: bool = False) -> Workspace:
    """Import the workspace ``ref`` (a ``.py`` file, a folder, or a module name).

    A folder must hold ``workspace.py`` or ``recipes.py``. ``origin`` names where the ref
    came from (``--workspace``, ``$NEMORUN_TUI_WORKSPACE``) for error messages. An already
    imported workspace is reused unless ``reload`` is set (reloading makes new classes, so
    configs made before no longer match them).
    """
    suffix = f" (from {origin})" if origin else ""
    if _looks_like_path(ref):
        path = os.path.abspath(os.path.expanduser(ref))
        if os.path.isdir(path):
            candidates = [os.path.join(path, name) for name in WORKSPACE_FILES]
            found = [c for c in candidates if os.path.isfile(c)]
            if not found:
                raise WorkspaceError(
                    f"workspace folder `{ref}` has no {' or '.join(WORKSPACE_FILES)}{suffix}"
                )
            path = found[0]
        elif not os.path.isfile(path):
            raise WorkspaceError(f"workspace `{ref}` not found{suffix}")
        module_name = synthetic_module_name(path)
        if reload:
            sys.modules.pop(module_name, None)
        if module_name not in sys.modules:
            _REGISTRY.pop(module_name, None)
        try:
            module = import_module_from_file(module_name, path)
        except Exception as exc:
            raise WorkspaceError(
                f"workspace `{ref}` failed to import: {_one_line(exc)}{_where(exc, path)}{suffix}"
            ) from exc
        register_module_file(module_name, path)
        source = path
    else:
        try:
            if reload and ref in sys.modules:
                _REGISTRY.pop(ref, None)
                module = importlib.reload(sys.modules[ref])
            else:
                module = importlib.import_module(ref)
        except ModuleNotFoundError as exc:
            if exc.name and (ref == exc.name or ref.startswith(exc.name + ".")):
                raise WorkspaceError(
                    f"workspace `{ref}` not found: no such file or importable module{suffix}"
                ) from exc
            raise WorkspaceError(
                f"workspace `{ref}` failed to import: {_one_line(exc)}{suffix}"
            ) from exc
        except Exception as exc:
            filename = getattr(sys.modules.get(ref), "__file__", None)
            if filename is None:
                spec = importlib.util.find_spec(ref)
                filename = spec.origin if spec is not None else None
            where = _where(exc, os.path.abspath(filename) if filename else None)
            raise WorkspaceError(
                f"workspace `{ref}` failed to import: {_one_line(exc)}{where}{suffix}"
            ) from exc
        source = ref
    workspace = Workspace(source=source)
    workspace.add_module(module)
    return workspace


def discover(workspace: str | None, *, origin: str | None = None) -> Workspace:
    """The user's workspace (if any) plus recipes from installed entry points.

    The user's recipes win name clashes. A broken plugin does not stop the app: its
    problem is recorded in ``Workspace.errors`` instead of raised.
    """
    import importlib.metadata

    result = load_workspace(workspace, origin=origin) if workspace else Workspace(source="")
    try:
        entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:
        result.errors.append(f"cannot list recipe plugins: {_one_line(exc)}")
        return result
    for entry_point in sorted(entry_points, key=lambda ep: ep.name):
        module_name = entry_point.value.split(":", 1)[0].strip()
        try:
            module = importlib.import_module(module_name)
            skipped = result.add_module(module, override=False)
        except Exception as exc:
            result.errors.append(
                f"recipe plugin `{entry_point.name}` ({module_name}) failed: {_one_line(exc)}"
            )
            continue
        for name in skipped:
            result.errors.append(
                f"recipe plugin `{entry_point.name}`: `{name}` is already defined; ignored"
            )
    return result
