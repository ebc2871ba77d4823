"""One background asyncio loop per process, for callers that are not async themselves.

Why one loop: backend clients are bound to the loop they were created on (an SSH connection,
its SFTP session, a rate limiter). If every synchronous call ran its own ``asyncio.run``,
each would build and tear down its own connections, so a script that launches a Slurm
experiment over SSH and then asks for its status would log in twice. The app's engine thread
and the synchronous Python API share this one implementation.

A coroutine that raises ``SystemExit`` or ``KeyboardInterrupt`` would stop the loop and, with
it, every later call (they would wait forever). :meth:`LoopThread.submit` turns those into
ordinary errors, and if the thread dies anyway, the next call notices, reports why through
:attr:`LoopThread.died`, and starts a fresh loop instead of hanging.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThreadError(RuntimeError):
    """A coroutine raised SystemExit/KeyboardInterrupt, or the loop thread died."""


class LoopThread:
    """An asyncio loop running forever on a daemon thread; restarted if it ever dies."""

    def __init__(self, name: str = "nemorun-engine") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: Why the previous loop thread ended unexpectedly (None while all is well).
        self.died: str | None = None
        #: How many times a dead loop was replaced by a fresh one.
        self.restarts = 0
        #: Called (on the loop thread) after a fresh loop replaced a dead one.
        self.on_restart: list[Callable[[], None]] = []
        self._pending: set[concurrent.futures.Future[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------
    def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        except BaseException as exc:  # anything that escapes the loop ends this thread
            self.died = f"{type(exc).__name__}: {exc}"
        else:
            if not self._stopping:
                self.died = "the engine loop stopped"
        finally:
            # Calls still waiting on this loop would wait forever: fail them now.
            why = self.died or "the engine loop was stopped"
            for future in list(self._pending):
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    future.set_exception(LoopThreadError(f"engine thread ended: {why}"))

    _stopping = False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (started on first use, replaced if its thread died)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                restarted = self._thread is not None and not self._stopping
                self._stopping = False
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._main, args=(self._loop,), name=self.name, daemon=True
                )
                self._thread.start()
                if restarted:
                    self.restarts += 1
                    for hook in self.on_restart:
                        self._loop.call_soon_threadsafe(hook)
            assert self._loop is not None  # set before any thread was started
            return self._loop

    def start(self) -> None:
        """Start the loop thread now (otherwise it starts on first use)."""
        self.loop  # noqa: B018 - the property starts it

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    # -- calling -------------------------------------------------------------------------
    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future."""
        future = asyncio.run_coroutine_threadsafe(_contained(coro), self.loop)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` from another event loop (e.g. the UI's) without blocking it."""
        return await asyncio.wrap_future(self.submit(coro))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking function on the loop thread and await its result."""

        async def wrapper() -> T:
            return fn(*args, **kwargs)

        return await self.call(wrapper())

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Block the calling thread until ``coro`` is done on the loop; Ctrl-C cancels it."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("run_sync called from the loop thread itself (it would deadlock)")
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            with contextlib.suppress(BaseException):
                future.result(timeout=5)
            raise

    def stop(self, timeout: float = 1.0) -> None:
        """Close backends, cancel what still runs, stop the loop, join the thread (bounded).

        A backend stuck in a blocking call cannot be interrupted; after ``timeout`` the thread
        (a daemon) is left to finish on its own and the process exits anyway.
        """
        with self._lock:
            loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            from core.engine import registry

            with contextlib.suppress(Exception):
                await asyncio.wait_for(registry.close_all(), timeout)
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        future = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        with contextlib.suppress(BaseException):
            future.result(timeout=timeout * 2)
        self._stopping = True
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=timeout)


async def _contained(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SystemExit/KeyboardInterrupt become errors instead of killing the loop."""
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exc:
        raise LoopThreadError(
            f"{type(exc).__name__}({exc}) raised inside the engine; the engine keeps running"
        ) from None


_shared: LoopThread | None = None
_shared_lock = threading.Lock()


def shared_loop() -> LoopThread:
    """The process-wide loop thread (the synchronous API and the app both use it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = LoopThread()
            atexit.register(_shared.stop)
        return _shared
