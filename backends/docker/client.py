"""The engine client: the docker SDK's low-level API, every blocking call off the event loop.

Why the low-level ``APIClient`` and not ``docker.from_env()``'s models: a model call often makes
a second request behind the caller's back (create, then inspect), and the poll's promise is
*one* list call per engine per refresh, which :attr:`EngineClient.calls` counts. The SDK is
imported here, on first use, so ``import backends.docker`` costs nothing without it.

Each call runs in a worker thread (``asyncio.to_thread``); log streams that follow a job for
minutes get a thread of their own, so they never starve the shared pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from backends.docker.request import API_VERSION, MANAGED_LABEL
from core.engine.protocol import BackendError


class NotFoundError(BackendError):
    """The engine has no such container or image (a 404)."""


class ConflictError(BackendError):
    """The engine refused to create a second container under a name already in use."""


class EngineClient:
    """One engine (one ``base_url``): shared by every job of the backend that owns it."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url
        self.timeout = timeout
        #: API calls made, by operation (tests and the bench read it).
        self.calls: Counter[str] = Counter()
        self._api: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                try:
                    import docker
                except ImportError:
                    raise BackendError(
                        "the docker backend needs the docker SDK: pip install 'nemorun-tui[docker]'"
                    ) from None
                try:
                    self._api = docker.APIClient(
                        base_url=self.base_url, version=API_VERSION, timeout=self.timeout
                    )
                except docker.errors.DockerException as exc:
                    raise BackendError(f"docker base_url {self.base_url!r}: {exc}") from None
            return self._api

    def _translate(self, op: str, exc: Exception) -> BackendError:
        import docker.errors
        import requests

        if isinstance(exc, docker.errors.NotFound):
            return NotFoundError(f"docker {op}: {_explain(exc)}")
        if isinstance(exc, docker.errors.APIError):
            text = _explain(exc)
            if exc.status_code == 409 or "already in use" in text:
                return ConflictError(f"docker {op}: {text}")
            return BackendError(f"docker {op}: {text}")
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return BackendError(
                f"cannot reach the Docker engine at {self.base_url} ({type(exc).__name__}: "
                f"{_short(exc)}); is it running? (set DOCKER_HOST or the profile's base_url)"
            )
        if isinstance(exc, docker.errors.DockerException):
            return BackendError(f"docker {op}: {exc}")
        raise exc

    async def call(self, op: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(api)`` in a thread; count it under ``op``; SDK errors → BackendError."""
        api = self._client()
        self.calls[op] += 1
        try:
            return await asyncio.to_thread(fn, api)
        except BackendError:
            raise
        except Exception as exc:
            raise self._translate(op, exc) from None

    # ------------------------------------------------------------------ operations
    async def ping(self) -> None:
        await self.call("ping", lambda api: api.ping())

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("info", lambda api: api.info())
        return result

    async def inspect_image(self, image: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.call(
                "inspect_image", lambda api: api.inspect_image(image)
            )
        except NotFoundError:
            return None
        return result

    async def pull(self, image: str) -> str:
        """Pull; returns the engine's last status line (errors come inside the stream)."""

        def pull(api: Any) -> str:
            last = ""
            for event in api.pull(image, stream=True, decode=True):
                if isinstance(event, dict):
                    last = str(event.get("error") or event.get("status") or last)
            return last

        result: str = await self.call("pull", pull)
        return result

    async def inspect(self, container: str) -> dict[str, Any] | None:
        """The container's full record, or None when the engine does not know it."""
        try:
            result: dict[str, Any] = await self.call(
                "inspect", lambda api: api.inspect_container(container)
            )
        except NotFoundError:
            return None
        return result

    async def list_managed(self) -> list[dict[str, Any]]:
        """Every container this project made on the engine (ended ones too): one call."""
        result: list[dict[str, Any]] = await self.call(
            "list",
            lambda api: api.containers(all=True, filters={"label": [f"{MANAGED_LABEL}=1"]}),
        )
        return result

    async def create(self, name: str, body: dict[str, Any]) -> str:
        result = await self.call(
            "create", lambda api: api.create_container_from_config(body, name=name)
        )
        return str(result["Id"])

    async def run_once(self, body: dict[str, Any], timeout: float) -> tuple[int, bytes]:
        """Create, start and wait for a short-lived container; its exit code and output.
        The container is removed whatever happens (a timeout counts as failure, -1)."""

        def run(api: Any) -> tuple[int, bytes]:
            container = api.create_container_from_config(body)["Id"]
            try:
                api.start(container)
                try:
                    status = api.wait(container, timeout=timeout)
                except Exception:  # the SDK raises its transport's timeout error
                    return -1, b"no answer within %ds" % int(timeout)
                output = api.logs(container, stdout=True, stderr=True, stream=False)
                return int(status.get("StatusCode", -1)), bytes(output)
            finally:
                with contextlib.suppress(Exception):
                    api.remove_container(container, force=True)

        result: tuple[int, bytes] = await self.call("run_once", run)
        return result

    async def start(self, container: str) -> None:
        await self.call("start", lambda api: api.start(container))

    async def stop(self, container: str, grace: float) -> None:
        # The HTTP timeout must outlast the engine's own wait before its SIGKILL.
        def stop(api: Any) -> None:
            api.timeout = self.timeout + grace
            api.stop(container, timeout=max(0, round(grace)))

        await self.call("stop", stop)

    async def remove(self, container: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self.call("remove", lambda api: api.remove_container(container, force=True))

    async def logs(self, container: str, stream: str) -> bytes:
        """All of one stream's bytes so far (the engine has no byte offsets)."""
        result: bytes = await self.call(
            "logs",
            lambda api: api.logs(
                container, stdout=stream == "stdout", stderr=stream == "stderr", stream=False
            ),
        )
        return result

    async def follow(self, container: str, stream: str) -> AsyncIterator[bytes]:
        """One stream's bytes from its start, as the engine sends them, until it ends."""
        response = await self.call(
            "logs_follow",
            lambda api: api.logs(
                container,
                stdout=stream == "stdout",
                stderr=stream == "stderr",
                stream=True,
                follow=True,
            ),
        )
        async for chunk in _drain(response, "docker-logs"):
            if chunk:
                yield bytes(chunk)

    async def wait_event(self, since: float, timeout: float, actions: frozenset[str]) -> bool:
        """True as soon as the engine reports one of ``actions`` (``die``, ``start``…) for a
        container of this project since ``since``; False after ``timeout`` seconds.

        Events before ``since`` are replayed by the engine, so a change between the caller's
        last poll and this call is not missed.
        """
        until = time.time() + timeout
        stream = await self.call(
            "events",
            lambda api: api.events(
                since=f"{since:.3f}",
                until=f"{until:.3f}",
                filters={"type": "container", "label": [f"{MANAGED_LABEL}=1"]},
                decode=True,
            ),
        )
        async for event in _drain(stream, "docker-events"):
            if isinstance(event, dict) and (event.get("Action") or event.get("status")) in actions:
                return True
        return False

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                with contextlib.suppress(Exception):
                    self._api.close()
                self._api = None


async def _drain(stream: Any, name: str) -> AsyncIterator[Any]:
    """Items of one of the SDK's blocking streams, read in a thread of its own (a follow may
    last for hours: it must not hold a worker of the shared pool). The stream ends quietly
    when it breaks (closed, timed out): callers re-attach or poll. Closing the generator
    closes the HTTP response, which unblocks the thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = object()

    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is reading
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def pump() -> None:
        try:
            for item in stream:
                put(item)
        except Exception:
            pass  # broke: ends the iteration below
        finally:
            put(done)

    threading.Thread(target=pump, name=name, daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is done:
                return
            yield item
    finally:
        with contextlib.suppress(Exception):
            stream.close()


def _explain(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation.decode() if isinstance(explanation, bytes) else explanation)
    return str(exc)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 240 else text[:240] + "…"
