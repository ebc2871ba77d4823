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


def run_task(data: dict[str, object]) -> object:
    """Build and run one task document; returns what the task returned."""
    from core.serialize import build_task

    kind = data.get("kind")
    if kind == "script":
        raise ValueError("core.runner runs Config/Partial tasks; run Scripts with Script.argv()")
    if kind not in ("config", "partial"):
        raise ValueError(f"task document has unknown kind {kind!r}")
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
    except SystemExit as exc:  # the task called sys.exit(): keep its code
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_TASK_FAILED)
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
