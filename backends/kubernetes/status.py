"""A Job and its pods (API dicts, as the watch delivers them) → one :class:`StatusReport`.

Pure functions, so every mapping is tested without a server. Kubernetes keeps the *why* in
the pods: a Job whose pod cannot pull its image stays "active" forever, so the pending
reason comes from the container's ``waiting.reason`` (ImagePullBackOff, ErrImagePull,
CrashLoopBackOff) or the ``PodScheduled`` condition (Unschedulable); exit codes and
OOMKilled come from ``containerStatuses[].state.terminated``.
"""

from __future__ import annotations

import datetime
import json
import posixpath
import re
from typing import Any

from backends.kubernetes import names
from core.engine.states import JobState, StatusReport
from core.launchers import FT_EXECUTABLE, FT_PACKAGE, TORCHRUN_MODULE

SOURCE = "kubernetes watch"
#: Waiting reasons that mean "will not start without a change", shown first.
_BAD_WAITING = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
)


def parse_time(value: Any) -> float | None:
    """An RFC 3339 API timestamp as epoch seconds (None when absent or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and str(cond.get("status")) == "True":
            return dict(cond)
    return None


def suspended(job: dict[str, Any]) -> bool:
    """Whether a Job (``spec.suspend``) or a PyTorchJob (``spec.runPolicy.suspend``) waits."""
    spec = job.get("spec") or {}
    return bool(spec.get("suspend") or (spec.get("runPolicy") or {}).get("suspend"))


def pod_index(pod: dict[str, Any]) -> int:
    """The rank of a pod: its Indexed Job index; Kubeflow: master 0, worker i is i + 1."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    replica = labels.get("training.kubeflow.org/replica-type")
    if replica is not None:
        index = str(labels.get("training.kubeflow.org/replica-index", "0"))
        number = int(index) if index.isdigit() else 0
        return 0 if str(replica).lower() == "master" else number + 1
    for source in (meta.get("annotations") or {}, meta.get("labels") or {}):
        value = source.get("batch.kubernetes.io/job-completion-index")
        if value is not None and str(value).isdigit():
            return int(value)
    return 0


#: The job's container in our pods: ``main`` (batch/v1 Job) or ``pytorch`` (the name
#: Kubeflow's training operator requires in a PyTorchJob).
JOB_CONTAINERS = ("main", "pytorch")


def container_name(pod: dict[str, Any]) -> str:
    """The name of the container running the job in ``pod`` (logs are asked by it)."""
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    for name in JOB_CONTAINERS:
        if name in names:
            return name
    return names[0] if names else JOB_CONTAINERS[0]


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") in JOB_CONTAINERS:
            return dict(status)
    return dict(statuses[0]) if statuses else {}


def terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The main container's ``terminated`` state (this run, else the last one)."""
    status = _container(pod)
    term = (status.get("state") or {}).get("terminated")
    if term is None:
        term = (status.get("lastState") or {}).get("terminated")
    return dict(term) if term else None


def pod_finished(pod: dict[str, Any]) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed") or (
        terminated(pod) is not None and (pod.get("status") or {}).get("phase") != "Running"
    )


