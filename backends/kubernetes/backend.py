"""The Kubernetes backend: submit Jobs, report them from the namespace's watch, tail pods.

* **Submit** creates (Secret,) (headless Service,) Job. The Job's name is derived from the run
  tag, so a retried submit meets ``409 AlreadyExists`` and returns the Job it made before.
* **Hold and dependencies**: Kubernetes has neither, so a held or dependent Job is created
  ``suspend: true``; :meth:`release` and the dependency gate (run on every Job change the
  watch sees) un-suspend it once its dependencies succeeded, or mark it cancelled (an
  annotation, the Job stays suspended and never runs) when one failed.
* **Poll** answers from :class:`~backends.kubernetes.watch.NamespaceCache`: no API request
  per refresh, however many jobs are tracked.
* **Cancel** annotates the Job (so other watchers see why) and deletes it with background
  propagation (the garbage collector removes its pods), plus its Service and Secret.
* **Logs** read the pod of a rank from byte 0 and skip what was already delivered, so a
  stream dropped mid-way resumes with neither repeats nor gaps.

Every client call is blocking and runs in a worker thread; the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from backends.kubernetes import manifest, names, status
from backends.kubernetes.client import (
    ApiUnavailable,
    Conflict,
    KubeApi,
    NotFound,
)
from backends.kubernetes.watch import NamespaceCache
from core.engine.executors import ExecutorProfile
from core.engine.executors_kubernetes import KubernetesExecutor
from core.engine.protocol import BackendError, DryRun, Handle, JobSpec, LogStream
from core.engine.states import JobState, StatusReport

#: How long the first refresh waits for the namespace's initial list.
SYNC_TIMEOUT = 10.0
#: Longest wait between two log reconnects while a pod has not started or a stream dropped.
LOG_RETRY = 1.0


class KubernetesBackend:
    """One (context, namespace): one API client, one watch cache, one rate limiter."""

    name: ClassVar[str] = "kubernetes"
    profile_class: ClassVar[type[ExecutorProfile]] = KubernetesExecutor
    #: ``retries`` is the Job's ``backoffLimit``: Kubernetes re-runs failed pods itself (they
    #: show as restarts), so the engine never re-submits a Job on top (core.engine.retries).
    retries_natively: ClassVar[bool] = True

    def __init__(self, executor: KubernetesExecutor) -> None:
        self.executor = executor
        self.api = KubeApi(executor)
        self.kind = executor.kind
        self.cache = NamespaceCache(self.api, executor.namespace, executor.kind)
        self.cache.on_job_change = self._gate_after
        self._final: dict[Handle, StatusReport] = {}
        #: Jobs this process deleted by cancel: name -> (report at cancel).
        self._cancelled: dict[str, StatusReport] = {}
        self.sync_timeout = SYNC_TIMEOUT
        self._closed = False

    @classmethod
    def from_profile(cls, profile: ExecutorProfile) -> KubernetesBackend:
        if not isinstance(profile, KubernetesExecutor):
            raise BackendError(f"not a Kubernetes profile: {type(profile).__name__}")
        return cls(profile)

    # ------------------------------------------------------------------ helpers
    @property
    def namespace(self) -> str:
        return self.executor.namespace

    def _handle(self, name: str) -> Handle:
        return Handle(self.name, self.executor.target(), name)

    def _executor_of(self, job: JobSpec) -> KubernetesExecutor:
        ex = job.executor
        if not isinstance(ex, KubernetesExecutor):
            raise BackendError(f"not a Kubernetes profile: {type(ex).__name__}")
        if ex.target() != self.executor.target():
            raise BackendError(f"profile target {ex.target()} is not {self.executor.target()}")
        for dep in job.dependencies:
            if dep.backend != self.name or dep.target != self.executor.target():
                raise BackendError(
                    f"a Kubernetes job can only depend on jobs in {self.executor.target()}, "
                    f"not {dep}"
                )
        return ex

    def _job(self, op: str, *args: Any, **kw: Any) -> Any:
        """create/get/patch/delete of this backend's kind (a Job, or a Kubeflow PyTorchJob)."""
        if self.kind == "Job":
            method = {
                "create": "create_namespaced_job",
                "get": "read_namespaced_job",
                "patch": "patch_namespaced_job",
                "delete": "delete_namespaced_job",
            }[op]
            if op == "create":
                return self.api.json(op, "batch", method, self.namespace, *args, **kw)
            return self.api.json(op, "batch", method, args[0], self.namespace, *args[1:], **kw)
        method = f"{'get' if op == 'get' else op}_namespaced_custom_object"
        return self.api.json(
            op,
            "custom",
            method,
            manifest.KUBEFLOW_GROUP,
            manifest.KUBEFLOW_VERSION,
            self.namespace,
            manifest.KUBEFLOW_PLURAL,
            *args,
            **kw,
        )

    def _unsuspend(self) -> dict[str, Any]:
        if self.kind == "Job":
            return {"spec": {"suspend": False}}
        return {"spec": {"runPolicy": {"suspend": False}}}

    async def _synced(self) -> None:
        if self._closed:
            raise BackendError("the Kubernetes backend was closed")
        await asyncio.to_thread(self.cache.wait_synced, self.sync_timeout)

    # ------------------------------------------------------------------ dry run
    async def dryrun(self, job: JobSpec) -> DryRun:
        """The exact objects submit would send, as YAML (secret values never shown)."""
        ex = self._executor_of(job)
        built = manifest.build(job, ex)
        ctx = ex.context or "the current context"
        summary = (
            f"kubernetes Job {built.name} in namespace {ex.namespace} ({ctx}); image {ex.image}"
            + (f"; Indexed, {ex.nodes} pods, headless Service {built.name}" if ex.nodes > 1 else "")
            + (
                "; after " + ", ".join(h.job_id for h in job.dependencies)
                if job.dependencies
                else ""
            )
            + (
                f"; secrets in Secret {built.name}-env: {', '.join(sorted(job.secret_env))}"
                if job.secret_env
                else ""
            )
        )
        command = shlex.join(built.command)
        if ex.launcher is not None:  # the exact launch line every pod runs
            summary += f"\n  launcher {ex.launcher.kind} in every pod: {command}"
        return DryRun(
            backend=self.name,
            summary=summary,
            artifacts={"manifest.yaml": manifest.to_yaml(built.shown()), "command": command},
        )

    # ------------------------------------------------------------------ submit
    async def submit(self, job: JobSpec) -> Handle:
        built = manifest.build(job, self._executor_of(job))
        await asyncio.to_thread(self._submit_sync, built, job.run_tag)
        if job.dependencies and not job.held:
            await asyncio.to_thread(self._gate_all)
        return self._handle(built.name)

    def _create(self, kind: str, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create one object; None when it already exists (a retried submit)."""
        try:
            created: dict[str, Any] = self.api.json("create", kind, method, self.namespace, body)
            return created
        except Conflict:
            return None

    def _submit_sync(self, built: manifest.Manifests, run_tag: str) -> None:
        secret = built.secret_with_values()
        if secret is not None:
            self._create("core", "create_namespaced_secret", secret)
        if built.service is not None:
            self._create("core", "create_namespaced_service", built.service)
        try:
            created: dict[str, Any] | None = self._job("create", built.job)
        except Conflict:
            created = None
        if created is None:
            existing = self._job("get", built.name)
            ann = (existing.get("metadata") or {}).get("annotations") or {}
            if ann.get(names.ANN_RUN_TAG) != run_tag:
                raise BackendError(
                    f"a Job named {built.name} exists in {self.namespace} for another run "
                    f"({ann.get(names.ANN_RUN_TAG)!r})"
                )
            created = existing
        self.cache.put_job(created)
        uid = (created.get("metadata") or {}).get("uid")
        if uid:  # the Secret and Service go when the Job goes (garbage collector)
            owner = {
                "metadata": {
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": built.name,
                            "uid": uid,
                            "blockOwnerDeletion": False,
                        }
                    ]
                }
            }
            if secret is not None:
                with contextlib.suppress(BackendError):
                    self.api.json(
                        "patch",
                        "core",
                        "patch_namespaced_secret",
                        f"{built.name}-env",
                        self.namespace,
                        owner,
                    )
            if built.service is not None:
                with contextlib.suppress(BackendError):
                    self.api.json(
                        "patch",
                        "core",
                        "patch_namespaced_service",
                        built.name,
                        self.namespace,
                        owner,
                    )

    async def release(self, handle: Handle) -> None:
        """Start a Job submitted held (suspended), unless its dependencies still gate it."""
        await asyncio.to_thread(self._release_sync, handle.job_id)

    def _known_job(self, name: str) -> Any:
        """The Job from the watch cache, else from the server; "not there" is an error."""
        job = self.cache.job(name)
        if job is None:
            try:
                job = self._job("get", name)
            except NotFound:
                raise BackendError(f"no Kubernetes Job {name} in {self.namespace}") from None
        return job

    def _release_sync(self, name: str) -> None:
        job = self._known_job(name)
        ann = (job.get("metadata") or {}).get("annotations") or {}
        patch: dict[str, Any] = {"metadata": {"annotations": {names.ANN_HELD: "false"}}}
        if not ann.get(names.ANN_DEPENDS) and names.ANN_CANCELLED not in ann:
            patch.update(self._unsuspend())
        patched = self._job("patch", name, patch)
        self.cache.put_job(patched)
        self._gate_all()

    # ------------------------------------------------------------------ dependencies
    def _gate_after(self, changed: str) -> None:
        """Watch thread: a Job changed; jobs that wait on it may start (or never will)."""
        with self.cache.lock:
            waiting = [
                j
                for j in self.cache.jobs.store.values()
                if changed in _depends(j) or j["metadata"]["name"] == changed
            ]
        for job in waiting:
            self._gate(job)

    def _gate_all(self) -> None:
        with self.cache.lock:
            jobs = list(self.cache.jobs.store.values())
        for job in jobs:
            self._gate(job)

    def _gate(self, job: dict[str, Any]) -> None:
        meta = job.get("metadata") or {}
        ann = meta.get("annotations") or {}
        deps = _depends(job)
        if not deps or not status.suspended(job):
            return
        if ann.get(names.ANN_HELD) == "true" or names.ANN_CANCELLED in ann:
            return
        states: dict[str, JobState] = {}
        for dep in deps:
            states[dep] = self._state_of(dep)
        bad = [d for d, s in states.items() if s in (JobState.FAILED, JobState.CANCELLED)]
        patch: dict[str, Any]
        if bad:
            reason = "dependency " + ", ".join(f"{d} ended {states[d].value}" for d in bad)
            patch = {"metadata": {"annotations": {names.ANN_CANCELLED: reason}}}
        elif all(s is JobState.SUCCEEDED for s in states.values()):
            patch = self._unsuspend()
        else:
            return
        patched = self._job("patch", meta["name"], patch)
        self.cache.put_job(patched)

    def _state_of(self, name: str) -> JobState:
        final = self._final.get(self._handle(name))
        if final is not None:
            return final.state
        if name in self._cancelled:
            return JobState.CANCELLED
        job = self.cache.job(name)
        if job is None:
            return JobState.UNKNOWN
        return status.report(job, self.cache.pods_of(name), time.time(), self.kind).state

    # ------------------------------------------------------------------ poll
    def _report(self, handle: Handle) -> StatusReport:
        if handle in self._final:
            return self._final[handle]
        name = handle.job_id
        job = self.cache.job(name)
        if job is None:
            if name in self._cancelled:
                report = self._cancelled[name]
            else:
                return StatusReport(
                    JobState.UNKNOWN,
                    status.SOURCE,
                    self.cache.observed_at(),
                    reason=f"no Kubernetes Job {name} in namespace {self.namespace}",
                )
        else:
            report = status.report(
                job, self.cache.pods_of(name), self.cache.observed_at(), self.kind
            )
        if report.state.is_terminal:
            self._final[handle] = report
        return report

    async def poll(self, handles: Sequence[Handle]) -> dict[Handle, StatusReport]:
        """Every handle from the watch cache: no API request once the namespace is synced."""
        if any(h not in self._final for h in handles):
            await self._synced()
        return {h: self._report(h) for h in handles}

    async def wait_changed(self, handles: Sequence[Handle], timeout: float) -> None:
        """Return when the watch saw any change (or after ``timeout``)."""
        await self._synced()
        seen = self.cache.version
        if any(self._report(h).state.is_terminal for h in handles):
            return
        await asyncio.to_thread(self.cache.wait_version, seen, timeout)

    async def find(self, run_tag: str, job_dir: str) -> Handle | None:
        """The Job submitted under ``run_tag`` (a launcher that died before recording it)."""
        await self._synced()
        with self.cache.lock:
            for job in self.cache.jobs.store.values():
                ann = (job.get("metadata") or {}).get("annotations") or {}
                if ann.get(names.ANN_RUN_TAG) == run_tag:
                    return self._handle(str(job["metadata"]["name"]))
        return None

    # ------------------------------------------------------------------ cancel
    async def cancel(self, handle: Handle) -> None:
        """Delete the Job (background propagation); a finished Job is left as it ended."""
        await self._synced()
        await asyncio.to_thread(self._cancel_sync, handle)

    def _cancel_sync(self, handle: Handle) -> None:
        name = handle.job_id
        if name in self._cancelled:
            return
        job = self._known_job(name)
        current = status.report(job, self.cache.pods_of(name), time.time(), self.kind)
        if current.state.is_terminal:
            self._final.setdefault(handle, current)
            return
        reason = "cancelled by the user"
        with contextlib.suppress(NotFound):
            patched = self._job(
                "patch", name, {"metadata": {"annotations": {names.ANN_CANCELLED: reason}}}
            )
            self.cache.put_job(patched)
        now = time.time()
        self._cancelled[name] = StatusReport(
            JobState.CANCELLED,
            status.SOURCE,
            now,
            reason=reason,
            started_at=current.started_at,
            ended_at=now,
        )
        with contextlib.suppress(NotFound):
            self._job("delete", name, propagation_policy="Background")
        for method, obj in (
            ("delete_namespaced_service", name),
            ("delete_namespaced_secret", f"{name}-env"),
        ):
            if method == "delete_namespaced_service" and (
                self.executor.nodes <= 1 or self.kind != "Job"
            ):
                continue
            with contextlib.suppress(NotFound):
                self.api.json("delete", "core", method, obj, self.namespace)
        self._gate_after(name)

    async def cancel_experiment(self, experiment_id: str) -> int:
        """Cancel every live Job of one experiment (test teardown, ``cancel --all``)."""
        await self._synced()
        value = names.label_value(experiment_id)
        with self.cache.lock:
            jobs = [
                str(j["metadata"]["name"])
                for j in self.cache.jobs.store.values()
                if ((j.get("metadata") or {}).get("labels") or {}).get(names.EXPERIMENT) == value
            ]
        for name in jobs:
            await asyncio.to_thread(self._cancel_sync, self._handle(name))
        return len(jobs)

    # ------------------------------------------------------------------ logs
    def node_of_rank(self, handle: Handle, rank: int) -> int | None:
        """The pod index that runs a launcher's global ``rank`` (optional capability): ranks
        are numbered pod by pod, ``NPROC_PER_NODE`` each (the env every pod of a multi-pod
        job carries). None when the job's pods are not known (yet)."""
        pods = self.cache.pods_of(handle.job_id)
        for pod in pods:
            containers = (pod.get("spec") or {}).get("containers") or []
            for item in (containers[0].get("env") or []) if containers else []:
                value = str(item.get("value") or "")
                named = item.get("name") in ("NPROC_PER_NODE", "PET_NPROC_PER_NODE")
                if named and value.isdigit() and int(value) > 0:
                    return rank // int(value)
        return 0 if pods else None

    def _pod_for(self, name: str, rank: int) -> dict[str, Any] | None:
        """The pod of ``rank`` (its latest attempt)."""
        pods = [p for p in self.cache.pods_of(name) if status.pod_index(p) == rank]
        if not pods:
            return None
        pods.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        return pods[-1]

    async def logs(
        self,
        handle: Handle,
        *,
        offset: int = 0,
        follow: bool = False,
        stream: LogStream = "stdout",
        rank: int = 0,
    ) -> AsyncIterator[bytes]:
        """The main container's ``stream`` of the pod of ``rank``, from byte ``offset``.

        Each (re)connection reads from byte 0 and skips what this call already consumed, so
        a dropped follow stream resumes exactly (no line twice, none lost).
        """
        await self._synced()
        name = handle.job_id
        if self.cache.job(name) is None and name not in self._cancelled:
            raise BackendError(f"no Kubernetes Job {name} in namespace {self.namespace}")
        which = "Stderr" if stream == "stderr" else "Stdout"
        # Positions are in the rank's whole log: its attempts (pods of retries) one after
        # the other. ``base`` is where the current pod's log starts in it.
        delivered = 0  # bytes before this position were yielded (or skipped by ``offset``)
        base = 0
        current: str | None = None
        length = 0  # bytes of the current pod's log read in full at least once
        complete: str | None = None  # the finished pod whose log was read to its end
        while True:
            pod = self._pod_for(name, rank)
            ended = self._report(handle).state.is_terminal
            if pod is None or not _started(pod):
                if not follow or ended or self._closed:
                    return
                await asyncio.to_thread(self.cache.wait_version, self.cache.version, LOG_RETRY)
                continue
            pod_name = str(pod["metadata"]["name"])
            if current is not None and pod_name != current:
                base += length  # a retry: its log follows the previous attempt's
                length = 0
            current = pod_name
            finished = status.pod_finished(pod)
            if finished and complete == pod_name:
                # Read to its end already: wait for the Job to end (or a retry to start).
                if not follow or ended or self._closed:
                    return
                await asyncio.to_thread(self.cache.wait_version, self.cache.version, LOG_RETRY)
                continue
            dropped = False
            pos = 0  # each connection reads this pod's log from byte 0
            try:
                reading = self._read(
                    pod_name, status.container_name(pod), which, follow and not finished
                )
                async for chunk in reading:
                    end = pos + len(chunk)
                    start = max(offset, delivered) - base
                    if end > start:
                        yield chunk[max(0, start - pos) :]
                        delivered = base + end
                    pos = end
                    length = max(length, pos)
            except _Dropped:
                dropped = True
            if dropped:
                if not follow:
                    return
                await asyncio.sleep(0.05)
                continue
            if finished:
                complete = pod_name
                continue
            if not follow:
                return
            # The stream ended cleanly: the container exited, or the server closed it. Read
            # once more after the pod is seen finished, so nothing written last is lost.
            await asyncio.to_thread(self._wait_pod_finished, name, rank, 3.0)

    def _wait_pod_finished(self, name: str, rank: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pod = self._pod_for(name, rank)
            if pod is None or status.pod_finished(pod):
                return
            self.cache.wait_version(self.cache.version, 0.2)

    async def _read(
        self, pod: str, container: str, which: str, follow: bool
    ) -> AsyncIterator[bytes]:
        """Chunks of one log request (read in a worker thread); _Dropped if cut short."""
        try:
            response = await asyncio.to_thread(
                self.api.call,
                "log",
                "core",
                "read_namespaced_pod_log",
                pod,
                self.namespace,
                container=container,
                follow=follow,
                stream=which,
                _request_timeout=(5, 300) if follow else (5, 60),
            )
        except NotFound:
            return
        except BackendError as exc:
            if "waiting to start" in str(exc) or "ContainerCreating" in str(exc):
                raise _Dropped from None
            raise
        chunks = response.stream(65536, decode_content=False)
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(next, chunks, None)
                except Exception as exc:  # urllib3 ProtocolError/IncompleteRead: cut short
                    if isinstance(exc, ApiUnavailable):
                        raise
                    raise _Dropped from None
                if chunk is None:
                    return
                if chunk:
                    yield chunk
        finally:
            response.release_conn()

    # ------------------------------------------------------------------ close
    async def close(self) -> None:
        """Stop the watch threads and the client's connection pool; safe twice."""
        if self._closed:
            return
        self._closed = True
        self.cache.stop()
        await asyncio.to_thread(self.api.close)


class _Dropped(Exception):
    """A log stream ended before the container did (the connection broke): read again."""


def _started(pod: dict[str, Any]) -> bool:
    """Whether the main container has run (its log exists)."""
    st = pod.get("status") or {}
    if st.get("phase") in ("Running", "Succeeded", "Failed"):
        return True
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "running" in state or "terminated" in state:
            return True
    return False


def _depends(job: dict[str, Any]) -> list[str]:
    raw = ((job.get("metadata") or {}).get("annotations") or {}).get(names.ANN_DEPENDS)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []
