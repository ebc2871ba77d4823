"""Supervisor of one local job, and the run-directory protocol it shares with the backend.

Why a separate process: the job must outlive the launcher (a TUI that is closed, a CLI that
returns), and someone has to be its parent to learn the exit code. The supervisor is that
parent. It runs detached in its own session, waits for dependencies, starts the job in a
process group of its own, forwards cancellation, and records the outcome in ``result.json``.

Why stdlib only and no package imports: the backend starts this file as
``python -I -S <this file> <run_dir>`` so that it starts in ~10 ms and that neither the
user's environment (``PYTHONPATH``, ``PYTHONHOME``…), nor the job's working directory, nor
site-packages can change what runs here. ``python -m backends.local.supervisor <run_dir>``
works too (handy by hand). The backend imports the same helpers (:func:`read_status` …), so
there is exactly one reading of the files below.

Files in a run directory (the job dir the engine gave us):

``spec.json``         what to run: argv, workdir, non-secret env, dependencies, grace (launcher)
``pid.json``          supervisor and child pid + start time + boot id, and the phase
``cancel-requested``  marker written by ``cancel`` before any signal is sent
``released``          written by the launcher once it recorded the job (held jobs only)
``result.json``       exit code, state, times, reason; written once, atomically, durably
``logs/stdout.log``   the child's stdout (the child writes directly, O_APPEND)
``logs/stderr.log``   the child's stderr
``logs/supervisor.log`` the supervisor's own stderr (empty unless something broke)

Secrets reach the child only through the environment the supervisor inherits; they are
never written to any of these files.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

TYPE_CHECKING = False  # typing costs ~3 ms of start-up; annotations are strings here anyway
if TYPE_CHECKING:
    from typing import Any, TypeGuard

SCHEMA = 1
SPEC = "spec.json"
PIDS = "pid.json"
RESULT = "result.json"
CANCEL = "cancel-requested"
RELEASED = "released"
#: In a point of a local sweep started by the sweep's pool (backends/local/pool.py).
POOLED = "pooled.json"
LOGS = "logs"
STREAMS = {"stdout": "stdout.log", "stderr": "stderr.log"}
SUPERVISOR_LOG = "supervisor.log"

#: How often a waiting supervisor re-reads its dependencies' state.
DEPENDENCY_POLL_SECONDS = 0.05
#: How long a held job waits for its launcher's release before giving up (not running).
HOLD_TIMEOUT_SECONDS = 120.0
#: After the job's main process ended, how long leftovers in its group get after SIGTERM.
LEFTOVER_GRACE_SECONDS = 2.0

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

# States, as the strings of core.engine.states.JobState (not imported: stdlib only here).
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
RUNNING = "RUNNING"
PENDING = "PENDING"
SUBMITTED = "SUBMITTED"
UNKNOWN = "UNKNOWN"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})

#: Signals reset to their default action in the job, whatever the launcher inherited
#: (Python ignores SIGPIPE; ``nohup`` ignores SIGHUP; a job must start from a clean slate).
_RESET_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGPIPE", "SIGXFSZ", "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1",
        "SIGUSR2", "SIGCHLD", "SIGALRM", "SIGTSTP", "SIGTTIN", "SIGTTOU",
    )
    if hasattr(signal, name)
)  # fmt: skip


# --------------------------------------------------------------------------- file helpers


def write_json(path: str, data: dict[str, Any], *, durable: bool, exclusive: bool = False) -> bool:
    """Write ``data`` atomically (temp file + rename); the file is private (0600).

    ``durable`` adds fsync of the file and its directory (for records that must survive a
    crash: ``result.json``, ``spec.json``). ``exclusive`` creates the file only if it does not
    exist yet (``link`` instead of ``rename``) and returns False when someone was first; it
    settles races between the launcher and the supervisor without a lock.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    payload = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:  # no hard links here (some FUSE/SMB mounts): nearly as good
                if os.path.exists(path):
                    return False
                os.replace(tmp, path)
                tmp = ""
        else:
            os.replace(tmp, path)
            tmp = ""
    finally:
        if tmp:
            os.unlink(tmp)
    if durable:
        dfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return True


