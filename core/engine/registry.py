"""Find backends by name and import them only when first used.

Built-in backends are listed by dotted path so that ``import core`` never pays for docker,
kubernetes or asyncssh. Installed packages may add backends through the
``nemorun_tui.backends`` entry-point group (value ``module:Class``). Tests may register
extra backends (e.g. a deliberately slow fake) with :func:`register_backend`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.engine.executors import ExecutorProfile
    from core.engine.protocol import Backend

#: Only backends that exist; others come from installed packages (entry points).
BUILTIN_BACKENDS: dict[str, str] = {
    "local": "backends.local:LocalBackend",
    "slurm": "backends.slurm:SlurmBackend",
    "kubernetes": "backends.kubernetes:KubernetesBackend",
    "docker": "backends.docker:DockerBackend",
    "ray": "backends.ray:RayBackend",
    "slurm_ray": "backends.ray.slurm_ray:SlurmRayBackend",
}
ENTRY_POINT_GROUP = "nemorun_tui.backends"

_extra: dict[str, Any] = {}
_instances: dict[tuple[str, str], Backend] = {}


class UnknownBackendError(LookupError):
    """No backend of that name is built in, registered, or installed."""


def register_backend(name: str, factory: Any) -> None:
    """Register a backend class (or ``module:Class`` string) under ``name``."""
    _extra[name] = factory
    for key in [k for k in _instances if k[0] == name]:
        del _instances[key]


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    """Every backend name that could be resolved."""
    return sorted(set(BUILTIN_BACKENDS) | set(_extra) | set(_entry_points()))


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered under ``name``."""
    target = _extra.get(name) or BUILTIN_BACKENDS.get(name)
    if target is None:
        target = _entry_points().get(name)
    if target is None:
        raise UnknownBackendError(
            f"unknown backend {name!r}; known backends: {', '.join(backend_names())}"
        )
    if not isinstance(target, str):
        return target  # type: ignore[no-any-return]  # registered: trusted to be a Backend
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UnknownBackendError(f"backend {name!r} is not available: {exc}") from exc
    return getattr(module, attr)  # type: ignore[no-any-return]  # the plugin's Backend class


def get_backend(profile: ExecutorProfile) -> Backend:
    """The shared backend instance for this profile's (backend, target)."""
    key = (profile.backend, profile.target())
    backend = _instances.get(key)
    if backend is None:
        cls = backend_class(profile.backend)
        backend = cls.from_profile(profile)
        _instances[key] = backend
    return backend


def forget_all() -> None:
    """Drop every backend instance without closing it (its event loop is gone)."""
    _instances.clear()


async def close_all() -> None:
    """Close every backend instance (connections, pools)."""
    while _instances:
        _, backend = _instances.popitem()
        await backend.close()
