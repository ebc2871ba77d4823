"""Import the user's workspace in a separate process, so the app never runs user code itself.

A workspace module may do anything when imported: print, hang, call ``sys.exit``, crash the
interpreter, or launch jobs. Compose still has to list its recipes, build configs from them
and apply overrides, which all need the real callables. So the app asks this helper:
``python -m core.engine.workspace_helper`` reads one JSON request per line on stdin and answers one
JSON line on a private copy of stdout (the user code's own prints go to stderr). Tasks come
back as stored documents plus their view (:class:`core.serialize.StoredTask`), which is all
the app needs to show and launch them.

Whatever goes wrong in the helper is an error of that call: an exception (``SystemExit``
included) is answered as an error; a crash or exit ends the helper, and the call reports its
exit status and last words; a hang is stopped after ``timeout`` seconds. The next call
starts a fresh helper. ``discover`` always starts a fresh one, so edits to the workspace
files are seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.serialize import StoredTask, TaskView

#: How long one request may take (a workspace importing a large library can be slow).
DEFAULT_TIMEOUT = 120.0
_STDERR_TAIL = 2000
_MAX_LINE = 64 * 1024 * 1024


class WorkspaceHelperError(Exception):
    """The helper process failed (died, hung, or answered nonsense); ``str()`` says how."""


class WorkspaceCallError(Exception):
    """The user's code or input was refused (an unknown recipe, a bad override…).

    ``kind`` is the original exception's type name; ``str()`` is its one-line message.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    help: str
    module: str


@dataclass
class WorkspaceInfo:
    """A workspace as the app sees it: names and help, no callables."""

    source: str
    recipes: dict[str, RecipeInfo] = field(default_factory=dict)
    factories: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuiltRecipe:
    """One recipe with overrides applied, as the stored document of its task."""

    recipe: str
    title: str
    workspace: str | None
    help: str
    task: StoredTask


# --------------------------------------------------------------------------- the parent side


class WorkspaceHelper:
    """Talks to one helper process at a time; calls are serialized. Use on one event loop."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, python: str | None = None) -> None:
        self.timeout = timeout
        self.python = python or sys.executable
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: bytearray = bytearray()
        self._drain: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None

    async def discover(self, workspace: str | None) -> WorkspaceInfo:
        """Recipes and factories of ``workspace`` (a fresh helper: edits are seen)."""
        await self.close()
        data = await self._call({"op": "discover", "workspace": workspace})
        recipes = {
            r["name"]: RecipeInfo(str(r["name"]), str(r.get("help") or ""), str(r["module"]))
            for r in data["recipes"]
        }
        return WorkspaceInfo(
            str(data["source"]), recipes, list(data["factories"]), list(data["errors"])
        )

    async def build(
        self, workspace: str | None, recipe: str, overrides: Sequence[str]
    ) -> BuiltRecipe:
        """The recipe's task with ``overrides`` applied (checked against its types there)."""
        data = await self._call(
            {"op": "build", "workspace": workspace, "recipe": recipe, "overrides": list(overrides)}
        )
        return BuiltRecipe(
            recipe=str(data["recipe"]),
            title=str(data["title"]),
            workspace=data["workspace"],
            help=str(data["help"]),
            task=_stored(data["task"]),
        )

    async def rebuild(
        self, home: str, exp_id: str, overrides: Sequence[str]
    ) -> dict[str, StoredTask]:
        """Tasks of a recorded experiment's jobs that ``overrides`` touch, rebuilt."""
        data = await self._call(
            {"op": "rebuild", "home": home, "exp_id": exp_id, "overrides": list(overrides)}
        )
        return {name: _stored(item) for name, item in data["tasks"].items()}

    async def close(self) -> None:
        """Stop the helper process (if any); the next call starts a new one."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        if self._drain is not None:
            self._drain.cancel()
            with contextlib.suppress(BaseException):
                await self._drain
            self._drain = None

    def kill_now(self) -> None:
        """Kill the helper process without awaiting anything (its event loop may be dead)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    # -- plumbing ------------------------------------------------------------------------
    async def _start(self) -> asyncio.subprocess.Process:
        self._stderr = bytearray()
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "core.engine.workspace_helper",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own group: a kill reaches what it started
            limit=_MAX_LINE,
        )
        self._drain = asyncio.ensure_future(self._keep_stderr(proc))
        self._proc = proc
        return proc

    async def _keep_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(4096):
            self._stderr += chunk
            del self._stderr[:-_STDERR_TAIL]

    def _last_words(self) -> str:
        text = bytes(self._stderr).decode("utf-8", "replace").strip()
        lines = [line for line in text.splitlines() if line.strip()]
        return f"; last output: {lines[-1][:300]}" if lines else ""

    async def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            proc = self._proc
            if proc is None or proc.returncode is not None:
                proc = await self._start()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                await proc.stdin.drain()
                line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
            except TimeoutError:
                await self.close()
                raise WorkspaceHelperError(
                    f"the workspace did not answer within {self.timeout:g} s "
                    "(stopped; does importing it hang?)"
                ) from None
            except (BrokenPipeError, ConnectionResetError, ValueError):
                line = b""
            except BaseException:
                # Cancelled while the helper was working on it: its answer would be read by
                # the next call as its own. A fresh helper answers the next call instead.
                await self.close()
                raise
            if not line:
                code = await _exit_code(proc)
                await self.close()
                raise WorkspaceHelperError(
                    f"the workspace helper ended ({_describe_exit(code)}) while loading the "
                    f"workspace{self._last_words()}"
                )
            try:
                answer = json.loads(line)
            except ValueError:
                await self.close()
                raise WorkspaceHelperError("the workspace helper answered nonsense") from None
        if not answer.get("ok"):
            raise WorkspaceCallError(str(answer.get("kind", "Error")), str(answer.get("error")))
        return dict(answer["result"])


async def _exit_code(proc: asyncio.subprocess.Process) -> int | None:
    try:
        return await asyncio.wait_for(proc.wait(), 5)
    except TimeoutError:
        return None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _stored(item: dict[str, Any]) -> StoredTask:
    view = TaskView.from_dict(item["view"]) if item.get("view") is not None else None
    return StoredTask.from_text(str(item["document"]), view)


# --------------------------------------------------------------------------- the helper side


def _task_item(task: Any) -> dict[str, Any]:
    stored = StoredTask.of(task)
    return {"document": stored.document, "view": stored.view.to_dict() if stored.view else None}


def _discover(request: dict[str, Any]) -> dict[str, Any]:
    from core.recipes import discover

    ws = discover(request.get("workspace"))
    return {
        "source": ws.source,
        "recipes": [
            {"name": r.name, "help": r.help or "", "module": r.module}
            for r in sorted(ws.recipes.values(), key=lambda r: r.name)
        ],
        "factories": sorted(ws.factory_recipes),
        "errors": list(ws.errors),
    }


def _build(request: dict[str, Any]) -> dict[str, Any]:
    from core.engine import Engine
    from core.recipes import discover
    from core.store import Store

    ws = discover(request.get("workspace"))
    engine = Engine(Store(os.devnull))  # only recipe_plan: nothing is read or written
    plan = engine.recipe_plan(ws, str(request["recipe"]), list(request.get("overrides") or []))
    return {
        "recipe": plan.recipe,
        "title": plan.title,
        "workspace": plan.workspace,
        "help": ws.get(str(plan.recipe)).help or "",
        "task": _task_item(plan.jobs[0].task),
    }


def _rebuild(request: dict[str, Any]) -> dict[str, Any]:
    from core.engine import Engine
    from core.store import Store

    engine = Engine(Store(str(request["home"])))
    tasks = engine.rebuilt_tasks(str(request["exp_id"]), list(request.get("overrides") or []))
    return {"tasks": {name: _task_item(task) for name, task in tasks.items()}}


_OPS = {"discover": _discover, "build": _build, "rebuild": _rebuild}


def main() -> int:
    """Serve requests until stdin closes. User code's prints go to stderr, never the answer."""
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from core.engine.launch_guard import IMPORT_ONLY_ENV

    # A workspace that calls run.run(...) at import (no __main__ guard) launches nothing here.
    os.environ[IMPORT_ONLY_ENV] = "1"
    for line in sys.stdin:
        try:
            request = json.loads(line)
            op = _OPS[request["op"]]
            answer: dict[str, Any] = {"ok": True, "result": op(request)}
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are answers too
            message = str(exc) or type(exc).__name__
            if isinstance(exc, SystemExit):
                message = f"the workspace called sys.exit({exc.code!r}) while being imported"
            answer = {"ok": False, "kind": type(exc).__name__, "error": message.splitlines()[0]}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
