"""An emulated Kubernetes API server with a tiny control plane, for the Kubernetes backend's tests.

No real API server installs on this machine kind, so the backend is tested against **kmock**
(an HTTP emulator of the Kubernetes REST API that the official client talks to) plus what
kmock lacks, written here and kept small:

* :class:`KubeEmulator` (a ``kmock.KubernetesEmulator``): numeric ``resourceVersion``\\ s,
  uids and creation times; equality label selectors; watches that start *from* a
  resourceVersion (replaying the recorded history) and answer ``410 Gone`` once that
  version was compacted (:meth:`KubeEmulator.compact` also ends the open watches that way,
  as an API server does); bearer-token checks (401); a request counter; and a schema check
  of every object created (the client's OpenAPI models, unknown fields included).
* :class:`Controller`: the Job controller and a kubelet. It creates one pod per Job (one per
  index of an Indexed Job), "pulls" images from a fixed set (others: ErrImagePull, then
  ImagePullBackOff), schedules against one node's GPUs (else Unschedulable), runs the
  container's command **as a process on this machine** (the image is not used; PATH comes
  from this machine), enforces the memory limit by polling the process's RSS (OOMKilled,
  exit 137), records exit codes, retries up to ``backoffLimit``, sets Job conditions, and
  garbage-collects the pods (killing their process group) of a deleted Job.
* Like a kubelet, it expands ``$(VAR)`` in the container's ``command``/``args`` from the
  container's env (:func:`expand`: ``$$`` is a literal ``$``, an unknown ``$(VAR)`` stays as
  written), and with ``terminationMessagePolicy: FallbackToLogsOnError`` a failed
  container's ``terminated.message`` is the end of its log (80 lines, 2048 bytes at most;
  here stdout's end then stderr's, not interleaved by time as a real kubelet's log is).
* **Cluster DNS is a stand-in, not an emulation of it.** Every pod is a process on this
  machine, so no pod has its own address. When an env value of a container is the in-cluster
  host name of a Service that exists (``[<host>.]<service>.<namespace>.svc`` or that plus
  ``.cluster.local``, e.g. an Indexed Job's ``MASTER_ADDR``), the process gets ``127.0.0.1``
  instead: every "pod" listens there. Names in command lines or files are not resolved.
* Pod logs: served as ``text/plain`` per stream (``stream=Stdout|Stderr``), followed while
  the process runs; :meth:`Controller.drop_log_after` cuts one log connection mid-way (the
  TCP connection is closed), to test resuming.

Everything runs on a private event loop in a daemon thread (:class:`EmulatedCluster`), so
the blocking client in the backend's worker threads and the tests' own loops are independent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock

JOBS = kmock.resource("batch", "v1", "jobs")
PODS = kmock.resource("", "v1", "pods")
SERVICES = kmock.resource("", "v1", "services")
SECRETS = kmock.resource("", "v1", "secrets")
PYTORCHJOBS = kmock.resource("kubeflow.org", "v1", "pytorchjobs")
_KF = "training.kubeflow.org"

#: Images the emulated node can "pull"; anything else fails like a missing image.
DEFAULT_IMAGES = frozenset({"ci/local:latest"})
_MODELS = {"Job": "V1Job", "Pod": "V1Pod", "Service": "V1Service", "Secret": "V1Secret"}


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of a command/args item (the kubelet's rules):
    ``$(NAME)`` becomes the variable's value when it is defined, else stays as written;
    ``$$`` is one literal ``$``; any other ``$`` (and an unclosed ``$(``) is kept."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        after = text[i + 1]
        if after == "$":
            out.append("$")
            i += 2
        elif after == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env.get(name, f"$({name})"))
                i = close + 1
        else:
            out.append("$" + after)
            i += 2
    return "".join(out)


#: A host name in the cluster's domain: ``[<host>.]<service>.<namespace>.svc[.cluster.local]``.
_SVC_HOST = re.compile(
    r"^(?:[a-z0-9-]+\.)?(?P<svc>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc(?:\.cluster\.local)?$"
)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _matches(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _pytorchjob_problems(obj: dict[str, Any]) -> list[str]:
    """The PyTorchJob CRD's shape (kubeflow.org/v1), its pod templates by the client's model."""
    from kubernetes import client

    problems = [
        f"PyTorchJob.{k}: unknown field"
        for k in obj
        if k not in ("apiVersion", "kind", "metadata", "spec")
    ]
    spec = obj.get("spec") or {}
    problems += [
        f"PyTorchJob.spec.{k}: unknown field"
        for k in spec
        if k not in ("runPolicy", "nprocPerNode", "pytorchReplicaSpecs", "elasticPolicy")
    ]
    run_policy = spec.get("runPolicy") or {}
    problems += [
        f"PyTorchJob.spec.runPolicy.{k}: unknown field"
        for k in run_policy
        if k
        not in (
            "cleanPodPolicy",
            "ttlSecondsAfterFinished",
            "activeDeadlineSeconds",
            "backoffLimit",
            "suspend",
            "schedulingPolicy",
            "managedBy",
        )
    ]
    replicas = spec.get("pytorchReplicaSpecs") or {}
    if "Master" not in replicas:
        problems.append("PyTorchJob.spec.pytorchReplicaSpecs: no Master")
    for kind, replica in replicas.items():
        if kind not in ("Master", "Worker"):
            problems.append(f"PyTorchJob replica type {kind!r} is unknown")
        where = f"PyTorchJob.spec.pytorchReplicaSpecs.{kind}"
        problems += [
            f"{where}.{k}: unknown field"
            for k in replica
            if k not in ("replicas", "restartPolicy", "template")
        ]
        template = replica.get("template") or {}
        try:
            parsed = client.V1PodTemplateSpec.from_dict(template)
        except Exception as exc:
            problems.append(f"{where}.template: {exc}")
            continue
        _compare(template, json.loads(parsed.to_json()), f"{where}.template", problems)
    return problems


def schema_problems(obj: dict[str, Any]) -> list[str]:
    """What the official client's OpenAPI model of this kind rejects or does not know.

    The model validates types; comparing its dump (by the API's field names) with the input
    catches unknown or misspelt fields, which the model silently drops.
    """
    from kubernetes import client

    kind = str(obj.get("kind"))
    if kind == "PyTorchJob":
        return _pytorchjob_problems(obj)
    model_name = _MODELS.get(kind)
    if model_name is None:
        return [f"no model for kind {kind!r}"]
    model = getattr(client, model_name)
    body = {k: v for k, v in obj.items() if k != "stringData"}  # write-only field
    try:
        parsed = model.from_dict(body)
    except Exception as exc:
        return [f"{kind}: {exc}"]
    dumped = json.loads(parsed.to_json())
    problems: list[str] = []
    _compare(body, dumped, kind, problems)
    return problems


def _compare(sent: Any, parsed: Any, path: str, problems: list[str]) -> None:
    if isinstance(sent, dict):
        if not isinstance(parsed, dict):
            problems.append(f"{path}: not an object in the schema")
            return
        for key, value in sent.items():
            if key not in parsed:
                problems.append(f"{path}.{key}: unknown field")
            else:
                _compare(value, parsed[key], f"{path}.{key}", problems)
    elif isinstance(sent, list):
        if not isinstance(parsed, list) or len(parsed) != len(sent):
            problems.append(f"{path}: list changed by the schema")
            return
        for i, (a, b) in enumerate(zip(sent, parsed, strict=True)):
            _compare(a, b, f"{path}[{i}]", problems)


class _RecordingBus:
    """Stands in for kmock's per-resource bus: every event goes to the emulator's history."""

    def __init__(self, emulator: KubeEmulator, resource: Any) -> None:
        self.emulator = emulator
        self.resource = resource

    async def put(self, *items: Any) -> None:
        for item in items:
            self.emulator._record(self.resource, item)


class _Buses(dict[Any, _RecordingBus]):
    def __init__(self, emulator: KubeEmulator) -> None:
        super().__init__()
        self.emulator = emulator

    def __missing__(self, resource: Any) -> _RecordingBus:
        bus = _RecordingBus(self.emulator, resource)
        self[resource] = bus
        return bus


class KubeEmulator(kmock.KubernetesEmulator):
    """kmock plus resourceVersions, history watches, 410 Gone, auth and schema checks."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = _Buses(self)  # type: ignore[assignment]
        self.rv = 0
        self.compacted = 0
        self.history: list[tuple[int, Any, dict[str, Any]]] = []
        self.counts: Counter[str] = Counter()
        self.invalid: list[str] = []
        self.token: str | None = None
        #: ``kubectl --kubeconfig <file>``: when set, every created object is also checked
        #: with ``kubectl create --dry-run=client`` (set by EmulatedCluster if kubectl exists).
        self.kubectl: list[str] | None = None
        self.kubectl_checked = 0
        self.created = 0  # objects created through the API (past auth and the checks)
        self.closing = False
        self._tick = asyncio.Event()
        self._expiry = 0
        for key, kind in (
            ("batch/v1/jobs", "Job"),
            ("v1/pods", "Pod"),
            ("v1/services", "Service"),
            ("v1/secrets", "Secret"),
            ("kubeflow.org/v1/pytorchjobs", "PyTorchJob"),
        ):
            self.resources[key] = {"kind": kind, "namespaced": True}
        # kmock names the core group "/v1" in its discovery; kubectl needs "v1".
        core = [
            {
                "name": plural,
                "singularName": plural[:-1],
                "kind": kind,
                "namespaced": True,
                "verbs": ["create", "delete", "get", "list", "patch", "watch"],
            }
            for plural, kind in (("pods", "Pod"), ("services", "Service"), ("secrets", "Secret"))
        ]
        self[re.compile(r"^/api/v1$")] << {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "v1",
            "resources": core,
        }

    # ------------------------------------------------------------------ bookkeeping
    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _record(self, resource: Any, event: dict[str, Any]) -> None:
        event = copy.deepcopy(event)
        meta = event.setdefault("object", {}).setdefault("metadata", {})
        if event.get("type") == "DELETED":
            meta["resourceVersion"] = self.next_rv()
        rv = int(meta.get("resourceVersion") or self.rv)
        self.history.append((rv, resource, event))
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def close_streams(self) -> None:
        """End every open watch (the server is shutting down)."""
        self.closing = True
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def compact(self) -> None:
        """Forget every version so far: old watches and resumptions get ``410 Gone``."""
        self.compacted = self.rv
        self._expiry += 1
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    # ------------------------------------------------------------------ requests
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        verb = str(request.action.value if request.action is not None else request.method)
        plural = getattr(request.resource, "plural", None) or "-"
        self.counts[
            f"{verb} {plural}{'/' + request.subresource if request.subresource else ''}"
        ] += 1
        discovery = request.method == kmock.method.GET and plural == "-"
        if (
            self.token is not None
            and not discovery  # kubectl's discovery: anonymous, as system:discovery allows
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return aiohttp.web.json_response(
                _status(401, "Unauthorized", "Unauthorized"), status=401
            )
        data = request.data if isinstance(request.data, dict) else None
        if request.action == kmock.action.CREATE and data is not None:
            problems = schema_problems(data)
            if not problems and self.kubectl is not None:
                problems = await self._kubectl_problems(data)
            if problems:
                self.invalid.extend(problems)
                return aiohttp.web.json_response(
                    _status(422, "Invalid", "; ".join(problems)), status=422
                )
            key = (
                request.resource,
                request.namespace or data["metadata"].get("namespace"),
                data["metadata"].get("name"),
            )
            if key in self.objects and not self.objects[key].deleted:
                return aiohttp.web.json_response(
                    _status(409, "AlreadyExists", f"{plural} {key[2]!r} already exists"),
                    status=409,
                )
            self.created += 1
            meta = data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace)
            meta["resourceVersion"] = self.next_rv()
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if "stringData" in data:  # the API server folds it into data (base64)
                data.setdefault("data", {}).update(
                    {
                        k: base64.b64encode(str(v).encode()).decode()
                        for k, v in data.pop("stringData").items()
                    }
                )
        elif request.action == kmock.action.UPDATE and data is not None and request.name:
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                return aiohttp.web.json_response(
                    _status(404, "NotFound", f"{plural} {request.name!r} not found"), status=404
                )
            data.setdefault("metadata", {})["resourceVersion"] = self.next_rv()
        elif request.name and (
            request.action == kmock.action.DELETE
            or (request.action == kmock.action.FETCH and request.subresource is None)
        ):
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                return aiohttp.web.json_response(
                    _status(404, "NotFound", f"{plural} {request.name!r} not found"), status=404
                )
        return await super()._handle(request)

    async def _kubectl_problems(self, obj: dict[str, Any]) -> list[str]:
        """``kubectl create --dry-run=client --validate=false`` on the object as sent."""
        assert self.kubectl is not None
        proc = await asyncio.create_subprocess_exec(
            *self.kubectl,
            "create",
            "--dry-run=client",
            "--validate=false",
            "-o",
            "json",
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(obj).encode()), 60)
        self.kubectl_checked += 1
        if proc.returncode != 0:
            return [f"kubectl: {err.decode(errors='replace').strip()}"]
        echoed = json.loads(out)
        if echoed.get("kind") != obj.get("kind"):
            return [f"kubectl read kind {echoed.get('kind')!r}, not {obj.get('kind')!r}"]
        return []

    def _objects_of(self, request: kmock.Request) -> list[dict[str, Any]]:
        selector = request.params.get("labelSelector")
        out = []
        for (resource, namespace, _name), obj in self.objects.items():
            if resource != request.resource or obj.deleted:
                continue
            if request.namespace is not None and namespace != request.namespace:
                continue
            if _matches(obj.raw, selector):
                out.append(copy.deepcopy(obj.raw))
        return out

    async def _serve_list(self, request: kmock.Request) -> Any:
        async with self._lock:
            items = self._objects_of(request)
            return {"kind": "List", "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        yield b""
        since = request.params.get("resourceVersion") or ""
        selector = request.params.get("labelSelector")
        gone = _status(410, "Expired", f"too old resource version: {since}")
        async with self._lock:
            # Checked and remembered at one instant: a compaction can fall neither between
            # the check and the snapshot nor be missed by this watch.
            expired = since.isdigit() and int(since) < self.compacted
            expiry = self._expiry
            if since.isdigit():
                index = next(
                    (i for i, (rv, _, _) in enumerate(self.history) if rv > int(since)),
                    len(self.history),
                )
                initial: list[dict[str, Any]] = []
            else:
                index = len(self.history)
                initial = [{"type": "ADDED", "object": o} for o in self._objects_of(request)]
        if expired:
            yield {"type": "ERROR", "object": gone}
            return
        for event in initial:
            yield event
        while True:
            tick = self._tick
            while index < len(self.history):
                _, resource, event = self.history[index]
                index += 1
                obj = event.get("object") or {}
                ns = (obj.get("metadata") or {}).get("namespace")
                if resource != request.resource:
                    continue
                if request.namespace is not None and ns != request.namespace:
                    continue
                if _matches(obj, selector):
                    yield event
            if self._expiry != expiry:
                yield {"type": "ERROR", "object": gone}
                return
            if self.closing:
                return
            # A bounded wait: a wake-up can never be missed for longer than 0.1 s.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tick.wait(), 0.1)

    # ------------------------------------------------------------------ direct writes
    async def write(
        self,
        resource: Any,
        namespace: str,
        name: str,
        *,
        create: dict[str, Any] | None = None,
        patch: dict[str, Any] | None = None,
        delete: bool = False,
    ) -> None:
        """Change an object as an API request would (new version, watch event)."""
        key = (resource, namespace, name)
        async with self._lock:
            if create is not None:
                meta = create.setdefault("metadata", {})
                meta.update(
                    name=name,
                    namespace=namespace,
                    resourceVersion=self.next_rv(),
                    uid=str(uuid.uuid4()),
                    creationTimestamp=now_rfc3339(),
                )
                self.objects[key] = create
                self._record(resource, {"type": "ADDED", "object": self.objects[key].raw})
                return
            if key not in self.objects or self.objects[key].deleted:
                return
            if delete:
                raw = self.objects[key].raw
                self.objects[key].delete()
                self._record(resource, {"type": "DELETED", "object": raw})
                return
            patch = copy.deepcopy(patch or {})
            patch.setdefault("metadata", {})["resourceVersion"] = self.next_rv()
            self.objects[key].patch(patch)
            self._record(resource, {"type": "MODIFIED", "object": self.objects[key].raw})

    def get(self, resource: Any, namespace: str, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def all(self, resource: Any) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj.raw)
            for (res, _, _), obj in self.objects.items()
            if res == resource and not obj.deleted
        ]