def read_json(path: str) -> dict[str, Any] | None:
    """The parsed file, or None when it does not exist. A damaged file raises ValueError."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


# --------------------------------------------------------------------------- processes

_boot_id: str | None = None


def boot_id() -> str:
    """This boot's id: a pid recorded before a reboot never names a live job."""
    global _boot_id
    if _boot_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _boot_id = f.read().strip()
        except OSError:
            _boot_id = ""
    return _boot_id


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/<pid>/stat from field 3 (the state) on, or None if the process is gone.

    Fields are counted after the last ``)`` because the command name may hold spaces and
    parentheses: then index 0 is the state, 1 the parent, 2 the process group, 19 the start.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, pgrp, start time in clock ticks) of ``pid`` from /proc, or None if gone."""
    fields = _stat_fields(pid)
    try:
        return fields[0].decode(), int(fields[2]), int(fields[19])  # type: ignore[index]  # None: TypeError, caught
    except (IndexError, TypeError, ValueError):
        return None


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, pgrp) of every live (non-zombie) descendant of ``root``, from /proc's parent links.

    With the supervisor as child subreaper (see :func:`become_subreaper`), this includes the
    job's processes that left its process group (``setsid``) even after their parent exited.
    """
    children: dict[int, list[tuple[int, int, bool]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        try:
            state, ppid, pgrp = fields[0], int(fields[1]), int(fields[2])  # type: ignore[index]  # None: TypeError, caught
        except (IndexError, TypeError, ValueError):
            continue
        children.setdefault(ppid, []).append((int(name), pgrp, state not in (b"Z", b"X")))
    found: list[tuple[int, int]] = []
    stack = [root]
    while stack:
        for pid, pgrp, live in children.get(stack.pop(), ()):
            if live:
                found.append((pid, pgrp))
            stack.append(pid)  # a zombie's children were re-parented already; harmless
    return found


#: prctl option: orphaned descendants are re-parented to this process instead of init.
PR_SET_CHILD_SUBREAPER = 36


def started_record(pid: int, phase: str = "starting") -> dict[str, Any]:
    """``pid.json`` as its starter writes it right after the spawn (written exclusively: the
    new process may already have written a fuller one, which wins)."""
    return {
        "schema": SCHEMA,
        "boot_id": boot_id(),
        "supervisor": identity(pid) or {"pid": pid, "start": None},
        "child": None,
        "phase": phase,
    }


def spawn_detached(script: str, target: str, env: dict[str, str], log_path: str) -> int:
    """Start ``python -I -S <script> <target>`` in a session of its own, stdin from
    /dev/null and stdout/stderr appended to ``log_path``; its pid. SIGTERM/SIGINT stay
    blocked until the new process installed its handlers (it unblocks them itself), so a
    cancel that arrives while it starts is delivered then, not lost. How the backend starts
    a supervisor and a sweep's pool, and how the pool starts each point's supervisor."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        return os.posix_spawn(
            sys.executable,
            [sys.executable, "-I", "-S", script, target],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
            setsigmask=(signal.SIGTERM, signal.SIGINT),
            setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE),
        )
    finally:
        os.close(log_fd)


def become_subreaper() -> bool:
    """Adopt the job's orphans (Linux), so a process that escaped the job's process group with
    ``setsid`` and lost its parent is still ours to find and stop; False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def identity(pid: int) -> dict[str, Any] | None:
    """What pid.json records for a process: pid and start time (None if it is gone)."""
    stat = proc_stat(pid)
    if stat is None:
        return None
    return {"pid": pid, "start": stat[2]}


def is_alive(record: Any, recorded_boot: str | None) -> TypeGuard[dict[str, Any]]:
    """True if the process recorded in ``record`` is still that same process and not a zombie.

    A pid alone is not enough: pids are reused. The start time (and the boot id) must match.
    A zombie has finished; its parent just has not collected it yet.
    """
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return False
    if recorded_boot and recorded_boot != boot_id():
        return False
    stat = proc_stat(record["pid"])
    return stat is not None and stat[0] not in ("Z", "X") and stat[2] == record.get("start")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``.

    Cheap in the common case: ``killpg(pgid, 0)`` says the group is empty. Otherwise /proc is
    scanned, because zombies count as members for ``killpg`` and an init that never reaps
    (as in some containers) would make a finished group look alive forever.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(name))
    return members


# --------------------------------------------------------------------------- status


class RunStatus:
    """One observation of a run directory (the backend turns it into a StatusReport)."""

    __slots__ = ("ended_at", "exit_code", "reason", "source", "started_at", "state")

    def __init__(
        self,
        state: str,
        source: str,
        exit_code: int | None = None,
        reason: str | None = None,
        *,
        started_at: float | None = None,
        ended_at: float | None = None,
    ) -> None:
        self.state = state
        self.source = source
        self.exit_code = exit_code
        self.reason = reason
        #: When the job's process started and ended (result.json / pid.json), if known.
        self.started_at = started_at
        self.ended_at = ended_at

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"RunStatus({self.state}, {self.source}, {self.exit_code}, {self.reason!r})"


def _timestamp(value: Any) -> float | None:
    """A time read from our own files, or None if it is not a plausible Unix time."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 < value < 1e11 else None


def _status_from_result(result: dict[str, Any]) -> RunStatus:
    state = result.get("state")
    exit_code = result.get("exit_code")
    reason = result.get("reason")
    times = {
        "started_at": _timestamp(result.get("started_at")),
        "ended_at": _timestamp(result.get("ended_at")),
    }
    if state not in TERMINAL:
        return RunStatus(UNKNOWN, "local:result.json", None, f"damaged result.json: {state!r}")
    if state == SUCCEEDED and exit_code != 0:
        # Never report success without a recorded exit code 0.
        return RunStatus(
            FAILED, "local:result.json", exit_code, "success recorded without exit 0", **times
        )
    return RunStatus(state, "local:result.json", exit_code, reason, **times)


def _load_result(run_dir: str) -> dict[str, Any] | None:
    try:
        return read_json(os.path.join(run_dir, RESULT))
    except ValueError:
        return {"state": "damaged"}


def read_status(run_dir: str) -> RunStatus:
    """The job's state from its files and /proc only (no subprocess, no signals).

    Exact after a restart of the launcher: everything needed is on disk or in /proc.
    """
    result = _load_result(run_dir)
    if result is not None:
        return _status_from_result(result)
    try:
        pids = read_json(os.path.join(run_dir, PIDS))
    except ValueError as exc:
        return RunStatus(UNKNOWN, "local", None, f"damaged pid.json ({exc})")
    except OSError as exc:
        return RunStatus(UNKNOWN, "local", None, f"no such job ({exc.strerror})")
    if pids is None:
        return _pooled_status(run_dir) or RunStatus(UNKNOWN, "local", None, "no such job")
    recorded_boot = pids.get("boot_id")
    if is_alive(pids.get("supervisor"), recorded_boot):
        phase = pids.get("phase")
        if phase == "waiting":
            return RunStatus(PENDING, "local:proc", None, pids.get("reason"))
        if phase == "held":
            return RunStatus(SUBMITTED, "local:proc", None, pids.get("reason"))
        if phase in ("running", "finishing"):
            return RunStatus(RUNNING, "local:proc", started_at=_timestamp(pids.get("started_at")))
        return RunStatus(SUBMITTED, "local:proc", None, "starting")
    # The supervisor is gone; it may have written its result just now.
    result = _load_result(run_dir)
    if result is not None:
        return _status_from_result(result)
    if is_alive(pids.get("child"), recorded_boot):
        return RunStatus(
            RUNNING,
            "local:proc",
            None,
            "supervisor gone: the exit code will not be recorded",
            started_at=_timestamp(pids.get("started_at")),
        )
    if os.path.exists(os.path.join(run_dir, CANCEL)):
        return RunStatus(
            CANCELLED, "local:proc", None, "cancelled; exited without recording an exit code"
        )
    return RunStatus(FAILED, "local:proc", None, "process exited without recording an exit code")


def _pooled_status(run_dir: str) -> RunStatus | None:
    """A sweep point that its pool has not started yet (None: not a pooled point).

    PENDING while the pool lives; once the pool is gone without starting it (killed, the
    machine rebooted), the point was never run, which is what it then says.
    """
    try:
        pooled = read_json(os.path.join(run_dir, POOLED))
    except ValueError as exc:
        return RunStatus(UNKNOWN, "local", None, f"damaged {POOLED} ({exc})")
    if pooled is None:
        return None
    try:
        pool = read_json(os.path.join(str(pooled.get("pool") or "/nonexistent"), PIDS)) or {}
    except (ValueError, OSError):
        pool = {}
    if is_alive(pool.get("supervisor"), pool.get("boot_id")):
        if pool.get("phase") == "held":
            return RunStatus(
                SUBMITTED, "local:proc", None, "waiting for the launcher to record the sweep"
            )
        return RunStatus(
            PENDING,
            "local:proc",
            None,
            f"waiting for a free slot (this sweep runs at most {pooled.get('throttle')} at once)",
        )
    # The pool is gone; it may have started this point, or recorded its end, just now.
    if os.path.exists(os.path.join(run_dir, PIDS)) or os.path.exists(os.path.join(run_dir, RESULT)):
        return read_status(run_dir)
    if os.path.exists(os.path.join(run_dir, CANCEL)):
        return RunStatus(CANCELLED, "local:proc", None, "cancelled before it started")
    return RunStatus(
        FAILED, "local:proc", None, "not run: the sweep's pool process ended before starting it"
    )


# --------------------------------------------------------------------------- supervisor


class _Supervision:
    """Mutable state shared between the main flow and the signal handlers."""

    cancel = False
    child: int | None = None
    forwarded = False
    escalated = False
    grace = 5.0


_S = _Supervision()


def _killpg(pgid: int, signum: int) -> bool:
    """Signal a process group; False if it no longer exists or none of it may be signalled
    (neither is an error here: the supervisor must always get to write its result)."""
    try:
        os.killpg(pgid, signum)
    except OSError:
        return False
    return True


def _signal_job(pgid: int, signum: int) -> bool:
    """Signal the job's process group, then each of our descendants outside it (processes
    that left with ``setsid``), each process once; False if there was nobody to signal."""
    hit = _killpg(pgid, signum)
    for pid, pgrp in descendants(os.getpid()):
        if pgrp != pgid:
            try:
                os.kill(pid, signum)
                hit = True
            except OSError:  # gone, or another user's now (e.g. sudo): not ours to stop
                pass
    return hit


def _forward_cancel() -> None:
    """SIGTERM the job's processes once, and arm SIGKILL for when the grace period ends."""
    if _S.child is None or _S.forwarded:
        return
    _S.forwarded = True
    if _signal_job(_S.child, signal.SIGTERM):
        signal.setitimer(signal.ITIMER_REAL, max(_S.grace, 0.001))


