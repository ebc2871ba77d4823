"""The job-side wrapper every Ray submission runs (with the cluster's ``python``, stdlib only).

Ray writes a job's stdout and stderr, plus its own preamble lines, into one driver log. The
protocol promises two clean streams, so this wrapper runs the command with both streams
piped and copies every chunk twice: to its own stdout/stderr (the driver log, so Ray's
dashboard still shows everything interleaved) and to ``<name>.out`` / ``<name>.err`` files
next to the driver log (found through ``/proc/self/fd/1``) or at the paths given. The backend
reads those files through the dashboard's log API. It exits with the command's exit code, so
Ray's ``driver_exit_code`` is the job's. The command is a list: no shell re-reads it.

Inlined as ``python -c <this source> <spec json>``: keep it small and dependency free.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def _open_streams(spec: dict) -> list:
    names = []
    base = None
    for key, ext in (("out", ".out"), ("err", ".err")):
        path = spec.get(key)
        if not path:
            if base is None:
                try:
                    base = os.path.dirname(os.readlink("/proc/self/fd/1"))
                except OSError:
                    base = ""
            path = os.path.join(base, spec["name"] + ext) if base.startswith("/") else None
        names.append(path)
    files: list[int | None] = []
    for path in names:
        if path is None:
            files.append(None)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.append(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
    return files


def _wait_for_dependencies(spec: dict) -> str | None:
    """None once every dependency SUCCEEDED; the reason as soon as one did not."""
    pending = list(spec.get("after") or [])
    base = spec.get("dashboard", "").rstrip("/")
    while pending:
        for sid in list(pending):
            url = base + "/api/jobs/" + urllib.parse.quote(sid, safe="")
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    status = json.loads(resp.read()).get("status")
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return f"dependency {sid}: no such Ray job"
                status = None
            except (OSError, ValueError):
                status = None  # the dashboard may be restarting: ask again
            if status == "SUCCEEDED":
                pending.remove(sid)
            elif status in ("FAILED", "STOPPED"):
                return f"dependency {sid} ended {status}"
        if pending:
            time.sleep(0.5)
    return None


def _missing_module(spec: dict, env: dict, cwd: str | None) -> str | None:
    """The spec's message when the module its launcher needs cannot be imported here.

    Checked in a child of this same interpreter (the cluster's ``python``, which the launch
    line runs with) under the job's environment and directory, so a ``PYTHONPATH`` or a
    working_dir that provides the package counts, as it will for the ranks.
    """
    require = spec.get("require") or {}
    module = require.get("module")
    if not module:
        return None
    code = "import importlib.util,sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)"
    try:
        found = subprocess.run(
            [sys.executable, "-c", code, module], env=env, cwd=cwd, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot check for the Python package `{module}` with {sys.executable}: {exc}"
    if found.returncode == 0:
        return None
    return require.get("message") or f"the Python package `{module}` is not importable"


def main() -> int:
    spec = json.loads(sys.argv[1])
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    secret = env.pop("NEMORUN_SECRET_ENV_B64", None)
    if secret:
        env.update(json.loads(base64.b64decode(secret)))
    job_dir = spec.get("job_dir")
    if job_dir:
        try:
            os.makedirs(job_dir, exist_ok=True)
        except OSError as exc:
            sys.stderr.write(f"nemorun: cannot create job dir {job_dir}: {exc}\n")
    for path, data in (spec.get("files") or {}).items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
    cwd = spec.get("cwd") or None
    if cwd and not os.path.isdir(cwd):
        sys.stderr.write(f"nemorun: workdir {cwd} does not exist here; running in {os.getcwd()}\n")
        cwd = None
    missing = _missing_module(spec, env, cwd)
    if missing:  # before waiting on dependencies: nothing could run here anyway
        message = f"nemorun: not run: {missing}\n".encode()
        os.write(2, message)
        err_fd = _open_streams(spec)[1]
        if err_fd is not None:
            os.write(err_fd, message)
        return 127
    blocked = _wait_for_dependencies(spec)
    if blocked:
        os.write(2, (f"nemorun: not run: {blocked}\n").encode())
        return int(spec.get("dependency_exit", 86))
    out_fd, err_fd = _open_streams(spec)
    try:
        child = subprocess.Popen(
            spec["argv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env
        )
    except OSError as exc:
        message = ("nemorun: cannot run {!r}: {}\n".format(spec["argv"][0], exc)).encode()
        os.write(2, message)
        if err_fd is not None:
            os.write(err_fd, message)
        return 127

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    sel = selectors.DefaultSelector()
    assert child.stdout is not None and child.stderr is not None
    sel.register(child.stdout.fileno(), selectors.EVENT_READ, (1, out_fd))
    sel.register(child.stderr.fileno(), selectors.EVENT_READ, (2, err_fd))
    open_pipes = 2
    while open_pipes:
        # Once the command has exited, a process it left behind may hold the pipes open:
        # take what is already written, then stop (the job is the command, not its orphans).
        exited = child.poll() is not None
        ready = sel.select(timeout=0.2 if exited else 1.0)
        if exited and not ready:
            break
        for key, _ in ready:
            data = os.read(key.fd, 65536)
            if not data:
                sel.unregister(key.fd)
                open_pipes -= 1
                continue
            for fd in key.data:
                if fd is not None:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
