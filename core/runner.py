"""What a job process runs for a Config/Partial task: ``python -m core.runner TASK_JSON``.

It reads the task file written by :func:`core.serialize.dumps`, builds it with
:func:`core.serialize.build_task` (never importing fiddle, so the job starts in
milliseconds rather than a quarter second), and runs it: a Partial is called with no
arguments, a Config's build *is* the run. Scripts never come here; the engine runs them
directly.

Exit codes: 0 success, 1 the task raised (traceback on stderr), 2 the runner was misused or
the task file is unreadable. Nothing but the task's own output goes to stdout.
"""

from __future__ import annotations

import json
import sys

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2


def import_task_modules(data: dict[str, object]) -> None:
    """Import every module the task refers to, with launches off (core.engine.launch_guard).

    Why first and apart from the build: a task defined in the user's launch script makes the
    job import that script, and a script without an ``if __name__ == "__main__":`` guard
    would launch itself again from its top level. Only the import is guarded; the task's own
    run (and a Config's build, which *is* its run) may launch if the job opted in.
    """
    from core.engine import launch_guard
    from core.serialize import import_ref

    modules = data.get("modules")
    modules_map = modules if isinstance(modules, dict) else {}
    for module, qualname in sorted(_refs(data.get("task"))):
        where = modules_map.get(module) or module
        with launch_guard.importing_task(f"the task module {where}"):
            import_ref(module, qualname, modules_map)


def _refs(node: object) -> set[tuple[str, str]]:
    """Every (module, qualname) reference in a task document node, read the way
    :func:`core.serialize.build_task` reads nodes (an explicit stack: no recursion limit)."""
    found: set[tuple[str, str]] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        refs = {"config": "fn", "partial": "fn", "enum": "cls", "dataclass": "cls"}
        ref = item if kind == "ref" else item.get(refs.get(str(kind), ""))
        if isinstance(ref, dict):
            module, qualname = ref.get("module"), ref.get("qualname")
            if isinstance(module, str) and isinstance(qualname, str):
                found.add((module, qualname))
        children = {"config": "args", "partial": "args", "dataclass": "fields", "dict": "items"}
        inner = item.get(children.get(str(kind), ""))
        if isinstance(inner, dict):
            stack.extend(inner.values())
        elif kind == "tuple" and isinstance(item.get("items"), list):
            stack.extend(item["items"])
    return found


def run_task(data: dict[str, object]) -> object:
    """Build and run one task document; returns what the task returned."""
    from core.serialize import build_task

    kind = data.get("kind")
    if kind == "script":
        raise ValueError("core.runner runs Config/Partial tasks; run Scripts with Script.argv()")
    if kind not in ("config", "partial"):
        raise ValueError(f"task document has unknown kind {kind!r}")
    import_task_modules(data)
    built = build_task(data)
    if kind == "partial":
        return built()
    return built


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m core.runner TASK_JSON_PATH", file=sys.stderr)
        return EXIT_USAGE
    try:
        with open(args[0], encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        print(f"core.runner: cannot read task file {args[0]}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        run_task(data)
    except SystemExit as exc:  # the task called sys.exit(): keep its code (and message)
        code = exc.code
        if code is None or isinstance(code, int):
            return EXIT_OK if code is None else code
        sys.stdout.flush()
        print(code, file=sys.stderr)  # what Python itself does with sys.exit("message")
        return EXIT_TASK_FAILED
    except KeyboardInterrupt:
        print("core.runner: interrupted", file=sys.stderr)
        return 130
    except BaseException:
        import traceback

        sys.stdout.flush()
        traceback.print_exc()
        return EXIT_TASK_FAILED
    finally:
        sys.stdout.flush()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
