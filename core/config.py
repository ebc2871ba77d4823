"""What to run: fiddle ``Config``/``Partial`` (our thin subclasses) and :class:`Script`.

Why fiddle is loaded lazily here, although this is *the* config module: fiddle costs about
0.25 s to import (it pulls in libcst). Workspace files do ``from core import config`` or
``from core.config import Script`` at import time, and the job runner imports workspace files
to find the functions it calls. If this module imported fiddle at top level, every job
process would pay for fiddle although it never touches a ``Config``. So :class:`Config`,
:class:`Partial` and the :data:`Task` alias are created on first attribute access
(PEP 562 module ``__getattr__``); ``Script`` and :func:`task_kind` never need fiddle.

``from core.config import Config`` therefore imports fiddle (that is what the caller asked
for); ``from core import config`` followed by ``config.Config(...)`` inside a recipe body
defers the cost until a recipe actually runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import fiddle as fdl

    class Config(fdl.Config):
        """A fiddle ``Config``: building it calls the callable with the configured args."""

    class Partial(fdl.Partial):
        """A fiddle ``Partial``: building it gives a ``functools.partial`` (a callable)."""


__all__ = ["Config", "Partial", "Script", "Task", "TaskKind", "task_kind"]

TaskKind = Literal["config", "partial", "script"]

_LAZY_NAMES = frozenset({"Config", "Partial", "Task"})


def _define_fiddle_types() -> None:
    """Create ``Config``, ``Partial`` and ``Task`` once, with stable import names.

    The classes get ``__module__ = "core.config"`` and plain ``__qualname__`` values so that
    pickle, ``copy`` and our serializer see them as ordinary module-level classes.
    """
    import fiddle as fdl

    class Config(fdl.Config):
        """A fiddle ``Config``: building it calls the callable with the configured args."""

    class Partial(fdl.Partial):
        """A fiddle ``Partial``: building it gives a ``functools.partial`` (a callable)."""

    for cls in (Config, Partial):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    namespace = globals()
    namespace["Config"] = Config
    namespace["Partial"] = Partial
    namespace["Task"] = Config | Partial | Script


def __getattr__(name: str) -> Any:
    """Resolve ``Config``/``Partial``/``Task`` on first use (imports fiddle then)."""
    if name in _LAZY_NAMES:
        _define_fiddle_types()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_text_list(values: list[Any], what: str) -> list[str]:
    """Coerce numbers to text (``args=["--steps", 3]`` is a common, harmless slip)."""
    result: list[str] = []
    for index, value in enumerate(values):
        if isinstance(value, str):
            result.append(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            result.append(str(value))
        else:
            raise ValueError(
                f"Script {what}[{index}] must be a string, got {type(value).__name__} {value!r}"
            )
    return result


@dataclass
class Script:
    """A shell or Python script to run, by file ``path`` or as ``inline`` source.

    Exactly one of ``path``/``inline`` is set. ``entrypoint`` is ``"bash"`` (or another
    shell) or ``"python"``; ``m=True`` runs ``python -m path``. :meth:`argv` turns this into
    the final argument list; nothing is ever joined into a shell string, so arguments reach
    the script exactly as given.
    """

    path: str | None = None
    inline: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: str = "bash"
    m: bool = False

    def __post_init__(self) -> None:
        if (self.path is None) == (self.inline is None):
            raise ValueError("Script needs exactly one of `path` or `inline`")
        if self.m and self.inline is not None:
            raise ValueError("Script(m=True) runs a module by name; it needs `path`, not `inline`")
        if self.m and self.entrypoint != "python":
            raise ValueError("Script(m=True) runs `python -m`; set entrypoint='python'")
        if not self.entrypoint:
            raise ValueError("Script entrypoint must not be empty")
        self.args = _as_text_list(list(self.args), "args")
        env: dict[str, str] = {}
        for key, value in dict(self.env).items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"Script env keys must be non-empty strings, got {key!r}")
            env[key] = _as_text_list([value], f"env[{key!r}]")[0]
        self.env = env

    @property
    def is_python(self) -> bool:
        """True when the script runs under a Python interpreter rather than a shell."""
        return self.entrypoint == "python"

    def argv(self, python: str) -> list[str]:
        """The final command as a list; ``python`` is the interpreter to use for Python.

        The interpreter is always the caller's (the job's venv or container python), never a
        bare ``python`` looked up on ``PATH``. Inline shell scripts get ``nemorun-script`` as
        ``$0`` so that ``args`` arrive as ``$1``, ``$2``, ...
        """
        if self.is_python:
            if not python:
                raise ValueError("Script.argv needs the path of a Python interpreter")
            if self.inline is not None:
                return [python, "-c", self.inline, *self.args]
            assert self.path is not None
            if self.m:
                return [python, "-m", self.path, *self.args]
            return [python, self.path, *self.args]
        if self.inline is not None:
            return [self.entrypoint, "-c", self.inline, "nemorun-script", *self.args]
        assert self.path is not None
        return [self.entrypoint, self.path, *self.args]


if TYPE_CHECKING:
    Task = Config | Partial | Script


def fiddle_kind(value: object) -> Literal["partial", "config"] | None:
    """``"partial"``/``"config"`` for fiddle buildables, else None — without importing fiddle.

    If fiddle was never imported, no fiddle object can exist.
    """
    fdl = sys.modules.get("fiddle")
    if fdl is None:
        return None
    if isinstance(value, fdl.Partial):
        return "partial"
    if isinstance(value, fdl.Config):
        return "config"
    return None


def task_kind(task: object) -> TaskKind:
    """Say which kind of task ``task`` is, without importing fiddle."""
    if isinstance(task, Script):
        return "script"
    kind = fiddle_kind(task)
    if kind is not None:
        return kind
    raise TypeError(f"expected a Config, Partial or Script, got {type(task).__name__} {task!r:.60}")
