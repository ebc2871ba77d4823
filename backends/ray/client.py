"""A small async client for Ray's Jobs REST API and the dashboard's log API (aiohttp).

Why the REST API and not ``ray.job_submission``: the ``ray`` package is ~240 MB and pins its
own dependency versions; the API it wraps is a handful of stable JSON endpoints. aiohttp (the
``ray`` extra) is asyncio-native, streams response bodies (live logs), and is what Ray's own
dashboard serves with. It is imported only here, inside functions.

Endpoints used (Ray >= 2.9): ``GET /api/version``; ``POST /api/jobs/``; ``GET /api/jobs/``
(every job, one call); ``GET /api/jobs/{id}``; ``POST /api/jobs/{id}/stop``;
``GET|PUT /api/packages/gcs/{name}`` (content-addressed uploads); ``GET
/api/v0/logs/file|stream`` (a file in a node's Ray log dir, whole or followed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.engine.loop_local import LoopLocal
from core.engine.protocol import BackendError

if TYPE_CHECKING:
    import aiohttp


class RayAPIError(BackendError):
    """The dashboard answered with an error (``status``), or could not be reached (0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LogFileMissing(RayAPIError):
    """The node has no such log file (yet)."""


def _import_aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError as exc:  # the extra is not installed
        raise BackendError("the Ray backend needs aiohttp: pip install 'nemorun-tui[ray]'") from exc
    return aiohttp


class JobsClient:
    """One dashboard. Sessions are per event loop (an aiohttp session is bound to its loop)."""

    def __init__(self, address: str, *, timeout: float = 30.0) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout
        #: Requests made, by "METHOD path-kind" (the bench and tests read it).
        self.calls: dict[str, int] = {}
        self._session: LoopLocal[aiohttp.ClientSession] = LoopLocal(self._new_session)

    def _new_session(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        _import_aiohttp()  # a clear error when the extra is missing
        import aiohttp

        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        )

    def _count(self, kind: str) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1

    async def _request(
        self,
        method: str,
        path: str,
        kind: str,
        *,
        json_body: Any = None,
        data: Any = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, bytes]:
        aiohttp = _import_aiohttp()
        self._count(kind)
        session = self._session.get()
        try:
            async with asyncio.timeout(self.timeout):
                async with session.request(
                    method, self.address + path, json=json_body, data=data, params=params
                ) as resp:
                    body = await resp.read()
                    if resp.status not in ok:
                        raise RayAPIError(resp.status, _error_text(resp.status, body))
                    return resp.status, body
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RayAPIError(0, f"Ray dashboard {self.address} unreachable: {exc}") from exc

    async def _json(self, method: str, path: str, kind: str, **kw: Any) -> Any:
        _, body = await self._request(method, path, kind, **kw)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise RayAPIError(200, f"{path}: not JSON: {body[:200]!r}") from exc

    # ------------------------------------------------------------------ jobs
    async def version(self) -> dict[str, Any]:
        data = await self._json("GET", "/api/version", "version")
        return data if isinstance(data, dict) else {}

    async def submit(self, body: dict[str, Any]) -> str:
        data = await self._json("POST", "/api/jobs/", "submit", json_body=body)
        return str(data.get("submission_id") or body["submission_id"])

    async def get(self, submission_id: str) -> dict[str, Any] | None:
        """One job's info, None if the cluster does not know it."""
        try:
            data = await self._json("GET", f"/api/jobs/{_q(submission_id)}", "get")
        except RayAPIError as exc:
            if exc.status == 404:
                return None
            raise
        return data if isinstance(data, dict) else None

    async def list(self) -> list[dict[str, Any]]:
        """Every job the cluster knows, in one call."""
        data = await self._json("GET", "/api/jobs/", "list")
        return [d for d in data if isinstance(d, dict)] if isinstance(data, list) else []

    async def stop(self, submission_id: str) -> bool:
        """True if a stop was sent, False if the job had already ended."""
        data = await self._json("POST", f"/api/jobs/{_q(submission_id)}/stop", "stop")
        return bool(data.get("stopped")) if isinstance(data, dict) else False

    # ------------------------------------------------------------------ packages
    async def package_exists(self, name: str) -> bool:
        status, _ = await self._request(
            "GET", f"/api/packages/gcs/{_q(name)}", "package_get", ok=(200, 404)
        )
        return status == 200

    async def upload_package(self, name: str, path: Path) -> None:
        await self._request(
            "PUT", f"/api/packages/gcs/{_q(name)}", "package_put", data=path.read_bytes()
        )

    # ------------------------------------------------------------------ logs
    async def read_log_file(self, node_id: str, filename: str) -> bytes:
        """The whole file from the node's Ray log dir (raw bytes)."""
        try:
            _, body = await self._request(
                "GET",
                "/api/v0/logs/file",
                "log_file",
                params={"node_id": node_id, "filename": filename, "lines": "-1"},
            )
        except RayAPIError as exc:
            if "is not found" in str(exc):
                raise LogFileMissing(exc.status, str(exc)) from None
            raise
        return body

    async def stream_log_file(
        self, node_id: str, filename: str, interval: float
    ) -> AsyncGenerator[bytes, None]:
        """The file from its start, then what is appended, until the server or caller stops."""
        aiohttp = _import_aiohttp()
        self._count("log_stream")
        session = self._session.get()
        params = {
            "node_id": node_id,
            "filename": filename,
            "lines": "-1",
            "interval": str(interval),
        }
        try:
            async with session.get(self.address + "/api/v0/logs/stream", params=params) as resp:
                if resp.status != 200:
                    body = await resp.read()
                    text = _error_text(resp.status, body)
                    if "is not found" in text:
                        raise LogFileMissing(resp.status, text)
                    raise RayAPIError(resp.status, text)
                async for chunk in resp.content.iter_any():
                    if chunk:
                        yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise RayAPIError(0, f"log stream from {self.address} dropped: {exc}") from exc

    async def close(self) -> None:
        session = self._session.clear()
        if session is not None and not session.closed:
            # One made in another (closed) loop has nothing left to release.
            with contextlib.suppress(RuntimeError):
                await session.close()


def _q(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _error_text(status: int, body: bytes) -> str:
    """The server's own words, last line first (Ray answers errors with a traceback)."""
    text = body.decode(errors="replace").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != "."]
    detail = lines[-1] if lines else ""
    return f"Ray dashboard answered {status}: {detail[:500]}" if detail else f"HTTP {status}"
