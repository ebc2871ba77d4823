"""One cache per namespace, kept current by list-then-watch (the informer pattern).

Two daemon threads per namespace (one for Jobs, one for Pods, the two kinds a report needs),
each: list our objects (label ``nemorun.dev/managed=true``) → remember the list's
``resourceVersion`` → watch from it; on ``410 Gone`` (the version was compacted away) list
again; when the server ends the watch, watch again from the last version seen. So a refresh
of any number of tracked jobs costs no API request at all: it reads this cache.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from backends.kubernetes import names
from backends.kubernetes.client import ApiUnavailable, Gone, KubeApi
from core.engine.protocol import BackendError

log = logging.getLogger(__name__)

SELECTOR = f"{names.MANAGED}=true"
#: Server-side end of one watch request (the server closes it; we watch again).
WATCH_SECONDS = 240
#: Client-side read timeout: longer than the server's, so a silent dead peer is noticed.
READ_TIMEOUT = WATCH_SECONDS + 30
RETRY_MAX = 10.0


def _managed(obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(names.MANAGED) == "true"


def job_of_pod(pod: dict[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    value = (
        labels.get("batch.kubernetes.io/job-name")
        or labels.get("job-name")
        or labels.get("training.kubeflow.org/job-name")
    )
    if value:
        return str(value)
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return str(ref.get("name"))
    return None


class _Informer:
    """List-then-watch one resource kind in one namespace, into ``store``."""

    def __init__(
        self, owner: NamespaceCache, kind: str, group: str, method: str, args: tuple[str, ...]
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.group = group
        self.method = method
        self.args = args  # positional arguments of the list call (the namespace, ...)
        self.store: dict[str, dict[str, Any]] = {}
        self.synced = threading.Event()
        self.lists = 0
        self.relists_after_gone = 0
        self.watches = 0
        self.error: str | None = None
        self.resource_version = ""
        #: When the cache stopped being current (a broken watch), None while it is.
        self.stale_since: float | None = time.time()
        self._response: Any = None
        self.thread = threading.Thread(
            target=self._run, name=f"kube-{kind}-{owner.namespace}", daemon=True
        )

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        delay = 0.2
        need_list = True
        while not self.owner.stopped:
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch()
                delay = 0.2
            except Gone:
                self.relists_after_gone += 1
                need_list = True
            except BackendError as exc:
                self.stale_since = self.stale_since or time.time()
                self.error = str(exc)
                if not self.synced.is_set():
                    self.owner.changed()  # wake waiters: they report the error
                if self.owner.stopped:
                    return
                log.debug("kube %s watch in %s: %s", self.kind, self.owner.namespace, exc)
                time.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)
                need_list = True
            except Exception as exc:  # a broken stream (urllib3/http errors): watch again
                self.stale_since = self.stale_since or time.time()
                if self.owner.stopped:
                    return
                log.debug("kube %s watch stream broke: %r", self.kind, exc)
                time.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

    def _list(self) -> None:
        api = self.owner.api
        data = api.json("list", self.group, self.method, *self.args, label_selector=SELECTOR)
        self.lists += 1
        items = {
            str(o["metadata"]["name"]): o
            for o in data.get("items") or []
            if isinstance(o, dict) and _managed(o)
        }
        with self.owner.lock:
            gone = set(self.store) - set(items)
            self.store = items
            for name in gone:
                self.owner.forget(self.kind, name)
        self.resource_version = str((data.get("metadata") or {}).get("resourceVersion") or "")
        self.error = None
        self.stale_since = None
        self.synced.set()
        self.owner.changed()

    def _watch(self) -> None:
        api = self.owner.api
        kw: dict[str, Any] = {
            "watch": True,
            "label_selector": SELECTOR,
            "allow_watch_bookmarks": True,
            "timeout_seconds": WATCH_SECONDS,
            "_request_timeout": (5, READ_TIMEOUT),
        }
        if self.resource_version:
            kw["resource_version"] = self.resource_version
        response = api.call("watch", self.group, self.method, *self.args, **kw)
        self.watches += 1
        self.stale_since = None  # watching from the last version seen: current again
        self._response = response
        try:
            for line in api.lines(response):
                if self.owner.stopped:
                    return
                self._event(line)
        finally:
            self._response = None

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(str(obj.get("message") or "resource version too old"))
            raise BackendError(f"watch error {code}: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if kind == "BOOKMARK" or not _managed(obj):
            return
        name = str((obj.get("metadata") or {}).get("name"))
        with self.owner.lock:
            if kind == "DELETED":
                self.store.pop(name, None)
                self.owner.forget(self.kind, name)
            else:
                self.store[name] = obj
        self.owner.changed(self.kind, name)

    def stop(self) -> None:
        response = self._response
        if response is not None:
            shutdown = getattr(response, "shutdown", None)
            try:
                if callable(shutdown):
                    shutdown()
                else:
                    response.close()
            except Exception:  # closing a socket another thread reads: best effort
                pass


class NamespaceCache:
    """Jobs and pods of one namespace as last seen by the watch, plus change signalling."""

    def __init__(self, api: KubeApi, namespace: str, kind: str = "Job") -> None:
        self.api = api
        self.namespace = namespace
        self.lock = threading.RLock()
        self.stopped = False
        self.version = 0
        self._cond = threading.Condition(self.lock)
        #: Called (from a watch thread) after a Job changed: dependency gating.
        self.on_job_change: Callable[[str], None] | None = None
        self.on_forget: Callable[[str, str], None] | None = None
        if kind == "Job":
            self.jobs = _Informer(self, "job", "batch", "list_namespaced_job", (namespace,))
        else:  # a Kubeflow PyTorchJob: a custom object
            self.jobs = _Informer(
                self,
                "job",
                "custom",
                "list_namespaced_custom_object",
                ("kubeflow.org", "v1", namespace, "pytorchjobs"),
            )
        self.pods = _Informer(self, "pod", "core", "list_namespaced_pod", (namespace,))
        self._started = False
        self.started_at = 0.0

    def start(self) -> None:
        with self.lock:
            if self._started:
                return
            self._started = True
            self.started_at = time.monotonic()
        self.jobs.thread.start()
        self.pods.thread.start()

    def stop(self) -> None:
        self.stopped = True
        self.jobs.stop()
        self.pods.stop()
        self.changed()

    # ------------------------------------------------------------------ state
    def changed(self, kind: str | None = None, name: str | None = None) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()
        if kind == "job" and name and self.on_job_change is not None:
            try:
                self.on_job_change(name)
            except Exception as exc:  # gating must never kill the watch
                log.warning("kube dependency gate for %s: %s", name, exc)

    def forget(self, kind: str, name: str) -> None:
        if self.on_forget is not None:
            self.on_forget(kind, name)

    def wait_version(self, seen: int, timeout: float) -> int:
        """Block until the cache changed after ``seen`` (or ``timeout``); the new version."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.version == seen and not self.stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self.version

    def wait_synced(self, timeout: float) -> None:
        """Block until both kinds were listed once; raise the connection error otherwise."""
        self.start()
        start = time.monotonic()
        for informer in (self.jobs, self.pods):
            while not informer.synced.wait(0.05):
                elapsed = time.monotonic() - start
                # A server that failed for a second already fails fast (its retries go on).
                if informer.error and time.monotonic() - self.started_at > 1.0:
                    raise ApiUnavailable(informer.error)
                if elapsed > timeout:
                    raise ApiUnavailable(
                        informer.error or f"no answer from the Kubernetes API in {timeout:.0f} s"
                    )

    def observed_at(self) -> float:
        """When the cache was last known current: now, or when its watch broke."""
        stale = [t for t in (self.jobs.stale_since, self.pods.stale_since) if t is not None]
        return min(stale) if stale else time.time()

    def job(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.jobs.store.get(name)

    def put_job(self, obj: dict[str, Any]) -> None:
        """A Job we just created or patched (before the watch shows it)."""
        name = str(obj["metadata"]["name"])
        with self.lock:
            current = self.jobs.store.get(name)
            if current is None or _newer(obj, current):
                self.jobs.store[name] = obj
        self.changed()

    def pods_of(self, job_name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.pods.store.values() if job_of_pod(p) == job_name]

    def stats(self) -> dict[str, int]:
        return {
            "lists": self.jobs.lists + self.pods.lists,
            "watches": self.jobs.watches + self.pods.watches,
            "relists_after_gone": self.jobs.relists_after_gone + self.pods.relists_after_gone,
        }


def _newer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether ``a`` is a later version than ``b`` (numeric resourceVersions; else yes)."""
    ra = str((a.get("metadata") or {}).get("resourceVersion") or "")
    rb = str((b.get("metadata") or {}).get("resourceVersion") or "")
    if ra.isdigit() and rb.isdigit():
        return int(ra) >= int(rb)
    return True