def _on_cancel(signum: int, frame: object) -> None:
    _S.cancel = True
    _forward_cancel()


def _on_alarm(signum: int, frame: object) -> None:
    if _S.child is not None:
        _S.escalated = _signal_job(_S.child, signal.SIGKILL)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _cancel_requested(run_dir: str) -> bool:
    return _S.cancel or os.path.exists(os.path.join(run_dir, CANCEL))


def _outcome(state: str, exit_code: int | None, reason: str | None) -> dict[str, Any]:
    return {"state": state, "exit_code": exit_code, "reason": reason}


def _dependency_name(dep: dict[str, Any]) -> str:
    return str(dep.get("name") or dep.get("job_dir"))


def _wait_for_dependencies(
    run_dir: str, spec: dict[str, Any], pids: dict[str, Any]
) -> dict[str, Any] | None:
    """Block until every dependency SUCCEEDED; return an outcome if the job must not run."""
    for dep in spec.get("dependencies") or []:
        name = _dependency_name(dep)
        announced = False
        while True:
            if _cancel_requested(run_dir):
                return _outcome(CANCELLED, None, "cancelled while waiting for dependencies")
            status = read_status(str(dep["job_dir"]))
            if status.state == SUCCEEDED:
                break
            if status.state in TERMINAL:
                return _outcome(CANCELLED, None, f"dependency {name} ended {status.state}")
            if status.state == UNKNOWN:
                return _outcome(CANCELLED, None, f"dependency {name} is unknown ({status.reason})")
            if not announced:
                pids.update(phase="waiting", reason=f"waiting for dependency {name}")
                write_json(os.path.join(run_dir, PIDS), pids, durable=False)
                announced = True
            time.sleep(DEPENDENCY_POLL_SECONDS)
    return None


