"""Render the sbatch script and command for one job, with no side effects (dry run = submit).

Two quoting worlds meet here and each gets its own rule:

* ``#SBATCH`` directives are parsed by sbatch itself, which understands double quotes only.
  A value made of safe characters is written bare, any other is double-quoted, and a value
  that cannot be expressed (a newline or a double quote) is refused instead of mangled.
* The body is bash: every argv element and every environment value goes through
  :func:`shlex.quote`. Only ``setup_lines`` is shell code by definition and is kept verbatim.

Secret environment values never appear: they are passed to ``sbatch --export=ALL`` through
the environment of the sbatch process.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import string
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any

from core.engine import launch_guard
from core.engine.executors import LocalTunnel, SlurmExecutor, SSHTunnel
from core.engine.protocol import BackendError, JobSpec

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_@%+=:,./~\-\[\]]+$")
_OPTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_PART = re.compile(r"[^A-Za-z0-9._-]+")


class _Template(string.Template):
    """``@{name}`` placeholders: ``$`` stays bash's."""

    delimiter = "@"


def _template() -> _Template:
    text = resources.files("backends.slurm").joinpath("sbatch.sh.tmpl").read_text()
    return _Template(text)


def directive_value(name: str, value: Any) -> str:
    """A value as sbatch's directive parser will read it back unchanged."""
    text = str(value)
    if "\n" in text or "\r" in text or '"' in text:
        raise BackendError(f"--{name} value {text!r} contains a newline or a double quote")
    if _SAFE_VALUE.match(text):
        return text
    return f'"{text}"'


def path_part(text: str) -> str:
    """A name safe as one path component (experiment ids and job names are already, mostly)."""
    cleaned = _PATH_PART.sub("_", text).strip(".") or "_"
    return cleaned


def job_key_file(job_dir: str, job_id: str, stream: str) -> str:
    """Where Slurm writes a job's (or array task's) stdout/stderr."""
    ext = "out" if stream == "stdout" else "err"
    return posixpath.join(job_dir, f"slurm-{job_id}.{ext}")


def exit_code_file(job_dir: str, job_id: str) -> str:
    return posixpath.join(job_dir, f"exitcode-{job_id}")


@dataclass
class Rendered:
    """Everything a submission writes and runs."""

    job_dir: str
    script_path: str
    script: str
    sbatch_argv: list[str]
    marker_path: str
    task_upload: tuple[str, str] | None  # (local task file, remote path)
    argv: list[str]


def remote_job_dir(executor: SlurmExecutor, job: JobSpec) -> str:
    """``<tunnel.job_dir>/<experiment>/<job>``; on a login node without one, the store's dir."""
    base = executor.tunnel.job_dir or executor.job_dir
    if base:
        return posixpath.join(base, path_part(job.experiment_id), path_part(job.job_name))
    if isinstance(executor.tunnel, LocalTunnel):
        return job.job_dir
    raise BackendError(
        "SSHTunnel needs job_dir: a directory on the cluster for scripts and logs "
        "(e.g. SSHTunnel(host=..., job_dir='/scratch/me/nemorun'))"
    )


def _directives(executor: SlurmExecutor, job: JobSpec, job_dir: str) -> list[tuple[str, Any]]:
    pattern = "%A_%a" if executor.array else "%j"
    opts: list[tuple[str, Any]] = [
        ("job-name", job.run_tag),
        ("comment", f"nemorun:{job.experiment_id}/{job.job_name}"),
        ("chdir", job_dir),
        ("output", posixpath.join(job_dir, f"slurm-{pattern}.out")),
        ("error", posixpath.join(job_dir, f"slurm-{pattern}.err")),
        # A requeued job appends to its logs, so offsets already read stay valid.
        ("open-mode", "append"),
    ]
    simple = [
        ("account", executor.account),
        ("partition", executor.partition),
        ("time", executor.time),
        ("nodes", executor.nodes),
        ("ntasks-per-node", executor.ntasks_per_node),
        ("cpus-per-task", executor.cpus_per_task),
        ("gpus-per-node", executor.gpus_per_node),
        ("gpus-per-task", executor.gpus_per_task),
        ("mem", executor.mem),
        ("qos", executor.qos),
        ("constraint", executor.constraint),
        ("exclude", executor.exclude),
        ("gres", executor.gres),
        ("array", executor.array),
    ]
    opts.extend((k, v) for k, v in simple if v not in (None, ""))
    if executor.exclusive:
        opts.append(("exclusive", True))
    for key, value in executor.additional_parameters.items():
        name = str(key).replace("_", "-")
        if not _OPTION_NAME.match(name):
            raise BackendError(f"additional_parameters: invalid sbatch option name {key!r}")
        if value is None or value is False:
            continue
        opts.append((name, value))
    return opts