def pending_reason(pods: list[dict[str, Any]]) -> str | None:
    """Why nothing runs yet: the most telling container or scheduling reason of any pod."""
    found: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and str(cond.get("status")) == "False":
                reason = cond.get("reason") or "Unschedulable"
                message = cond.get("message")
                found.append(f"{reason}: {message}" if message else str(reason))
        waiting = (_container(pod).get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            message = waiting.get("message")
            text = f"{waiting['reason']}: {message}" if message else str(waiting["reason"])
            found.append(text)
    for bad in _BAD_WAITING:
        for text in found:
            if text.startswith(bad):
                return text
    return found[0] if found else None


def _failed_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The failed pod that tells why: lowest rank, then the most recent attempt."""
    failed = [p for p in pods if (terminated(p) or {}).get("exitCode", 0) != 0]
    if not failed:
        return None
    failed.sort(key=lambda p: (pod_index(p), -(_created(p) or 0.0)))
    return failed[0]


_NO_MODULE = re.compile(r"No module named '?([A-Za-z_][\w.]*)'?")


def launcher_hint(pod: dict[str, Any] | None) -> str | None:
    """Why a launcher's pod failed, when the image lacks the launcher's package.

    The launcher cannot be checked before submitting (nothing runs in an image without a
    pod), so this reads the failure instead: the container runs ``<python> -m
    torch.distributed.run`` or ``ft_launcher`` (manifest.build), and its terminated message
    is its log's end (``FallbackToLogsOnError``) or the runtime's start error.
    """
    term = terminated(pod) if pod else None
    containers = ((pod or {}).get("spec") or {}).get("containers") or []
    if not term or not containers:
        return None
    command = [str(w) for w in containers[0].get("command") or []]
    image = containers[0].get("image") or "?"
    message = str(term.get("message") or "")
    wanted: tuple[str, ...]
    if TORCHRUN_MODULE in command[:3]:
        name, wanted = "torchrun", ("torch",)
    elif command and posixpath.basename(command[0]) == FT_EXECUTABLE:
        name, wanted = "the fault-tolerant launcher (ft)", (FT_PACKAGE, "torch")
        if FT_EXECUTABLE in message and term.get("reason") in ("StartError", "ContainerCannotRun"):
            return (
                f"{name} needs nvidia-resiliency-ext in the image ({image}): there is no "
                f"{FT_EXECUTABLE} to start; install it in the image, or set launcher=None"
            )
    else:
        return None
    found = _NO_MODULE.search(message)
    module = found.group(1).split(".")[0] if found else ""
    if module not in wanted:
        return None
    package = "nvidia-resiliency-ext" if module == FT_PACKAGE else "torch"
    return (
        f"{name} needs {package} in the image ({image}); its python cannot import "
        f"`{module}`: install it in the image, or set launcher=None"
    )


def _created(obj: dict[str, Any]) -> float | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


def report(
    job: dict[str, Any], pods: list[dict[str, Any]], observed_at: float, kind: str = "Job"
) -> StatusReport:
    """The state of one Job (or Kubeflow PyTorchJob) from its own status and its pods'."""
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    started = parse_time(status.get("startTime"))
    restarts = int(status.get("failed") or 0)

    cancelled = annotations.get(names.ANN_CANCELLED)
    if cancelled is not None:
        return StatusReport(
            JobState.CANCELLED,
            SOURCE,
            observed_at,
            reason=cancelled or "cancelled",
            started_at=started,
            ended_at=parse_time(meta.get("deletionTimestamp")),
        )
    if meta.get("deletionTimestamp"):
        return StatusReport(
            JobState.CANCELLED,
            SOURCE,
            observed_at,
            reason="the Job is being deleted",
            started_at=started,
            ended_at=parse_time(meta["deletionTimestamp"]),
        )

    if kind == "PyTorchJob":
        return _kubeflow(job, pods, observed_at)

    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        ends = [parse_time((terminated(p) or {}).get("finishedAt")) for p in pods]
        ended = parse_time(status.get("completionTime")) or max(
            (e for e in ends if e is not None), default=None
        )
        return StatusReport(
            JobState.SUCCEEDED,
            SOURCE,
            observed_at,
            exit_code=0,
            restarts=restarts,
            started_at=started,
            ended_at=ended,
        )

    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed:
        pod = _failed_pod(pods)
        term = terminated(pod) if pod else None
        exit_code = term.get("exitCode") if term else None
        hint = launcher_hint(pod)
        reason_parts = [hint] if hint else []
        if term and term.get("reason") and term["reason"] != "Error":
            reason_parts.append(str(term["reason"]))
        if failed.get("reason"):
            reason_parts.append(str(failed["reason"]))
        if failed.get("message"):
            reason_parts.append(str(failed["message"]))
        ended = parse_time((term or {}).get("finishedAt")) or parse_time(
            failed.get("lastTransitionTime")
        )
        return StatusReport(
            JobState.FAILED,
            SOURCE,
            observed_at,
            exit_code=int(exit_code) if isinstance(exit_code, int) else None,
            reason="; ".join(reason_parts) or None,
            restarts=max(0, restarts - 1),
            started_at=started,
            ended_at=ended,
        )

    if spec.get("suspend"):
        if annotations.get(names.ANN_HELD) == "true":
            why = "held until its launcher recorded it"
        elif annotations.get(names.ANN_DEPENDS):
            deps = ", ".join(json.loads(annotations[names.ANN_DEPENDS]))
            why = f"waiting for its dependencies: {deps}"
        else:
            why = "suspended"
        return StatusReport(JobState.PENDING, SOURCE, observed_at, reason=why)

    live = [p for p in pods if not pod_finished(p)]
    running = [
        p
        for p in live
        if (p.get("status") or {}).get("phase") == "Running"
        and "running" in (_container(p).get("state") or {})
    ]
    if running:
        first = min(
            (parse_time((_container(p).get("state") or {})["running"].get("startedAt")))
            or observed_at
            for p in running
        )
        reason = None
        if restarts:
            last = _failed_pod(pods)
            term = terminated(last) if last else None
            reason = f"retry {restarts}" + (
                f" after {term.get('reason')} (exit {term.get('exitCode')})" if term else ""
            )
        return StatusReport(
            JobState.RUNNING,
            SOURCE,
            observed_at,
            reason=reason,
            restarts=restarts,
            started_at=started or first,
        )
    if pods and not live and _failed_pod(pods) is None:
        # Every pod ended well; the Job controller has not yet said Complete. Not
        # "pending": the work ran.
        return StatusReport(
            JobState.RUNNING,
            SOURCE,
            observed_at,
            reason="all pods ended; waiting for the Job's completion",
            restarts=restarts,
            started_at=started,
        )
    reason = pending_reason(live)
    if reason is None and restarts:
        last = _failed_pod(pods)
        term = terminated(last) if last else None
        if term:
            reason = f"retrying after {term.get('reason') or 'exit'} {term.get('exitCode')}"
    if not pods and reason is None:
        return StatusReport(
            JobState.SUBMITTED, SOURCE, observed_at, reason="no pod yet", restarts=restarts
        )
    return StatusReport(JobState.PENDING, SOURCE, observed_at, reason=reason, restarts=restarts)


def _kubeflow(job: dict[str, Any], pods: list[dict[str, Any]], observed_at: float) -> StatusReport:
    """A PyTorchJob from its conditions (the training operator's), reasons from its pods."""
    st = job.get("status") or {}
    started = parse_time(st.get("startTime"))
    restarts = sum(int(v.get("failed") or 0) for v in (st.get("replicaStatuses") or {}).values())
    done = _condition(job, "Succeeded")
    if done:
        return StatusReport(
            JobState.SUCCEEDED,
            SOURCE,
            observed_at,
            exit_code=0,
            started_at=started,
            ended_at=parse_time(st.get("completionTime"))
            or parse_time(done.get("lastTransitionTime")),
        )
    failed = _condition(job, "Failed")
    if failed:
        pod = _failed_pod(pods)
        term = terminated(pod) if pod else None
        code = (term or {}).get("exitCode")
        hint = launcher_hint(pod)
        parts = [hint] if hint else []
        if term and term.get("reason") not in (None, "Error"):
            parts.append(str(term["reason"]))
        parts += [str(failed[k]) for k in ("reason", "message") if failed.get(k)]
        return StatusReport(
            JobState.FAILED,
            SOURCE,
            observed_at,
            exit_code=int(code) if isinstance(code, int) else None,
            reason="; ".join(parts) or None,
            started_at=started,
            ended_at=parse_time((term or {}).get("finishedAt"))
            or parse_time(failed.get("lastTransitionTime")),
        )
    if suspended(job):
        ann = (job.get("metadata") or {}).get("annotations") or {}
        why = (
            "held until its launcher recorded it"
            if ann.get(names.ANN_HELD) == "true"
            else ("waiting for its dependencies" if ann.get(names.ANN_DEPENDS) else "suspended")
        )
        return StatusReport(JobState.PENDING, SOURCE, observed_at, reason=why)
    if _condition(job, "Running") or _condition(job, "Restarting"):
        return StatusReport(
            JobState.RUNNING, SOURCE, observed_at, restarts=restarts, started_at=started
        )
    live = [p for p in pods if not pod_finished(p)]
    reason = pending_reason(live)
    if not pods and reason is None:
        return StatusReport(JobState.SUBMITTED, SOURCE, observed_at, reason="no pod yet")
    return StatusReport(JobState.PENDING, SOURCE, observed_at, reason=reason)