def _wait_for_release(
    run_dir: str, spec: dict[str, Any], pids: dict[str, Any]
) -> dict[str, Any] | None:
    """A held job starts only once its launcher recorded it (``released`` exists).

    Why: a launcher killed between submitting and recording would otherwise leave a job
    running that its store does not know. If the launcher is gone (or silent for the hold's
    timeout) first, the job is not run and the result says why.
    """
    hold = spec.get("hold")
    if not isinstance(hold, dict):
        return None
    released = os.path.join(run_dir, RELEASED)
    launcher = hold.get("launcher")
    deadline = time.monotonic() + float(hold.get("timeout_seconds") or HOLD_TIMEOUT_SECONDS)
    pids.update(phase="held", reason="waiting for the launcher to record the job")
    write_json(os.path.join(run_dir, PIDS), pids, durable=False)
    interval = 0.002
    while not os.path.exists(released):
        if _cancel_requested(run_dir):
            return _outcome(CANCELLED, None, "cancelled before it started")
        if not is_alive(launcher, hold.get("boot_id")) and not os.path.exists(released):
            return _outcome(
                FAILED,
                None,
                "not run: the launcher ended before it recorded this job; launch it again",
            )
        if time.monotonic() > deadline:
            return _outcome(FAILED, None, "not run: the launcher did not confirm the job in time")
        time.sleep(interval)
        interval = min(interval * 2, 0.05)
    return None


