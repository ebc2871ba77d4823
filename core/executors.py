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


def profile_from_dict(data: dict[str, Any]) -> ExecutorProfile:
    """Rebuild a stored profile. Unknown keys are an error, not silently dropped."""
    backend = data.get("backend")
    cls = _PROFILE_TYPES.get(str(backend))
    if cls is None:
        known = ", ".join(sorted(_PROFILE_TYPES)) or "none"
        raise ValueError(f"unknown executor backend {backend!r} (known: {known})")
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