# --------------------------------------------------------------------------- controller


def _quantity(value: Any) -> float:
    """A Kubernetes quantity (``512Mi``, ``2G``, ``500m``, ``1``) as a number."""
    text = str(value)
    units = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "m": 1e-3,
    }
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _log_end(*paths: Path) -> str:
    """What a kubelet puts in ``terminated.message`` for FallbackToLogsOnError: the log's
    last 80 lines, at most 2048 bytes."""
    data = b"".join(p.read_bytes() for p in paths if p.is_file())
    tail = b"\n".join(data.rstrip(b"\n").split(b"\n")[-80:])[-2048:]
    return tail.decode("utf-8", "replace")


class _Run:
    """One pod's container process."""

    def __init__(self, pod: str, proc: asyncio.subprocess.Process, out: Path, err: Path) -> None:
        self.pod = pod
        self.proc = proc
        self.out = out
        self.err = err
        self.oom = False
        self.done = asyncio.Event()


class Controller:
    """Moves Jobs and pods through their phases, like the Job controller plus one kubelet."""

    def __init__(self, emu: KubeEmulator, workdir: Path) -> None:
        self.emu = emu
        self.workdir = workdir
        self.images = set(DEFAULT_IMAGES)
        self.node_gpus = 0
        self.runs: dict[str, _Run] = {}
        self.pull_delay = 0.2
        self.start_delay = 0.05
        self._drops: dict[str, int] = {}
        self._counter = itertools.count()
        self._busy: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    # ------------------------------------------------------------------ test controls
    def drop_log_after(self, job_name: str, nbytes: int) -> None:
        """The next log request of this Job's pods is cut after ``nbytes`` bytes."""
        self._drops[job_name] = nbytes

    def install(self) -> None:
        self.emu[re.compile(r"^/api/v1/namespaces/[^/]+/pods/[^/]+/log$")] << self._serve_log
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for run in list(self.runs.values()):
            self._kill(run, signal.SIGKILL)

    # ------------------------------------------------------------------ loop
    async def _loop(self) -> None:
        while True:
            try:
                await self._reconcile()
            except Exception as exc:  # keep the control plane alive; tests read .errors
                self.errors.append(repr(exc))
            await asyncio.sleep(0.02)

    async def _reconcile(self) -> None:
        jobs = {(j["metadata"]["namespace"], j["metadata"]["name"]): j for j in self.emu.all(JOBS)}
        ptjs = {
            (j["metadata"]["namespace"], j["metadata"]["name"]): j
            for j in self.emu.all(PYTORCHJOBS)
        }
        pods = self.emu.all(PODS)
        by_job: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            owner = labels.get("batch.kubernetes.io/job-name") or labels.get(f"{_KF}/job-name")
            key = (pod["metadata"]["namespace"], str(owner))
            if key not in jobs and key not in ptjs:
                await self._collect(pod)  # its Job is gone: garbage collection
                continue
            by_job.setdefault(key, []).append(pod)
        for key, job in jobs.items():
            await self._sync_job(job, by_job.get(key, []))
        for key, ptj in ptjs.items():
            await self._sync_pytorchjob(ptj, by_job.get(key, []))

    async def _sync_pytorchjob(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        """What Kubeflow's training operator does, in short: one pod per replica, the
        rendezvous variables, and conditions (Created, Running, Succeeded, Failed)."""
        meta, spec = job["metadata"], job.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        conditions = [c.get("type") for c in (job.get("status") or {}).get("conditions") or []]
        if "Succeeded" in conditions or "Failed" in conditions:
            return
        if (spec.get("runPolicy") or {}).get("suspend"):
            return
        now = now_rfc3339()
        replicas = spec.get("pytorchReplicaSpecs") or {}
        if not pods:
            world = sum(int(r.get("replicas", 1)) for r in replicas.values())
            rank = 0
            for kind in ("Master", "Worker"):
                for index in range(int((replicas.get(kind) or {}).get("replicas", 0))):
                    await self._create_replica_pod(job, kind, index, rank, world)
                    rank += 1
            await self.emu.write(
                PYTORCHJOBS,
                ns,
                name,
                patch={
                    "status": {
                        "conditions": [
                            {"type": "Created", "status": "True", "lastTransitionTime": now}
                        ]
                    }
                },
            )
            return
        phases = {p["metadata"]["name"]: (p.get("status") or {}).get("phase") for p in pods}
        master_done = any(
            phase == "Succeeded" and name_.endswith("-master-0") for name_, phase in phases.items()
        )
        failed = [n for n, phase in phases.items() if phase == "Failed"]
        cond: dict[str, Any] | None = None
        if failed:
            for pod in pods:
                run = self.runs.get(pod["metadata"]["name"])
                if run is not None:
                    self._kill(run, signal.SIGKILL)
            cond = {
                "type": "Failed",
                "status": "True",
                "reason": "PyTorchJobFailed",
                "message": f"PyTorchJob {name} is failed because {len(failed)} replica(s) failed.",
            }
        elif master_done:
            cond = {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}
        elif "Running" in phases.values() and "Running" not in conditions:
            cond = {"type": "Running", "status": "True", "reason": "PyTorchJobRunning"}
        if cond is not None:
            cond["lastTransitionTime"] = now
            status: dict[str, Any] = {"conditions": [cond]}
            if cond["type"] == "Running":
                status["startTime"] = now
            if cond["type"] == "Succeeded":
                status["completionTime"] = now
            await self.emu.write(PYTORCHJOBS, ns, name, patch={"status": status})

    async def _create_replica_pod(
        self, job: dict[str, Any], kind: str, index: int, rank: int, world: int
    ) -> None:
        meta = job["metadata"]
        ns, job_name = meta["namespace"], meta["name"]
        template = copy.deepcopy(job["spec"]["pytorchReplicaSpecs"][kind]["template"])
        tmeta = template.get("metadata") or {}
        labels = {
            **(tmeta.get("labels") or {}),
            f"{_KF}/job-name": job_name,
            f"{_KF}/replica-type": kind.lower(),
            f"{_KF}/replica-index": str(index),
        }
        spec = template["spec"]
        env = spec["containers"][0].setdefault("env", [])
        env += [
            {"name": "MASTER_ADDR", "value": f"{job_name}-master-0"},
            {"name": "MASTER_PORT", "value": "23456"},
            {"name": "WORLD_SIZE", "value": str(world)},
            {"name": "RANK", "value": str(rank)},
            {"name": "PET_NPROC_PER_NODE", "value": str(job["spec"].get("nprocPerNode", "1"))},
        ]
        pod_name = f"{job_name}-{kind.lower()}-{index}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "labels": labels,
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "kubeflow.org/v1",
                        "kind": "PyTorchJob",
                        "name": job_name,
                        "uid": meta.get("uid", ""),
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        await self.emu.write(PODS, ns, pod_name, create=pod)
        asyncio.get_running_loop().create_task(self._kubelet(ns, pod_name))

    async def _collect(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        if name in self._busy:
            return
        self._busy.add(name)
        run = self.runs.get(name)
        if run is not None and not run.done.is_set():
            self._kill(run, signal.SIGTERM)
            try:
                await asyncio.wait_for(run.done.wait(), 1.0)
            except TimeoutError:
                self._kill(run, signal.SIGKILL)
                await run.done.wait()
        await self.emu.write(PODS, pod["metadata"]["namespace"], name, delete=True)
        self._busy.discard(name)

    def _kill(self, run: _Run, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.proc.pid, sig)

    async def _sync_job(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        status = job.get("status") or {}
        ns, name = meta["namespace"], meta["name"]
        conditions = [c.get("type") for c in status.get("conditions") or []]
        if "Complete" in conditions or "Failed" in conditions:
            return
        if spec.get("suspend"):
            return
        completions = int(spec.get("completions") or 1)
        indexed = spec.get("completionMode") == "Indexed"
        backoff = int(spec.get("backoffLimit", 6))
        by_index: dict[int, list[dict[str, Any]]] = {}
        for pod in pods:
            ann = pod["metadata"].get("annotations") or {}
            by_index.setdefault(
                int(ann.get("batch.kubernetes.io/job-completion-index", 0)), []
            ).append(pod)
        failed = sum(1 for p in pods if p.get("status", {}).get("phase") == "Failed")
        succeeded = {
            i
            for i, ps in by_index.items()
            if any(p.get("status", {}).get("phase") == "Succeeded" for p in ps)
        }
        active = [p for p in pods if p.get("status", {}).get("phase") in ("Pending", "Running")]
        now = now_rfc3339()
        patch: dict[str, Any] = {}
        if failed > backoff:
            for pod in active:
                run = self.runs.get(pod["metadata"]["name"])
                if run is not None:
                    self._kill(run, signal.SIGKILL)
            patch = {
                "status": {
                    "failed": failed,
                    "active": 0,
                    "conditions": [
                        {
                            "type": "FailureTarget",
                            "status": "True",
                            "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                            "lastTransitionTime": now,
                        },
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit",
                            "lastTransitionTime": now,
                        },
                    ],
                }
            }
        elif len(succeeded) >= completions:
            patch = {
                "status": {
                    "succeeded": len(succeeded),
                    "active": 0,
                    "completionTime": now,
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "lastTransitionTime": now},
                    ],
                }
            }
        else:
            for index in range(completions):
                live = [
                    p
                    for p in by_index.get(index, [])
                    if p.get("status", {}).get("phase") in ("Pending", "Running", "Succeeded")
                ]
                if not live:
                    await self._create_pod(job, index if indexed else 0, indexed)
            want = {"active": len(active), "failed": failed, "succeeded": len(succeeded)}
            if any(p.get("status", {}).get("phase") == "Running" for p in pods) and not status.get(
                "startTime"
            ):
                want["startTime"] = now
            if any(status.get(k) != v for k, v in want.items()):
                patch = {"status": want}
        if patch:
            await self.emu.write(JOBS, ns, name, patch=patch)

    async def _create_pod(self, job: dict[str, Any], index: int, indexed: bool) -> None:
        meta = job["metadata"]
        ns, job_name = meta["namespace"], meta["name"]
        template = copy.deepcopy(job["spec"]["template"])
        tmeta = template.get("metadata") or {}
        labels = {
            **(tmeta.get("labels") or {}),
            "batch.kubernetes.io/job-name": job_name,
            "job-name": job_name,
            "batch.kubernetes.io/controller-uid": meta.get("uid", ""),
        }
        annotations = dict(tmeta.get("annotations") or {})
        if indexed:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        pod_name = (
            f"{job_name}-{index}-{next(self._counter):05d}"[:63]
            if indexed
            else f"{job_name}-{next(self._counter):05d}"
        )
        spec = template["spec"]
        if indexed:
            spec["hostname"] = f"{job_name}-{index}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": meta.get("uid", ""),
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        await self.emu.write(PODS, ns, pod_name, create=pod)
        asyncio.get_running_loop().create_task(self._kubelet(ns, pod_name))

    # ------------------------------------------------------------------ kubelet
    async def _kubelet(self, ns: str, name: str) -> None:
        try:
            await self._kubelet_run(ns, name)
        except Exception as exc:
            self.errors.append(f"kubelet {name}: {exc!r}")

    async def _kubelet_run(self, ns: str, name: str) -> None:
        pod = self.emu.get(PODS, ns, name)
        if pod is None:
            return
        container = pod["spec"]["containers"][0]
        limits = (container.get("resources") or {}).get("limits") or {}
        gpus = int(str(limits.get("nvidia.com/gpu", 0)))
        if gpus > self.node_gpus:
            message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
            await self.emu.write(
                PODS,
                ns,
                name,
                patch={
                    "status": {
                        "phase": "Pending",
                        "conditions": [
                            {
                                "type": "PodScheduled",
                                "status": "False",
                                "reason": "Unschedulable",
                                "message": message,
                            }
                        ],
                    }
                },
            )
            return
        waiting = {
            "name": "main",
            "ready": False,
            "restartCount": 0,
            "image": container["image"],
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }
        await self.emu.write(
            PODS,
            ns,
            name,
            patch={
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [waiting],
                }
            },
        )
        if container["image"] not in self.images:
            await asyncio.sleep(self.pull_delay)
            msg = f'failed to pull and unpack image "{container["image"]}": not found'
            for reason in ("ErrImagePull", "ImagePullBackOff"):
                state = {**waiting, "state": {"waiting": {"reason": reason, "message": msg}}}
                await self.emu.write(
                    PODS, ns, name, patch={"status": {"containerStatuses": [state]}}
                )
                await asyncio.sleep(self.pull_delay)
            return  # stays pending, as a real kubelet keeps backing off
        await asyncio.sleep(self.start_delay)
        env = await self._env(ns, pod, container)
        argv = [
            expand(str(w), env)
            for w in [*(container.get("command") or []), *(container.get("args") or [])]
        ]
        cwd = container.get("workingDir")
        if not cwd or not os.path.isdir(cwd):
            cwd = str(self.workdir)
        out = self.workdir / f"{name}.stdout"
        err = self.workdir / f"{name}.stderr"
        with out.open("wb") as fo, err.open("wb") as fe:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdout=fo,
                    stderr=fe,
                    stdin=asyncio.subprocess.DEVNULL,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                term = {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(exc),
                    "startedAt": None,
                    "finishedAt": now_rfc3339(),
                }
                await self.emu.write(
                    PODS,
                    ns,
                    name,
                    patch={
                        "status": {
                            "phase": "Failed",
                            "containerStatuses": [{**waiting, "state": {"terminated": term}}],
                        }
                    },
                )
                return
        run = _Run(name, proc, out, err)
        self.runs[name] = run
        started = now_rfc3339()
        await self.emu.write(
            PODS,
            ns,
            name,
            patch={
                "status": {
                    "phase": "Running",
                    "startTime": started,
                    "containerStatuses": [
                        {**waiting, "ready": True, "state": {"running": {"startedAt": started}}}
                    ],
                }
            },
        )
        memory = limits.get("memory")
        limit = _quantity(memory) if memory else None
        while True:
            try:
                code = await asyncio.wait_for(proc.wait(), 0.02)
                break
            except TimeoutError:
                if limit is not None and _rss(proc.pid) > limit:
                    run.oom = True
                    self._kill(run, signal.SIGKILL)
        if code < 0:
            code = 128 - code
        reason = "OOMKilled" if run.oom else ("Completed" if code == 0 else "Error")
        term = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_rfc3339(),
        }
        if code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            term["message"] = _log_end(out, err)
        run.done.set()
        await self.emu.write(
            PODS,
            ns,
            name,
            patch={
                "status": {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "containerStatuses": [
                        {**waiting, "ready": False, "state": {"terminated": term}}
                    ],
                }
            },
        )

    async def _env(self, ns: str, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
        ann = pod["metadata"].get("annotations") or {}
        for item in container.get("env") or []:
            if "value" in item:  # expanded from the variables defined before it
                env[item["name"]] = expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self.emu.get(SECRETS, ns, ref["name"]) or {}
                raw = (secret.get("data") or {}).get(ref["key"])
                if raw is not None:
                    env[item["name"]] = base64.b64decode(raw).decode()
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                found = re.match(r"metadata\.annotations\['(.+)'\]", path)
                if found:
                    env[item["name"]] = ann.get(found.group(1), "")
        for key, value in env.items():  # the DNS stand-in (see the module docstring)
            host = _SVC_HOST.match(value)
            if host and self.emu.get(SERVICES, host.group("ns"), host.group("svc")) is not None:
                env[key] = "127.0.0.1"
        return env

    # ------------------------------------------------------------------ logs
    async def _serve_log(self, request: kmock.Request) -> Any:
        parts = request.url.path.split("/")
        ns, pod_name = parts[4], parts[6]
        pod = self.emu.get(PODS, ns, pod_name)
        if pod is None:
            return kmock.Response(
                status=404, payload=_status(404, "NotFound", f'pods "{pod_name}" not found')
            )
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        asked = request.params.get("container")
        if asked is not None and asked not in names:  # as the API server answers
            message = (
                f"container {asked} is not valid for pod {pod_name}"
                if names
                else f'pod "{pod_name}" has no containers'
            )
            return kmock.Response(status=400, payload=_status(400, "BadRequest", message))
        run = self.runs.get(pod_name)
        if run is None:
            reason = (
                ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
                .get("state", {})
                .get("waiting", {})
                .get("reason", "ContainerCreating")
            )
            return kmock.Response(
                status=400,
                payload=_status(
                    400,
                    "BadRequest",
                    f'container "main" in pod "{pod_name}" is waiting to start: {reason}',
                ),
            )
        which = request.params.get("stream", "All")
        files = {"Stdout": [run.out], "Stderr": [run.err]}.get(which, [run.out, run.err])
        follow = request.params.get("follow") == "true"
        labels = pod["metadata"].get("labels") or {}
        job_name = labels.get("batch.kubernetes.io/job-name") or labels.get(f"{_KF}/job-name", "")
        drop = self._drops.pop(job_name, None)
        if not follow and drop is None:
            return kmock.Response(
                payload=b"".join(f.read_bytes() for f in files),
                headers={"Content-Type": "text/plain"},
            )
        return kmock.Response(
            payload=self._stream(request, run, files, follow, drop),
            headers={"Content-Type": "text/plain"},
        )

    async def _stream(
        self, request: kmock.Request, run: _Run, files: list[Path], follow: bool, drop: int | None
    ) -> AsyncIterator[bytes]:
        sent = 0
        for path in files:
            pos = 0
            while True:
                ended = run.done.is_set()
                with path.open("rb") as f:
                    f.seek(pos)
                    data = f.read()
                if data:
                    if drop is not None and sent + len(data) >= drop:
                        data = data[: max(0, drop - sent)]
                        if data:
                            yield data
                        await asyncio.sleep(0.05)
                        transport = request._raw_request.transport if request._raw_request else None
                        if transport is not None:
                            transport.close()  # the connection drops mid-stream
                        return
                    pos += len(data)
                    sent += len(data)
                    yield data
                elif ended or not follow or self.emu.closing:
                    break
                else:
                    await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- thread


class EmulatedCluster:
    """The emulator, its controller and a kubeconfig, served from a private loop thread."""

    def __init__(self, root: Path, *, token: str = "ci-token", use_kubectl: bool = True) -> None:
        self.root = root
        self.use_kubectl = use_kubectl
        self.token = token
        self.url = ""
        self.kubeconfig = root / "kubeconfig.json"
        self.context = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.emu: KubeEmulator | None = None
        self.controller: Controller | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="kube-emulator", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> EmulatedCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes emulator did not start in 30 s")
        if self._error is not None:
            raise RuntimeError(f"the Kubernetes emulator failed: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        emu = KubeEmulator()
        async with emu, kmock.Server(emu) as server:
            emu.token = self.token
            self.emu = emu
            (self.root / "pods").mkdir(exist_ok=True)
            self.controller = Controller(emu, self.root / "pods")
            self.controller.install()
            self.url = str(server.url).rstrip("/")
            self.context = f"kmock-{server.port}"
            self.write_kubeconfig(self.kubeconfig, self.token)
            kubectl = shutil.which("kubectl")
            if kubectl and self.use_kubectl:
                emu.kubectl = [kubectl, "--kubeconfig", str(self.kubeconfig)]
            self._ready.set()
            await self._stop.wait()
            emu.close_streams()
            await self.controller.stop()

    def write_kubeconfig(self, path: Path, token: str, server: str | None = None) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": server or self.url}}],
            "users": [{"name": "ci", "user": {"token": token}}],
            "contexts": [
                {
                    "name": self.context,
                    "context": {"cluster": "kmock", "user": "ci", "namespace": "default"},
                }
            ],
            "current-context": self.context,
        }
        path.write_text(json.dumps(config))
        return path

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` (a coroutine function or plain) on the emulator's loop."""
        assert self.loop is not None

        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def close_streams(self) -> None:
        """End every open watch (the server is shutting down)."""
        self.closing = True
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def compact(self) -> None:
        assert self.emu is not None
        self.call(self.emu.compact)

    def jobs(self) -> list[dict[str, Any]]:
        assert self.emu is not None
        return self.call(self.emu.all, JOBS)

    def objects(self, resource: Any) -> list[dict[str, Any]]:
        assert self.emu is not None
        return self.call(self.emu.all, resource)

    def counts(self) -> Counter[str]:
        assert self.emu is not None
        return Counter(self.emu.counts)


@contextlib.contextmanager
def emulated_cluster(root: Path | None = None) -> Iterator[EmulatedCluster]:
    """An :class:`EmulatedCluster` in ``root`` (a temporary directory by default)."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kmock-")))
        cluster = stack.enter_context(EmulatedCluster(root))
        yield cluster
        time.sleep(0)