def _uses_srun(executor: SlurmExecutor) -> bool:
    return bool(
        executor.nodes > 1
        or executor.ntasks_per_node > 1
        or executor.container_image
        or executor.srun_args
    )


def render(executor: SlurmExecutor, job: JobSpec, *, job_dir: str | None = None) -> Rendered:
    """The script, the sbatch command and the files, for ``job``; pure."""
    job_dir = job_dir or remote_job_dir(executor, job)
    argv = list(job.argv)
    if executor.python and argv and argv[0] == sys.executable:
        # The engine names this machine's interpreter; the cluster's may live elsewhere.
        argv[0] = executor.python
    # Packaged code is extracted into <job_dir>/code (see SlurmBackend.submit).
    workdir = code_dir(job_dir) if job.archive else (job.workdir or job_dir)
    upload = None
    if job.task_file:
        remote_task = posixpath.join(job_dir, posixpath.basename(job.task_file))
        argv = [remote_task if a == job.task_file else a for a in argv]
        upload = (job.task_file, remote_task)

    lines = []
    for name, value in _directives(executor, job, job_dir):
        if value is True:
            lines.append(f"#SBATCH --{name}")
        else:
            lines.append(f"#SBATCH --{name}={directive_value(name, value)}")

    env = {
        **launch_guard.job_env(),  # the job's depth, also for a JobSpec not built by the engine
        **executor.env_vars,
        **job.env,
        "NEMORUN_EXPERIMENT_ID": job.experiment_id,
        "NEMORUN_JOB_NAME": job.job_name,
        "NEMORUN_RUN_TAG": job.run_tag,
        "NEMORUN_JOB_DIR": job_dir,
    }
    exports = []
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise BackendError(f"invalid environment variable name {name!r}")
        if name in job.secret_env:
            continue  # never on disk
        exports.append(f"export {name}={shlex.quote(str(value))}")

    command = argv
    launcher = getattr(executor, "launcher", None)
    if launcher is not None:
        command_text = _launch_lines(executor, job, argv, job_dir, workdir)
    elif _uses_srun(executor):
        command = [*_srun_prefix(executor, workdir), *argv]
    if not command:
        raise BackendError("the job has no command (empty argv)")
    if launcher is None:
        command_text = shlex.join(str(a) for a in command)

    script_path = posixpath.join(job_dir, f"sbatch-{path_part(job.run_tag)}.sh")
    sbatch = ["sbatch", "--parsable", "--export=ALL"]
    if job.held:
        sbatch.append("--hold")  # released once the handle is recorded (core.engine.launch_window)
    deps = [h.job_id for h in job.dependencies]
    if deps:
        sbatch.append(f"--dependency={executor.dependency_type}:{':'.join(deps)}")
        # A dependent of a failed job is cancelled (with a reason) instead of pending forever,
        # even on clusters without DependencyParameters=kill_invalid_depend.
        sbatch.append("--kill-on-invalid-dep=yes")
    sbatch.append(script_path)

    script = _template().substitute(
        job_name=job.job_name.replace("\n", " "),
        experiment_id=job.experiment_id.replace("\n", " "),
        run_tag=job.run_tag.replace("\n", " "),
        submit_command=shlex.join(sbatch),
        directives="\n".join(lines),
        env_exports="\n".join(exports),
        q_job_dir=shlex.quote(job_dir),
        q_workdir=shlex.quote(workdir),
        setup_lines=(executor.setup_lines or "").rstrip("\n"),
        command=command_text,
    )
    return Rendered(
        job_dir=job_dir,
        script_path=script_path,
        script=script,
        sbatch_argv=sbatch,
        marker_path=posixpath.join(job_dir, f".submitted-{path_part(job.run_tag)}"),
        task_upload=upload,
        argv=argv,
    )


#: Placeholder for the rendezvous endpoint: the script computes it on the first node.
_RDZV_PLACEHOLDER = "NEMORUN_RDZV_ENDPOINT_PLACEHOLDER"
#: Rank log files of the launcher, per node, inside the job dir.
RANK_LOG_DIR = "torchrun"


