"""NeMo Run's ``run.cli``: ``@run.cli.entrypoint``, ``@run.cli.factory``, ``run.cli.main(fn)``.

``import nemorun_tui as run`` makes ``run.cli`` our CLI module (nemorun_tui.cli), which
re-exports these names, so a NeMo Run script keeps working when only its import line
changes::

    @run.cli.entrypoint
    def train(optim: Optim = ..., steps: int = 10) -> None: ...

    if __name__ == "__main__":
        run.cli.main(train)          # python train.py steps=20 optim.lr=0.1 @more.yaml

An entrypoint is also a recipe (``nemorun-tui run train steps=20``), and a factory is a
factory name for overrides (``optim=small_optim``). ``run.cli.main`` understands
``KEY=VALUE`` overrides, ``@file.yaml|toml|json``, ``executor=PROFILE`` (a config.toml
profile), ``--dryrun``, ``--detach``, ``--to-yaml`` (print the resolved config, run
nothing) and ``-y``/``--yes`` (accepted: we do not ask before running).
Only the standard library is imported at module level: the CLI's start stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

_FLAGS = {"--dryrun", "--detach", "--to-yaml", "-y", "--yes", "--verbose", "-v"}


def entrypoint(fn: Callable[..., Any] | None = None, /, **_options: Any) -> Any:
    """Mark ``fn`` as a CLI entry point (and register it as a recipe of its module)."""

    def register(inner: Callable[..., Any]) -> Callable[..., Any]:
        from core.recipes import recipe

        def make() -> Any:
            from core.config import Partial

            return Partial(inner)

        make.__name__ = inner.__name__
        make.__qualname__ = f"{inner.__qualname__}.<entrypoint>"
        make.__module__ = inner.__module__
        make.__doc__ = inner.__doc__
        recipe(make)
        return inner

    return register(fn) if fn is not None else register


def factory(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """A factory usable by name in overrides (``target=``/``target_arg=`` are accepted)."""
    from core.recipes import factory as register

    named = register(name=options.get("name"))
    return named(fn) if fn is not None else named


def run_entrypoint(
    fn: Callable[..., Any],
    *,
    default_executor: Any = None,
    argv: Sequence[str] | None = None,
    **_options: Any,
) -> int:
    """``run.cli.main(fn)``: parse the command line, then run ``Partial(fn)`` with it."""
    from core.config import Partial
    from core.engine import Engine
    from core.engine.experiment import RunFailedError, run
    from core.nemo_compat import expand_override_files, task_as_data, to_yaml
    from core.overrides import OverrideError, apply_overrides
    from core.recipes import registered

    args = list(sys.argv[1:] if argv is None else argv)
    flags = {a for a in args if a in _FLAGS}
    unknown = [a for a in args if a.startswith("-") and a not in _FLAGS]
    if unknown:
        print(f"{fn.__name__}: unknown option {unknown[0]}", file=sys.stderr)
        return 2
    items = [a for a in args if not a.startswith("-")]
    profile_name = None
    overrides = []
    for item in items:
        if item.startswith("executor="):
            profile_name = item.split("=", 1)[1]
        else:
            overrides.append(item)
    module = getattr(fn, "__module__", "__main__")
    factories = {
        r.name: r.make for r in registered(module).values() if r.kind in ("factory", "recipe")
    }
    try:
        task = apply_overrides(Partial(fn), expand_override_files(overrides), factories=factories)
    except OverrideError as exc:
        print(f"{fn.__name__}: error: {exc}", file=sys.stderr)
        return 2
    if "--to-yaml" in flags:
        sys.stdout.write(to_yaml(task_as_data(task)))
        return 0
    executor = default_executor
    if profile_name or executor is None:
        executor = Engine.from_environment().profile(profile_name)
    try:
        run(
            task,
            executor=executor,
            name=fn.__name__,
            detach="--detach" in flags,
            dryrun="--dryrun" in flags,
        )
    except RunFailedError as exc:
        print(f"{fn.__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
