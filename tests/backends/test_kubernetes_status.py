"""Job + pod API objects → StatusReport: the reasons and exit codes a user is shown."""

from __future__ import annotations

from typing import Any

from backends.kubernetes import names, status
from core.engine.states import JobState

NOW = 1_800_000_000.0


def job(**kw: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "j", "annotations": {}}, "spec": {}, "status": {}}
    for key, value in kw.items():
        obj[key].update(value)
    return obj


def pod(
    index: int = 0,
    phase: str = "Pending",
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    created: str = "2026-12-01T10:00:00Z",
    last: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "main", "state": state or {}}
    if last:
        cs["lastState"] = last
    return {
        "metadata": {
            "name": f"p{index}",
            "creationTimestamp": created,
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        },
        "status": {"phase": phase, "containerStatuses": [cs], "conditions": conditions or []},
    }


def failed_job() -> dict[str, Any]:
    return job(
        status={
            "failed": 1,
            "startTime": "2026-12-01T10:00:00Z",
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "lastTransitionTime": "2026-12-01T10:05:00Z",
                }
            ],
        }
    )


def test_oomkilled_pod_fails_the_job_with_its_reason_and_exit_code() -> None:
    term = {
        "terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-12-01T10:04:00Z"}
    }
    r = status.report(failed_job(), [pod(phase="Failed", state=term)], NOW)

    assert r.state is JobState.FAILED
    assert r.exit_code == 137
    assert r.reason is not None and r.reason.startswith("OOMKilled")
    assert "BackoffLimitExceeded" in r.reason
    assert r.ended_at == status.parse_time("2026-12-01T10:04:00Z")
    assert r.started_at == status.parse_time("2026-12-01T10:00:00Z")


def test_exit_code_comes_from_the_lowest_failed_rank() -> None:
    pods = [
        pod(0, "Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed"}}),
        pod(2, "Failed", {"terminated": {"exitCode": 9, "reason": "Error"}}),
        pod(1, "Failed", {"terminated": {"exitCode": 4, "reason": "Error"}}),
    ]
    r = status.report(failed_job(), pods, NOW)
    assert r.state is JobState.FAILED and r.exit_code == 4


def test_image_pull_backoff_is_a_pending_reason_not_a_failure() -> None:
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling "x"'}}
    r = status.report(job(status={"active": 1}), [pod(state=waiting)], NOW)
    assert r.state is JobState.PENDING
    assert r.reason == 'ImagePullBackOff: Back-off pulling "x"'


def test_err_image_pull_and_crash_loop_win_over_container_creating() -> None:
    creating = pod(0, state={"waiting": {"reason": "ContainerCreating"}})
    pulling = pod(1, state={"waiting": {"reason": "ErrImagePull"}})
    crash = pod(2, state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}})

    assert status.report(job(), [creating, pulling], NOW).reason == "ErrImagePull"
    assert status.report(job(), [creating, crash], NOW).reason == "CrashLoopBackOff: back-off 10s"
    assert status.report(job(), [creating], NOW).reason == "ContainerCreating"


def test_unschedulable_shows_the_schedulers_message() -> None:
    cond = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        }
    ]
    r = status.report(job(), [pod(conditions=cond)], NOW)
    assert r.state is JobState.PENDING
    assert r.reason == "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def test_running_and_succeeded_carry_their_own_times() -> None:
    running = pod(state={"running": {"startedAt": "2026-12-01T10:01:00Z"}}, phase="Running")
    r = status.report(job(status={"active": 1}), [running], NOW)
    assert r.state is JobState.RUNNING and r.started_at == status.parse_time("2026-12-01T10:01:00Z")

    done = job(
        status={
            "succeeded": 1,
            "startTime": "2026-12-01T10:00:00Z",
            "completionTime": "2026-12-01T10:09:00Z",
            "conditions": [{"type": "Complete", "status": "True"}],
        }
    )
    r = status.report(done, [], NOW)
    assert r.state is JobState.SUCCEEDED and r.exit_code == 0
    assert r.ended_at == status.parse_time("2026-12-01T10:09:00Z")


def test_a_retry_after_oom_says_so_while_running_again() -> None:
    last = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    old = pod(
        0,
        "Failed",
        {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        created="2026-12-01T10:00:00Z",
    )
    new = pod(
        0,
        "Running",
        {"running": {"startedAt": "2026-12-01T10:02:00Z"}},
        created="2026-12-01T10:01:00Z",
        last=last,
    )
    r = status.report(job(status={"failed": 1, "active": 1}), [old, new], NOW)
    assert r.state is JobState.RUNNING and r.restarts == 1
    assert r.reason is not None and "OOMKilled" in r.reason


def test_suspended_cancelled_and_deleting_jobs() -> None:
    held = job(spec={"suspend": True}, metadata={"annotations": {names.ANN_HELD: "true"}})
    deps = job(spec={"suspend": True}, metadata={"annotations": {names.ANN_DEPENDS: '["a-1"]'}})
    cancelled = job(metadata={"annotations": {names.ANN_CANCELLED: "dependency a-1 ended FAILED"}})
    deleting = job(metadata={"deletionTimestamp": "2026-12-01T10:00:00Z"})

    assert status.report(held, [], NOW).state is JobState.PENDING
    r = status.report(deps, [], NOW)
    assert r.state is JobState.PENDING and r.reason is not None and "a-1" in r.reason
    r = status.report(cancelled, [], NOW)
    assert r.state is JobState.CANCELLED and r.reason == "dependency a-1 ended FAILED"
    assert status.report(deleting, [], NOW).state is JobState.CANCELLED
    assert status.report(job(), [], NOW).state is JobState.SUBMITTED


def test_unreadable_times_are_none_not_a_crash() -> None:
    assert status.parse_time("not a time") is None
    assert status.parse_time(None) is None
    assert (
        status.parse_time("2026-12-01T10:00:00.123456Z")
        == status.parse_time("2026-12-01T10:00:00Z") + 0.123456
    )
