"""Executor profiles: typed, data-only descriptions of *where* a job runs.

Profiles live in core (not in backends) so the Python API and config.toml can name them
without importing backend code; each names its backend, which the registry imports lazily.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

_PROFILE_TYPES: dict[str, type[ExecutorProfile]] = {}


def register_profile(cls: type[ExecutorProfile]) -> type[ExecutorProfile]:
    """Class decorator: make a profile type constructible from its stored dict."""
    _PROFILE_TYPES[cls.backend] = cls
    return cls


@dataclass
class ExecutorProfile:
    """Fields every executor shares (NeMo Run names).

    ``secret_env`` names environment variables whose *values* are secret: they are read from
    the launching environment (or given here) at submit time and never stored or printed.
    """

    backend: ClassVar[str] = ""
    env_vars: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str | None] = field(default_factory=dict)
    retries: int = 0
    packager: Any = None
    profile_name: str | None = None
    #: Hang detection (core.engine.stall): a RUNNING job whose logs have not grown for this
    #: long (e.g. "15m") is flagged STALLED; None: off. ``on_stall``: None or "flag" (only
    #: show it), "notify" (also a notification event) or "cancel" (also cancel the job).
    stall_after: str | None = None
    on_stall: str | None = None
    #: What the job produces (see core.results): globs of artifact files beyond
    #: ``NEMORUN_JOB_DIR`` (relative to it, or absolute), metric files beyond the ones found
    #: there (tfevents, ``metrics.jsonl``, ``metrics.csv``), and a stdout pattern with named
    #: groups, e.g. ``loss (?P<loss>[0-9.e+-]+)``.
    artifacts: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    metrics_regex: str | None = None

    def target(self) -> str:
        """The group this profile's jobs are polled in (one cluster / host)."""
        return "local"

    def to_dict(self) -> dict[str, Any]:
        """Stored form. Secret values are never included, only their names."""
        data: dict[str, Any] = {"backend": self.backend}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "secret_env":
                value = sorted(value)
            elif f.name == "packager":
                value = _packager_to_dict(value)
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = {"__type__": type(value).__name__, **dataclasses.asdict(value)}
            data[f.name] = value
        return data

    def redacted_env(self) -> dict[str, str]:
        """Environment for display: plain values, secrets shown as ``***``."""
        shown = dict(self.env_vars)
        for name in self.secret_env:
            shown[name] = "***"
        return shown


