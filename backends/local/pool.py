"""One process that starts a local sweep's points, at most ``throttle`` of them at a time.

Why: a 1,000-point sweep submitted job by job on this machine was 1,000 supervisors and
1,000 jobs started at once. Here the sweep gets one small pool process (stdlib only, like
the supervisor, started as ``python -I -S pool.py ARRAY_DIR``); it starts each point's own
supervisor when a slot is free, so every point keeps its run directory, logs, result and
cancel exactly as a job submitted alone. A point not started yet has no supervisor: readers
see it PENDING while the pool lives (:func:`supervisor.read_status`).

Files in the array directory (the sweep's ``_array`` job dir):

``pool.json``         the points' run dirs in order, the throttle, the hold (see below)
``released``          written by the launcher once every point's handle is recorded
``pid.json``          the pool's identity while it runs (how readers know it is alive)
``cancel-requested``  stop starting points; the ones not started end CANCELLED
``result.json``       how many points it started, once all were started or skipped

Each point's run dir has ``pooled.json``: the array dir and the point's own environment
(its job variables, never secrets: those reach the pool only through its process
environment, as they reach a supervisor).

The pool is held like any held job (core.engine.launch_window): it starts nothing until
``released`` exists, and if its launcher dies first, every point ends "not run".
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from backends.local import supervisor as sv
elif __package__:  # imported (the backend reads its constants)
    from backends.local import supervisor as sv
else:  # run as a script with -I (no script dir on sys.path): the supervisor next to it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import supervisor as sv

POOL = "pool.json"
POOLED = "pooled.json"
#: The longest the pool waits for a point to end before looking again (cancel markers); a
#: point's end wakes it at once where pidfds exist (Linux >= 5.3), else it polls this often.
SLOT_WAIT_SECONDS = 0.5
SLOT_POLL_SECONDS = 0.05


class _State:
    stop = False


def _on_stop(signum: int, frame: object) -> None:
    _State.stop = True
    sv._S.cancel = True  # what sv's waits read as "cancel requested"


def _end_point(run_dir: str, state: str, reason: str) -> None:
    """Record the outcome of a point that never started (first writer wins)."""
    now = time.time()
    outcome = {
        "schema": sv.SCHEMA,
        "state": state,
        "exit_code": None,
        "reason": reason,
        "started_at": None,
        "ended_at": now,
        "cancel_requested": state == sv.CANCELLED,
        "recorded_by": "pool",
    }
    sv.write_json(os.path.join(run_dir, sv.RESULT), outcome, durable=True, exclusive=True)


def point_env(run_dir: str) -> dict[str, str]:
    """The point's own variables (from its ``pooled.json``) on top of the pool's env."""
    pooled = sv.read_json(os.path.join(run_dir, POOLED)) or {}
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (pooled.get("env") or {}).items()})
    return env


def _spawn(run_dir: str) -> int:
    """Start the point's supervisor, as the backend would for a job submitted alone."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")
    log = os.path.join(run_dir, sv.LOGS, sv.SUPERVISOR_LOG)
    pid = sv.spawn_detached(script, run_dir, point_env(run_dir), log)
    pids = sv.started_record(pid)
    sv.write_json(os.path.join(run_dir, sv.PIDS), pids, durable=False, exclusive=True)
    return pid


def _free_slots(running: dict[str, int]) -> None:
    """Forget the points that ended (their result exists, or their supervisor is gone)."""
    for run_dir, pid in list(running.items()):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done or os.path.exists(os.path.join(run_dir, sv.RESULT)):
            del running[run_dir]


def _wait_for_an_end(running: dict[str, int]) -> None:
    """Sleep until one running point's supervisor exits (or a short while passes)."""
    fds: list[int] = []
    try:
        for pid in running.values():
            fds.append(os.pidfd_open(pid))
    except (AttributeError, OSError):  # no pidfds here, or that supervisor is already gone
        for fd in fds:
            os.close(fd)
        time.sleep(SLOT_POLL_SECONDS)
        return
    try:
        select.select(fds, [], [], SLOT_WAIT_SECONDS)
    except InterruptedError:
        pass
    finally:
        for fd in fds:
            os.close(fd)


def run_pool(array_dir: str, pool: dict[str, Any], pids: dict[str, Any]) -> dict[str, Any]:
    points = [str(p) for p in pool.get("points") or []]
    throttle = max(1, int(pool.get("throttle") or 1))
    blocked = sv._wait_for_release(array_dir, pool, pids)
    if blocked is None and (_State.stop or sv._cancel_requested(array_dir)):
        blocked = sv._outcome(sv.CANCELLED, None, "cancelled before it started")
    if blocked is not None:
        for run_dir in points:
            _end_point(run_dir, blocked["state"], blocked["reason"])
        return {"started": 0, "skipped": len(points), "reason": blocked["reason"]}
    pids.update(phase="running", reason=None, started_at=time.time())
    sv.write_json(os.path.join(array_dir, sv.PIDS), pids, durable=False)
    running: dict[str, int] = {}
    started = skipped = 0
    for index, run_dir in enumerate(points):
        while True:
            _free_slots(running)
            if _State.stop or sv._cancel_requested(array_dir) or len(running) < throttle:
                break
            _wait_for_an_end(running)
        if _State.stop or sv._cancel_requested(array_dir):
            for rest in points[index:]:
                _end_point(rest, sv.CANCELLED, "cancelled before it started (the sweep stopped)")
            skipped += len(points) - index
            break
        if os.path.exists(os.path.join(run_dir, sv.RESULT)):
            skipped += 1  # ended before its turn (cancelled on its own)
            continue
        if os.path.exists(os.path.join(run_dir, sv.CANCEL)):
            _end_point(run_dir, sv.CANCELLED, "cancelled before it started")
            skipped += 1
            continue
        try:
            running[run_dir] = _spawn(run_dir)
            started += 1
        except OSError as exc:
            _end_point(run_dir, sv.FAILED, f"not run: cannot start its supervisor: {exc}")
            skipped += 1
    return {"started": started, "skipped": skipped, "reason": None}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: pool.py ARRAY_DIR", file=sys.stderr)
        return 2
    array_dir = os.path.abspath(args[0])
    os.closerange(3, 1 << 16)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_stop)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # started blocked, like the supervisor
    os.chdir("/")
    pids: dict[str, Any] = {"schema": sv.SCHEMA, "boot_id": sv.boot_id(), "child": None}
    pids["supervisor"] = sv.identity(os.getpid())
    started_at = time.time()
    try:
        pool = sv.read_json(os.path.join(array_dir, POOL))
        if pool is None:
            raise FileNotFoundError(f"{array_dir}/{POOL} is missing")
        outcome = run_pool(array_dir, pool, pids)
        state = sv.SUCCEEDED if outcome["reason"] is None else sv.FAILED
    except BaseException as exc:  # record something; the points left say "not run" below
        print(f"pool error: {exc!r}", file=sys.stderr)
        outcome, state = {"reason": f"pool error: {type(exc).__name__}: {exc}"}, sv.FAILED
    result = {
        "schema": sv.SCHEMA,
        "state": state,
        "exit_code": 0 if state == sv.SUCCEEDED else None,
        "started_at": started_at,
        "ended_at": time.time(),
        **outcome,
    }
    sv.write_json(os.path.join(array_dir, sv.RESULT), result, durable=True, exclusive=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
