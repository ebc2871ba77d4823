"""File-event waits for local jobs: learn that a job dir changed the moment it does.

Why: a local job's state lives in files (``result.json``, ``pid.json``) and its output in
``logs/``. Polling them with growing sleeps costs a launch that waits for a short job tens
to hundreds of milliseconds of pure waiting. The operating system already knows when these
files change (inotify on Linux); :mod:`watchfiles` gives us that portably.

Why watchfiles' ``RustNotify`` directly rather than ``watchfiles.awatch``: the notifier starts
watching when it is *constructed*, so a caller can create it, then look at the files, then
wait, and no change can slip in between the look and the wait (``awatch`` only starts
watching inside its generator, after the caller has looked). It also spares importing
anyio. watchfiles is imported on first use only.

Each wait runs in a short-lived daemon thread of its own (not the default executor), so
waiting jobs never take the worker threads that polls and submits need.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

#: Once a change is seen, how long watchfiles groups further changes before answering (ms).
DEBOUNCE_MS = 20
#: How often the notifier's waiting thread looks at what it collected (ms); the latency of
#: a wait is about one to two steps.
STEP_MS = 5


def _rust_notify() -> Any:
    """watchfiles' notifier module, loaded without running ``watchfiles/__init__.py``.

    The package's own ``__init__`` imports its async and process-restart helpers (anyio,
    multiprocessing): about 5-10 ms a launch pays for nothing here. The compiled module is
    loaded from the package folder under its usual name, so a later ``import watchfiles``
    finds and shares it; any surprise falls back to the ordinary import.
    """
    name = "watchfiles._rust_notify"
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        import importlib.machinery
        import importlib.util

        package = importlib.util.find_spec("watchfiles")  # finds, does not import
        folders = list(package.submodule_search_locations or []) if package else []
        for folder in folders:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, "_rust_notify" + suffix)
                if os.path.isfile(path):
                    spec = importlib.util.spec_from_file_location(name, path)
                    if spec is None or spec.loader is None:
                        continue
                    module = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(module)
                    sys.modules[name] = module
                    return module
    except Exception:  # any oddity: the ordinary import below decides
        sys.modules.pop(name, None)
    try:
        import watchfiles._rust_notify as module
    except ImportError as exc:  # pragma: no cover - watchfiles is a dependency
        raise WatchUnavailable(f"watchfiles is not installed: {exc}") from exc
    return module


class WatchUnavailable(Exception):
    """No file events for these paths (no watchfiles, no inotify watches left, gone dir)."""


class DirWatch:
    """Change events for a few directories (not recursive), collected from construction on.

    Events that happen between two :meth:`changed` calls are kept and returned by the next
    one, so a caller that checks the files after constructing the watch never misses one.
    """

    def __init__(self, dirs: Sequence[str]) -> None:
        missing = [d for d in dirs if not os.path.isdir(d)]
        if missing:  # a watch on nothing would never fire: say so instead
            raise WatchUnavailable(f"no such folder: {missing[0]}")
        RustNotify = _rust_notify().RustNotify
        try:
            # (paths, debug, force_polling, poll_delay_ms, recursive, ignore_permission_denied)
            self._notify: Any = RustNotify([str(d) for d in dirs], False, False, 50, False, True)
        except (OSError, RuntimeError, TypeError) as exc:  # TypeError: another watchfiles API
            raise WatchUnavailable(str(exc) or type(exc).__name__) from exc
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False

    async def changed(self, timeout: float) -> set[str]:
        """Paths changed since the last call (waiting up to ``timeout`` s); empty on timeout.

        Cancelling the caller stops the waiting thread within one step.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        stop = threading.Event()
        timeout_ms = max(1, int(timeout * 1000))

        def deliver(outcome: Any, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(outcome)

        def work() -> None:
            outcome: Any = None
            error: BaseException | None = None
            try:
                outcome = self._notify.watch(DEBOUNCE_MS, STEP_MS, timeout_ms, stop)
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            finally:
                with self._lock:
                    self._busy = False
                    if self._closed:
                        self._notify.close()
            # A closed loop (RuntimeError) means nobody waits for this any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, outcome, error)

        with self._lock:
            if self._closed:
                raise WatchUnavailable("watch closed")
            if self._busy:
                raise RuntimeError("DirWatch.changed is already being awaited")
            self._busy = True
        threading.Thread(target=work, name="nrt-local-watch", daemon=True).start()
        try:
            outcome = await future
        except asyncio.CancelledError:
            stop.set()
            raise
        except RuntimeError as exc:  # the notifier failed (e.g. watched dir removed)
            raise WatchUnavailable(str(exc)) from exc
        if isinstance(outcome, set):
            return {path for _, path in outcome}
        return set()  # "timeout", "stop" or "signal"

    def close(self) -> None:
        """Stop watching; safe to call twice, and while a wait is under way."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._busy:
                self._notify.close()

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def names(paths: set[str]) -> set[str]:
    """The file names of changed paths (what a caller usually tests)."""
    return {os.path.basename(p) for p in paths}