def _srun_prefix(executor: SlurmExecutor, workdir: str) -> list[str]:
    srun = ["srun", *map(str, executor.srun_args)]
    if executor.container_image:
        srun.append(f"--container-image={executor.container_image}")
        if executor.container_mounts:
            srun.append(f"--container-mounts={','.join(executor.container_mounts)}")
        srun.append("--container-workdir=" + workdir)
    return srun


def _launch_lines(
    executor: SlurmExecutor, job: JobSpec, argv: list[str], job_dir: str, workdir: str
) -> str:
    """The rendezvous lines and the ``srun <launcher>`` line (core.launchers).

    One launcher per node (``srun --ntasks-per-node=1``), each starting
    ``nproc_per_node`` ranks; the rendezvous is on the first host of
    ``scontrol show hostnames $SLURM_JOB_NODELIST`` (its NodeAddr when Slurm has one), on a
    free port picked on that host (the batch script runs there) unless the launcher names one.
    Every word is quoted except the endpoint, a variable the script sets itself.
    """
    from core.launchers import RANK_PREFIX_TEMPLATE, LauncherError, launch_argv, ranks_per_node

    launcher = executor.launcher
    python = executor.python or sys.executable
    if argv and argv[0] in (executor.python, sys.executable):
        python = argv[0]
    nproc = ranks_per_node(launcher, executor.ntasks_per_node)
    try:
        line = launch_argv(
            launcher,
            argv,
            python=python,
            nnodes=executor.nodes,
            nproc_per_node=nproc,
            rdzv_endpoint=_RDZV_PLACEHOLDER,
            rdzv_id=job.run_tag,
            log_dir=posixpath.join(job_dir, RANK_LOG_DIR),
        )
    except LauncherError as exc:
        raise BackendError(f"job {job.job_name!r}: {exc}") from None
    cpus = nproc * (executor.cpus_per_task or 1)
    srun = [
        *_srun_prefix(executor, workdir),
        f"--nodes={executor.nodes}",
        f"--ntasks={executor.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={cpus}",
    ]
    endpoint_flag = f"--rdzv-endpoint={_RDZV_PLACEHOLDER}"
    words = [shlex.quote(w) for w in srun]
    replaced = False
    for word in line:
        if word == endpoint_flag and not replaced:  # the launcher's own flag, never user args
            words.append('"--rdzv-endpoint=$NEMORUN_RDZV_ENDPOINT"')
            replaced = True
        else:
            words.append(shlex.quote(word))
    port = (
        str(launcher.rdzv_port)
        if launcher.rdzv_port
        else "$(" + shlex.join([python, "-c", _FREE_PORT]) + ")"
    )
    return "\n".join(
        [
            "# --- rendezvous: the first host of the allocation, a free port there",
            'NEMORUN_RDZV_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            'nemorun_addr=$(scontrol show node "$NEMORUN_RDZV_HOST" -o 2>/dev/null'
            " | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p')",
            "NEMORUN_RDZV_HOST=${nemorun_addr:-$NEMORUN_RDZV_HOST}",
            f"NEMORUN_RDZV_PORT={port}",
            'export NEMORUN_RDZV_ENDPOINT="$NEMORUN_RDZV_HOST:$NEMORUN_RDZV_PORT"',
            # Every rank's line arrives rank-prefixed in this job's log (core.launchers).
            f"export TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE={shlex.quote(RANK_PREFIX_TEMPLATE)}",
            'echo "nemorun-tui: rendezvous at $NEMORUN_RDZV_ENDPOINT" >&2',
            " ".join(words),
        ]
    )


_FREE_PORT = 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'


def code_dir(job_dir: str) -> str:
    """Where a job's packaged code is extracted on the cluster."""
    return posixpath.join(job_dir, "code")


def package_cache_dir(executor: SlurmExecutor, job_dir: str) -> str:
    """The cluster-side content-addressed archive cache: ``<job_dir root>/.packages``."""
    base = executor.tunnel.job_dir or executor.job_dir
    if base:
        return posixpath.join(base, ".packages")
    return posixpath.join(job_dir, ".packages")


def describe_tunnel(executor: SlurmExecutor) -> str:
    t = executor.tunnel
    if isinstance(t, SSHTunnel):
        return f"over SSH to {t.target().removeprefix('ssh://')}"
    return "on this login node"
