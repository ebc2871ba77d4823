"""Launchers: how a job's command becomes N ranks on each node (torchrun, ft_launcher).

A launcher is plain data on an executor profile (``launcher=`` on every executor: Local,
Slurm, Docker, Kubernetes and Ray; NeMo Run's names): ``None`` runs the command as one
process, ``"torchrun"`` / :class:`Torchrun` runs it through ``torch.distributed.run``,
``"ft"`` / :class:`FaultTolerance` through NVIDIA's ``ft_launcher``.

Why one pure function (:func:`launch_argv`) builds the launch line for every backend: the
flags are the same everywhere, only the numbers (nodes, ranks per node) and the rendezvous
endpoint differ, and those are what a backend knows. Local passes ``127.0.0.1:<free port>``,
Slurm a shell reference resolved on the first node of the allocation. The function returns
argv words, never a shell string; a backend that writes a script quotes them itself.

Rank logs: every launch sets ``TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE`` and ``--tee 3``, so
each output line of a rank arrives in the job's own log prefixed ``[rank<N>]:`` (the global
rank). :class:`RankFilter` picks one rank's lines back out; the same works for any backend
whose log is the launcher's stdout.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: Prefix of every rank's output line (``${rank}`` is torch's global rank).
RANK_PREFIX_TEMPLATE = "[rank${rank}]:"
RANK_PREFIX_ENV = {"TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": RANK_PREFIX_TEMPLATE}
_RANK_LINE = re.compile(rb"^\[rank(\d+)\]:")
#: The Python module of torchrun; run with the job's interpreter, never whatever is on PATH.
TORCHRUN_MODULE = "torch.distributed.run"
#: The importable package the fault-tolerant launcher comes from (nvidia-resiliency-ext).
FT_PACKAGE = "nvidia_resiliency_ext"
FT_EXECUTABLE = "ft_launcher"


class LauncherError(ValueError):
    """A launcher is misconfigured or cannot run on its target; said before submitting."""


@dataclass
class Torchrun:
    """``torch.distributed.run`` on every node (NeMo Run's ``run.Torchrun``).

    ``nproc_per_node`` defaults to the executor's ``ntasks_per_node``; ``rdzv_port`` None
    means a free port picked at launch (locally on 127.0.0.1, on Slurm on the first node).
    ``extra_args`` are more torchrun flags, put before the program.
    """

    kind: ClassVar[str] = "torchrun"
    nproc_per_node: int | None = None
    rdzv_backend: str = "c10d"
    rdzv_port: int | None = None
    rdzv_id: str | None = None
    max_restarts: int = 0
    extra_args: list[str] = field(default_factory=list)

    def check(self) -> None:
        """Raise :class:`LauncherError` on values no launch could use."""
        if self.nproc_per_node is not None and (
            isinstance(self.nproc_per_node, bool)
            or not isinstance(self.nproc_per_node, int)
            or self.nproc_per_node < 1
        ):
            raise LauncherError(
                f"nproc_per_node must be a positive integer, not {self.nproc_per_node!r}"
            )
        if self.rdzv_port is not None and not (
            isinstance(self.rdzv_port, int) and 0 < self.rdzv_port < 65536
        ):
            raise LauncherError(f"rdzv_port must be a TCP port (1-65535), not {self.rdzv_port!r}")
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise LauncherError(f"max_restarts must be >= 0, not {self.max_restarts!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(self.rdzv_backend)):
            raise LauncherError(f"rdzv_backend {self.rdzv_backend!r} is not a backend name")
        if not all(isinstance(a, str) for a in self.extra_args):
            raise LauncherError("extra_args must be a list of strings")

    def to_dict(self) -> dict[str, Any]:
        return {"__type__": type(self).__name__, **dataclasses.asdict(self)}

    def program(self, python: str) -> list[str]:
        """The launcher's own command (before its flags)."""
        return [python, "-m", TORCHRUN_MODULE]

    def own_flags(self) -> list[str]:
        """Flags only this launcher kind has (the fault-tolerant one adds its timeouts)."""
        return []


@dataclass
class FaultTolerance(Torchrun):
    """NVIDIA's fault-tolerant launcher (``ft_launcher``, nvidia-resiliency-ext): torchrun's
    arguments plus rank heartbeat timeouts (seconds) and a restart limit.

    Its package must be importable by the job's interpreter on the target; otherwise the
    submit is refused with a clear error before anything runs.
    """

    kind: ClassVar[str] = "ft"
    max_restarts: int = 3
    initial_rank_heartbeat_timeout: float | None = None
    rank_heartbeat_timeout: float | None = None
    rank_termination_signal: str | None = None

    def check(self) -> None:
        super().check()
        for name in ("initial_rank_heartbeat_timeout", "rank_heartbeat_timeout"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise LauncherError(f"{name} must be a positive number of seconds, not {value!r}")
        signame = self.rank_termination_signal
        if signame is not None and not re.fullmatch(r"SIG[A-Z0-9]+", str(signame)):
            raise LauncherError(f"rank_termination_signal {signame!r} is not a signal name")

    def program(self, python: str) -> list[str]:
        # The console script installed next to the job's interpreter (same environment).
        return [os.path.join(os.path.dirname(python), FT_EXECUTABLE)]

    def own_flags(self) -> list[str]:
        flags = []
        if self.initial_rank_heartbeat_timeout is not None:
            flags.append(
                f"--ft-initial-rank-heartbeat-timeout={self.initial_rank_heartbeat_timeout:g}"
            )
        if self.rank_heartbeat_timeout is not None:
            flags.append(f"--ft-rank-heartbeat-timeout={self.rank_heartbeat_timeout:g}")
        if self.rank_termination_signal is not None:
            flags.append(f"--ft-rank-termination-signal={self.rank_termination_signal}")
        return flags


Launcher = Torchrun  # FaultTolerance is a Torchrun too
_KINDS: dict[str, type[Torchrun]] = {"torchrun": Torchrun, "ft": FaultTolerance}
_TYPES: dict[str, type[Torchrun]] = {"Torchrun": Torchrun, "FaultTolerance": FaultTolerance}


def as_launcher(value: Any) -> Torchrun | None:
    """A launcher object from what a profile holds: None, ``"torchrun"``/``"ft"``, an object,
    or its stored / config.toml table (``{"__type__": "Torchrun", ...}`` or ``{"kind": "ft"}``)."""
    if value is None or value == "" or value == "none":
        return None
    if isinstance(value, Torchrun):
        value.check()
        return value
    if isinstance(value, str):
        cls = _KINDS.get(value.lower())
        if cls is None:
            raise LauncherError(f"unknown launcher {value!r} (use None, 'torchrun' or 'ft')")
        return cls()
    if isinstance(value, dict):
        data = dict(value)
        type_name = str(data.pop("__type__", "") or "")
        kind = str(data.pop("kind", "") or "")
        cls = (
            _TYPES.get(type_name)
            or _KINDS.get(kind.lower())
            or (None if type_name or kind else Torchrun)
        )
        if cls is None:
            raise LauncherError(f"unknown launcher type {type_name or kind!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise LauncherError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        launcher = cls(**data)
        launcher.check()
        return launcher
    raise LauncherError(f"launcher must be None, 'torchrun', 'ft' or a Torchrun, not {value!r}")


def launch_argv(
    launcher: Torchrun,
    argv: Sequence[str],
    *,
    python: str,
    nnodes: int,
    nproc_per_node: int,
    rdzv_endpoint: str,
    rdzv_id: str,
    log_dir: str | None = None,
) -> list[str]:
    """The launch line that runs ``argv`` as ``nnodes`` x ``nproc_per_node`` ranks.

    ``argv`` is the job's own command. When it starts with ``python`` (the interpreter the
    launcher runs with), the launcher runs its script or ``-m`` module directly (so every
    rank is that interpreter); any other command is run as is with ``--no-python``.
    ``rdzv_endpoint`` is ``host:port`` as the nodes reach the first one; ``rdzv_id`` names
    the rendezvous (the run tag: unique per submission). Pure: same inputs, same line.
    """
    if not argv:
        raise LauncherError("nothing to launch (empty command)")
    if nnodes < 1 or nproc_per_node < 1:
        raise LauncherError(f"need at least one node and one rank ({nnodes} x {nproc_per_node})")
    line = [
        *launcher.program(python),
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc_per_node}",
        f"--rdzv-backend={launcher.rdzv_backend}",
        f"--rdzv-endpoint={rdzv_endpoint}",
        f"--rdzv-id={launcher.rdzv_id or rdzv_id}",
        f"--max-restarts={launcher.max_restarts}",
        "--tee=3",  # every rank's output reaches the job's log, rank-prefixed
        *launcher.own_flags(),
    ]
    if log_dir:
        line.append(f"--log-dir={log_dir}")
    line.extend(launcher.extra_args)
    program = list(argv)
    if program[0] == python and len(program) > 1:
        if program[1] == "-m" and len(program) > 2:
            line.extend(["-m", *program[2:]])
        elif not program[1].startswith("-"):
            line.extend(program[1:])
        else:  # interpreter flags (e.g. -c): run the interpreter itself
            line.extend(["--no-python", *program])
    else:
        line.extend(["--no-python", *program])
    return line


def single_node_endpoint(launcher: Torchrun) -> str:
    """The rendezvous of a launch on one node where this machine cannot pick the port (a
    container, a Ray node): loopback, and port 0 (the rendezvous store binds a free port
    itself, as ``torchrun --standalone`` does) unless the launcher names one."""
    return f"127.0.0.1:{launcher.rdzv_port or 0}"


def ranks_per_node(launcher: Torchrun, ntasks_per_node: int) -> int:
    """How many ranks each node runs: the launcher's own number, else the executor's."""
    return int(launcher.nproc_per_node or max(1, ntasks_per_node))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def package_importable(launcher: Torchrun, python: str) -> tuple[list[str], str]:
    """The command that checks the launcher's package on the target (exit 0: importable),
    and the module it looks for. Backends run it where the job runs, before submitting."""
    module = FT_PACKAGE if isinstance(launcher, FaultTolerance) else "torch"
    code = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return [python, "-c", code], module


def missing_package_error(launcher: Torchrun, module: str, where: str) -> LauncherError:
    name = (
        "the fault-tolerant launcher (ft)" if isinstance(launcher, FaultTolerance) else "torchrun"
    )
    extra = "nvidia-resiliency-ext" if module == FT_PACKAGE else "torch (pip install torch)"
    return LauncherError(
        f"{name} needs the Python package `{module}`, which the job's interpreter cannot import "
        f"{where}; install {extra} there, or set launcher=None"
    )


# ----------------------------------------------------------------------- rank logs
def rank_of_line(line: bytes) -> int | None:
    """The rank a log line came from (its ``[rank<N>]:`` prefix), or None."""
    match = _RANK_LINE.match(line)
    return int(match.group(1)) if match else None


class RankFilter:
    """One rank's lines out of a log read in chunks split anywhere (feed chunks, get bytes).

    An incomplete last line is held until its newline arrives (or :meth:`flush`).
    """

    def __init__(self, rank: int, *, keep_prefix: bool = False) -> None:
        self.prefix = f"[rank{rank}]:".encode()
        self.keep_prefix = keep_prefix
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        return b"".join(self._pick(line) + b"\n" for line in lines if line.startswith(self.prefix))

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._pick(rest) if rest.startswith(self.prefix) else b""

    def _pick(self, line: bytes) -> bytes:
        return line if self.keep_prefix else line[len(self.prefix) :]