def _packager_to_dict(packager: Any) -> Any:
    if packager is None:
        return None
    if isinstance(packager, dict):  # as written in config.toml; rebuilt by core.packaging
        return dict(packager)
    to_dict = getattr(packager, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return {"__type__": type(packager).__name__}


@register_profile
@dataclass
class LocalExecutor(ExecutorProfile):
    """Run on this machine, detached, in its own process group (NeMo Run's LocalExecutor)."""

    backend: ClassVar[str] = "local"
    ntasks_per_node: int = 1
    nodes: int = 1
    cancel_grace_seconds: float = 5.0
    #: None (one process), "torchrun"/Torchrun(...) or "ft"/FaultTolerance(...): see
    #: core.launchers. With a launcher, ntasks_per_node ranks run under the supervisor.
    launcher: Any = None

    def __post_init__(self) -> None:
        self.launcher = launcher_from(self.launcher)


def launcher_from(value: Any) -> Any:
    """A launcher object (or None) from a profile's value; core.launchers loads only when
    one is set, so profiles without a launcher cost nothing."""
    if value is None:
        return None
    from core.launchers import as_launcher

    return as_launcher(value)


class UnknownProfileError(ValueError):
    """No profile type for that backend name (not built in, not installed)."""


def profile_class(backend: str) -> type[ExecutorProfile]:
    """The profile type of a backend, for config.toml and stored profiles alike.

    Built-in types are registered here; a plugin backend's type is found through its
    backend class (``profile_class`` on the class the ``nemorun_tui.backends`` entry point
    names), imported on first use. So a fresh process can rebuild a third-party backend's
    stored profile without anyone having imported the plugin before.
    """
    cls = _PROFILE_TYPES.get(backend)
    if cls is not None:
        return cls
    from core.engine import registry

    try:
        backend_cls = registry.backend_class(backend)
    except registry.UnknownBackendError as exc:
        raise UnknownProfileError(str(exc)) from None
    cls = getattr(backend_cls, "profile_class", None) or _PROFILE_TYPES.get(backend)
    if not (isinstance(cls, type) and issubclass(cls, ExecutorProfile)):
        raise UnknownProfileError(
            f"backend {backend!r} ({backend_cls.__name__}) declares no `profile_class`"
        )
    _PROFILE_TYPES[backend] = cls
    return cls


def profile_from_dict(data: dict[str, Any]) -> ExecutorProfile:
    """Rebuild a stored profile. Unknown keys are an error, not silently dropped."""
    cls = profile_class(str(data.get("backend")))
    kwargs = {k: v for k, v in data.items() if k != "backend"}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    kwargs["secret_env"] = {name: None for name in kwargs.get("secret_env") or []}
    if isinstance(kwargs.get("packager"), dict):
        # Packagers are rebuilt by the packaging module when it is needed.
        kwargs["packager"] = kwargs["packager"]
    return cls(**kwargs)


def profile_types() -> dict[str, type[ExecutorProfile]]:
    """Known profile classes by backend name."""
    return dict(_PROFILE_TYPES)


# --------------------------------------------------------------------------- Slurm
# Appended for the Slurm backend. Tunnels say *how* the cluster is reached (NeMo Run's names):
# ``LocalTunnel`` on the login node itself, ``SSHTunnel`` from a laptop. They are plain data;
# the transports live in core.transport.local / core.transport.ssh and load on first use.


@dataclass
class LocalTunnel:
    """The cluster's commands are local (we run on the login node)."""

    job_dir: str = ""

    def target(self) -> str:
        return "local"


@dataclass
class SSHTunnel:
    """Reach the login node over SSH. ``host`` may be an alias from ``~/.ssh/config``.

    ``user``/``port``/``identity`` left empty come from the SSH config (then OpenSSH's
    defaults); ``ssh_config`` and ``known_hosts`` override the files read (default
    ``~/.ssh/config`` and ``~/.ssh/known_hosts``). Host keys are always verified.
    """

    host: str = ""
    user: str | None = None
    job_dir: str = ""
    port: int | None = None
    identity: str | None = None
    ssh_config: str | None = None
    known_hosts: str | None = None

    def target(self) -> str:
        # Unresolved on purpose (no config parsing here); the transport registry resolves
        # aliases, so two spellings of one host still share a connection.
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh://{user}{self.host}{port}"


def _tunnel_from(value: Any) -> LocalTunnel | SSHTunnel:
    """Accept a tunnel object or its stored/config.toml dict form."""
    if isinstance(value, LocalTunnel | SSHTunnel):
        return value
    if value is None:
        return LocalTunnel()
    if not isinstance(value, dict):
        raise ValueError(f"tunnel must be LocalTunnel, SSHTunnel or a table, not {value!r}")
    data = dict(value)
    kind = str(data.pop("__type__", "") or data.pop("type", "")).lower()
    if kind in ("sshtunnel", "ssh") or (not kind and data.get("host")):
        cls: type[LocalTunnel | SSHTunnel] = SSHTunnel
    elif kind in ("localtunnel", "local", ""):
        cls = LocalTunnel
    else:
        raise ValueError(f"unknown tunnel type {kind!r} (use 'ssh' or 'local')")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    return cls(**data)


@register_profile
@dataclass
class SlurmExecutor(ExecutorProfile):
    """Submit to Slurm with sbatch (NeMo Run's SlurmExecutor field names).

    ``tunnel`` says how the cluster is reached. In config.toml, ``host``/``user``/``port``/
    ``identity``/``ssh_config``/``job_dir`` may be given flat instead of a ``tunnel`` table;
    they are folded into an :class:`SSHTunnel`. ``poll_rate`` caps scheduler queries
    (squeue/sacct) per second for the whole cluster, far below Slurm's per-user RPC limits.
    ``array`` (e.g. ``"0-3"`` or ``"0-99%10"``) makes one array job; its tasks are addressed
    as ``<jobid>_<task>``.
    """

    backend: ClassVar[str] = "slurm"
    account: str | None = None
    partition: str | None = None
    time: str | None = None
    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    mem: str | None = None
    qos: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    gres: str | None = None
    array: str | None = None
    exclusive: bool | None = None
    container_image: str | None = None
    container_mounts: list[str] = field(default_factory=list)
    srun_args: list[str] = field(default_factory=list)
    setup_lines: str | None = None
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    dependency_type: str = "afterok"
    job_dir: str = ""
    tunnel: Any = field(default_factory=LocalTunnel)
    poll_rate: float = 0.5
    poll_burst: int = 2
    #: Interpreter on the cluster for Python tasks (default: this machine's sys.executable,
    #: right on a login node or a shared filesystem).
    python: str = ""
    host: str | None = None
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    ssh_config: str | None = None
    #: None, "torchrun"/Torchrun(...) or "ft"/FaultTolerance(...): srun starts it once per
    #: node, with the rendezvous on the allocation's first host (see core.launchers).
    launcher: Any = None

    def __post_init__(self) -> None:
        self.launcher = launcher_from(self.launcher)
        self.tunnel = _tunnel_from(self.tunnel)
        if self.host:
            if isinstance(self.tunnel, SSHTunnel) and self.tunnel.host not in ("", self.host):
                raise ValueError(f"host {self.host!r} conflicts with tunnel {self.tunnel!r}")
            base = self.tunnel if isinstance(self.tunnel, SSHTunnel) else SSHTunnel()
            self.tunnel = dataclasses.replace(
                base,
                host=self.host,
                user=self.user or base.user,
                port=self.port or base.port,
                identity=self.identity or base.identity,
                ssh_config=self.ssh_config or base.ssh_config,
                job_dir=base.job_dir or self.job_dir,
            )
            # Stored once, inside the tunnel.
            self.host = self.user = self.port = self.identity = self.ssh_config = None
        if not self.tunnel.job_dir and self.job_dir:
            self.tunnel.job_dir = self.job_dir
        if not self.job_dir:
            self.job_dir = self.tunnel.job_dir
        if self.poll_rate <= 0:
            raise ValueError("poll_rate must be > 0 (scheduler calls per second)")

    def target(self) -> str:
        """One target per cluster: local login node, or an SSH destination."""
        tunnel: LocalTunnel | SSHTunnel = self.tunnel  # a table until __post_init__ converts it
        return tunnel.target()