def _open_log(run_dir: str, stream: str) -> int:
    path = os.path.join(run_dir, LOGS, STREAMS[stream])
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    return os.open(path, flags, PRIVATE_FILE)


def _note(fd: int, message: str) -> None:
    """Put a one-line explanation into the job's stderr log, where the user will look."""
    try:
        os.write(fd, f"nemorun-tui: {message}\n".encode())
    except OSError:
        return


def _leftovers(pgid: int) -> bool:
    """Is anything of the job still alive: in its group, or a descendant that left it?"""
    _reap()
    return bool(group_members(pgid)) or any(
        pgrp != pgid and _may_signal(pid) for pid, pgrp in descendants(os.getpid())
    )


def _may_signal(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _reap() -> None:
    """Collect adopted orphans that have exited (as subreaper they are ours to wait for)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _clean_group(pgid: int) -> bool:
    """Stop whatever the job left behind (its group, and descendants that left it with
    ``setsid``); True if something was."""
    if not _leftovers(pgid) or not _signal_job(pgid, signal.SIGTERM):
        return False
    deadline = time.monotonic() + min(_S.grace, LEFTOVER_GRACE_SECONDS)
    while _leftovers(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _leftovers(pgid):
        _signal_job(pgid, signal.SIGKILL)
        _reap()
    return True


def _wait_for(child: int) -> int:
    """Wait for the job's main process and return its wait status, reaping on the way the
    orphans we adopted as subreaper (else each would stay a zombie until the job ends)."""
    while True:
        pid, status = os.waitpid(-1, 0)  # signal handlers run; PEP 475 retries the wait
        if pid == child:
            return status


def _run(run_dir: str, spec: dict[str, Any], pids: dict[str, Any]) -> dict[str, Any]:
    """Wait for dependencies, run the job, and say how it ended (the result without times)."""
    blocked = _wait_for_release(run_dir, spec, pids) or _wait_for_dependencies(run_dir, spec, pids)
    if blocked is not None:
        return blocked
    if _cancel_requested(run_dir):
        return _outcome(CANCELLED, None, "cancelled before it started")
    argv = [str(a) for a in spec.get("argv") or []]
    out_fd = _open_log(run_dir, "stdout")
    err_fd = _open_log(run_dir, "stderr")
    try:
        if not argv:
            return _outcome(FAILED, None, "empty command")
        workdir = str(spec.get("workdir") or run_dir)
        try:
            os.chdir(workdir)
        except OSError as exc:
            _note(err_fd, f"cannot enter workdir {workdir}: {exc.strerror}")
            return _outcome(FAILED, None, f"cannot enter workdir {workdir}: {exc.strerror}")
        try:
            child = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_fd, 1),
                    (os.POSIX_SPAWN_DUP2, err_fd, 2),
                ],
                setpgroup=0,
                setsigmask=(),
                setsigdef=_RESET_SIGNALS,
            )
        except OSError as exc:
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            _note(err_fd, f"cannot execute {argv[0]!r}: {exc.strerror}")
            return _outcome(FAILED, code, f"cannot execute {argv[0]!r}: {exc.strerror}")
    finally:
        os.close(out_fd)
        os.close(err_fd)
    _S.child = child
    if _S.cancel:  # a SIGTERM that arrived while we were spawning
        _forward_cancel()
    pids.update(child=identity(child), pgid=child, phase="running", reason=None)
    pids["started_at"] = time.time()
    try:  # best effort: failing to announce RUNNING must not orphan a running job
        write_json(os.path.join(run_dir, PIDS), pids, durable=False)
    except OSError as exc:
        print(f"cannot update {PIDS}: {exc}", file=sys.stderr)

    status = _wait_for(child)
    ended_at = time.time()  # the job's end, before leftovers are cleaned and files written
    signal.setitimer(signal.ITIMER_REAL, 0)
    code = os.waitstatus_to_exitcode(status)
    pids["phase"] = "finishing"
    leftovers = _clean_group(child)
    _S.child = None  # its pid and group id may be reused from now on: never signal them again

    cancelled = _cancel_requested(run_dir)
    if code < 0:
        signum = -code
        exit_code = 128 + signum
        how = f"killed by signal {signum} ({_signal_name(signum)})"
    else:
        exit_code = code
        how = f"exited with code {code}"
    if cancelled:
        after = f" after the {_S.grace:g} s grace period" if _S.escalated else ""
        outcome = _outcome(CANCELLED, exit_code, f"cancelled; {how}{after}")
    elif code == 0:
        outcome = _outcome(SUCCEEDED, 0, None)
    else:
        outcome = _outcome(FAILED, exit_code, how)
    if leftovers:
        outcome["note"] = "processes left in the job's group were terminated"
    outcome["ended_at"] = ended_at
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Supervise the job in ``argv[0]`` (its run directory) until it has a result."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: supervisor.py RUN_DIR", file=sys.stderr)
        return 2
    run_dir = os.path.abspath(args[0])
    # Nothing inherited from the launcher beyond stdio may leak into a long-lived job.
    os.closerange(3, 1 << 16)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_cancel)
    signal.signal(signal.SIGALRM, _on_alarm)
    # The launcher starts us with SIGTERM/SIGINT blocked, so a cancel that arrives while the
    # interpreter is still starting waits (pending) for the handler instead of killing us
    # before anything could be recorded. Unblocking delivers it now.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    become_subreaper()
    started = time.time()
    pids: dict[str, Any] = {"schema": SCHEMA, "boot_id": boot_id(), "child": None}
    pids["supervisor"] = identity(os.getpid())
    try:
        os.chdir("/")  # do not pin the launcher's cwd while waiting for dependencies
        spec = read_json(os.path.join(run_dir, SPEC))
        if spec is None:
            raise FileNotFoundError(f"{run_dir}/{SPEC} is missing")
        _S.grace = float(spec.get("cancel_grace_seconds", 5.0))
        outcome = _run(run_dir, spec, pids)
    except BaseException as exc:  # record *something*: a silent death reads as FAILED anyway
        outcome = _outcome(FAILED, None, f"supervisor error: {type(exc).__name__}: {exc}")
        print(f"supervisor error: {exc!r}", file=sys.stderr)
        if _S.child is not None:  # nobody would supervise it any more: stop it
            _signal_job(_S.child, signal.SIGKILL)
    outcome.setdefault("ended_at", time.time())  # a job that never ran ends now
    outcome.update(schema=SCHEMA, supervisor_started_at=started)
    outcome["started_at"] = pids.get("started_at")
    outcome["cancel_requested"] = _cancel_requested(run_dir)
    write_json(os.path.join(run_dir, RESULT), outcome, durable=True, exclusive=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
