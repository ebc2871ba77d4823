"""The official client, wrapped: kubeconfig loading, rate limiting, counting, clear errors.

Every call here is *blocking* (the client is urllib3-based) and is made from a worker thread
(``asyncio.to_thread``) or the namespace's watch thread, never on an event loop. Objects go
in and out as plain JSON dicts (``_preload_content=False``), which keeps the watch cache
cheap and the mapping code independent of the generated model classes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from core.engine.executors_kubernetes import KubernetesExecutor
from core.engine.protocol import BackendError


class ApiUnavailable(BackendError):
    """The API server cannot be reached or refuses our credentials (a clear, shown message)."""


class NotFound(BackendError):
    """The object does not exist (HTTP 404)."""


class Conflict(BackendError):
    """The object already exists (HTTP 409)."""


class Gone(BackendError):
    """The resourceVersion is too old (HTTP 410): re-list."""


class ThreadRateLimiter:
    """Token bucket shared by every thread: ``burst`` calls at once, ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.waited = 0.0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                delay = (1 - self._tokens) / self.rate
                self.waited += delay
            time.sleep(delay)


class KubeApi:
    """One API server (a kubeconfig context): the client objects, a limiter and a counter."""

    def __init__(self, executor: KubernetesExecutor) -> None:
        self.context = executor.context or None
        self.kubeconfig = executor.kubeconfig or None
        self.limiter = ThreadRateLimiter(executor.qps, executor.burst)
        #: Requests sent, by verb (``list``, ``watch``, ``create``, ...): the benchmark's figure.
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._api: Any = None
        self.host = ""

    # ------------------------------------------------------------------ setup
    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = self._load()
            return self._api

    def _load(self) -> Any:
        try:
            from kubernetes import client, config
        except ImportError as exc:
            raise BackendError(
                "the Kubernetes backend needs the official client: "
                "pip install 'nemorun-tui[kubernetes]'"
            ) from exc
        cfg = client.Configuration()
        try:
            config.load_kube_config(
                config_file=self.kubeconfig, context=self.context, client_configuration=cfg
            )
        except Exception as exc:  # the loader raises ConfigException, TypeError, OSError...
            where = self.kubeconfig or "the default kubeconfig"
            ctx = f" context {self.context!r}" if self.context else ""
            raise ApiUnavailable(f"cannot load {where}{ctx}: {exc}") from None
        cfg.retries = 0  # we retry ourselves (the watch), and a dead server must fail fast
        self.host = str(cfg.host)
        api = client.ApiClient(cfg)
        return {
            "client": client,
            "batch": client.BatchV1Api(api),
            "core": client.CoreV1Api(api),
            "custom": client.CustomObjectsApi(api),
        }

    def close(self) -> None:
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            api["batch"].api_client.close()

    # ------------------------------------------------------------------ calls
    def call(
        self, verb: str, group: str, method: str, *args: Any, limited: bool = True, **kw: Any
    ) -> Any:
        """Call ``<group>.<method>`` with raw content; returns the urllib3 response."""
        api = self._client()
        if limited:
            self.limiter.acquire()
        with self._lock:
            self.requests[verb] += 1
        kw.setdefault("_preload_content", False)
        kw.setdefault("_request_timeout", (5, 30))
        try:
            return getattr(api[group], method)(*args, **kw)
        except Exception as exc:
            error = self.translate(exc)
            if isinstance(error, ApiUnavailable) and getattr(exc, "status", None) == 401:
                # Expired credentials: the next call reloads the kubeconfig (a refreshed
                # token file, or an exec plugin asked again), as kubectl would.
                with self._lock:
                    if self._api is api:
                        self._api = None
            raise error from None

    def json(self, verb: str, group: str, method: str, *args: Any, **kw: Any) -> Any:
        """A call whose body is one JSON document."""
        response = self.call(verb, group, method, *args, **kw)
        try:
            return json.loads(response.data or b"{}")
        finally:
            response.release_conn()

    def translate(self, exc: BaseException) -> BackendError:
        """Any client failure as one of our errors, with a message a user can act on."""
        where = self.host or "the API server"
        status = getattr(exc, "status", None)
        if _is_api_exception(exc) and status:
            body = _status_message(getattr(exc, "body", None)) or str(getattr(exc, "reason", ""))
            if status in (401, 403):
                what = "expired or invalid credentials" if status == 401 else "permission denied"
                return ApiUnavailable(f"Kubernetes API {where}: {what} (HTTP {status}): {body}")
            if status == 404:
                return NotFound(body or "not found")
            if status == 409:
                return Conflict(body or "already exists")
            if status == 410:
                return Gone(body or "resource version too old")
            return BackendError(f"Kubernetes API {where}: HTTP {status}: {body}")
        name = type(exc).__name__
        if name in ("MaxRetryError", "NewConnectionError", "ProtocolError", "ConnectionError"):
            return ApiUnavailable(f"Kubernetes API server {where} is unreachable: {exc}")
        if "Timeout" in name:
            return ApiUnavailable(f"Kubernetes API server {where} did not answer in time ({name})")
        if isinstance(exc, BackendError):
            return exc
        return BackendError(f"Kubernetes API {where}: {name}: {exc}")

    # ------------------------------------------------------------------ streams
    def lines(self, response: Any, on_open: Callable[[Any], None] | None = None) -> Iterator[bytes]:
        """Lines of a streamed response (watch events); ends when the server closes it."""
        if on_open is not None:
            on_open(response)
        buffer = b""
        try:
            for chunk in response.stream(4096, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield line
            if buffer.strip():
                yield buffer
        finally:
            response.release_conn()


def _is_api_exception(exc: BaseException) -> bool:
    """An HTTP error answer of the API server (the client's ApiException and subclasses)."""
    try:
        from kubernetes.client.exceptions import ApiException
    except ImportError:  # pragma: no cover  # no client, so no client exception either
        return False
    return isinstance(exc, ApiException)


def _status_message(body: Any) -> str:
    """The ``message`` of a Status body (the server's explanation), else the body itself."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body)[:300]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("reason") or "")[:300]
    return str(data)[:300]
