"""User settings: where the store lives, executor profiles, the workspace, UI preferences.

Read once from ``$XDG_CONFIG_HOME/nemorun-tui/config.toml`` (``~/.config/...`` by default)
into a typed :class:`Settings`. A missing file means built-in defaults: a ``local`` profile
and the store in ``$NEMORUN_TUI_HOME`` or ``$XDG_DATA_HOME/nemorun-tui``.

Example::

    workspace = "~/src/myproject/recipes.py"
    default_executor = "local"

    [executors.local]
    backend = "local"

    [executors.gpu]
    backend = "local"
    env_vars = { CUDA_VISIBLE_DEVICES = "0" }
    secret_env = ["WANDB_API_KEY"]          # passed through from your environment, never stored

    [ui]
    theme = "textual-dark"
    bell = true

    [keys]
    relaunch = "R"
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.engine.executors import ExecutorProfile, LocalExecutor, UnknownProfileError, profile_class
from core.paths import (
    CONFIG_ENV as CONFIG_ENV,
)
from core.paths import (
    HOME_ENV as HOME_ENV,
)
from core.paths import (
    WORKSPACE_ENV as WORKSPACE_ENV,
)
from core.paths import (
    default_config_path,
)
from core.paths import (
    resolve_home as resolve_home,
)
from core.paths import (
    xdg_config_home as xdg_config_home,
)
from core.paths import (
    xdg_data_home as xdg_data_home,
)


class SettingsError(ValueError):
    """config.toml is unreadable or names something that does not exist; one line."""


@dataclass
class UISettings:
    """Preferences for the app."""

    theme: str = "textual-dark"
    bell: bool = True
    poll_seconds: float = 2.0
    #: Upper bound on Logs redraws per second while following (lower it on slow SSH links).
    log_redraws_per_second: float = 10.0

    def __post_init__(self) -> None:
        for name in ("poll_seconds", "log_redraws_per_second"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise SettingsError(f"[ui] {name} must be a positive number, got {value!r}")


@dataclass
class Settings:
    """Everything read from config.toml, with defaults filled in."""

    path: Path | None = None
    workspace: str | None = None
    default_executor: str = "local"
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    ui: UISettings = field(default_factory=UISettings)
    keys: dict[str, str] = field(default_factory=dict)

    def profile_names(self) -> list[str]:
        return sorted({"local", *self.profiles})

    def profile(self, name: str | None = None) -> ExecutorProfile:
        """Build the named executor profile (``local`` always exists)."""
        name = name or self.default_executor
        raw = self.profiles.get(name)
        if raw is None:
            if name == "local":
                return LocalExecutor(profile_name="local")
            close = difflib.get_close_matches(name, self.profile_names(), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            where = f" in {self.path}" if self.path else ""
            known = ", ".join(self.profile_names())
            raise SettingsError(f"no executor profile `{name}`{where}{hint} (known: {known})")
        return build_profile(name, raw)

    def workspace_ref(self, explicit: str | None = None, default: str | None = None) -> str | None:
        """Which workspace to load, in one place for every front end.

        Precedence: ``explicit`` (``--workspace``) > ``$NEMORUN_TUI_WORKSPACE`` >
        ``workspace`` in config.toml > ``default`` (the front end's demo workspace).
        """
        import os

        return explicit or os.environ.get(WORKSPACE_ENV) or self.workspace or default


def build_profile(name: str, raw: Mapping[str, Any]) -> ExecutorProfile:
    """A typed profile from a config.toml table; unknown fields are reported with hints."""
    data = dict(raw)
    backend = str(data.pop("backend", "local"))
    try:
        cls = profile_class(backend)
    except UnknownProfileError as exc:
        raise SettingsError(f"executor profile `{name}`: {exc}") from None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    secrets = data.pop("secret_env", None) or []
    if isinstance(secrets, list):
        data["secret_env"] = {str(n): None for n in secrets}
    elif isinstance(secrets, dict):
        data["secret_env"] = {
            str(k): (None if v in ("", None) else str(v)) for k, v in secrets.items()
        }
    else:
        raise SettingsError(f"executor profile `{name}`: secret_env must be a list of names")
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            raise SettingsError(
                f"executor profile `{name}`: `{cls.__name__}` has no field `{key}`{hint}"
            )
    data["profile_name"] = name
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:  # ValueError: a profile's own checks (__post_init__)
        raise SettingsError(f"executor profile `{name}`: {exc}") from None


def load_settings(path: Path | None = None) -> Settings:
    """Read config.toml; a missing file gives defaults, a broken one a one-line error."""
    path = path or default_config_path()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return Settings(path=None)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: {exc}") from None
    ui_raw = raw.get("ui") or {}
    ui_fields = {f.name for f in dataclasses.fields(UISettings)}
    unknown = sorted(set(ui_raw) - ui_fields)
    if unknown:
        raise SettingsError(f"{path}: [ui] has no setting {', '.join(unknown)}")
    return Settings(
        path=path,
        workspace=raw.get("workspace"),
        default_executor=str(raw.get("default_executor", "local")),
        profiles={str(k): dict(v) for k, v in (raw.get("executors") or {}).items()},
        ui=UISettings(**ui_raw),
        keys={str(k): str(v) for k, v in (raw.get("keys") or {}).items()},
    )


def resolve_secret_env(
    profile: ExecutorProfile, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Secret values for a job: given in the profile, else passed through from the environment.

    A secret that is named but has no value anywhere is an error (a job silently missing its
    API key fails much later and far less clearly).
    """
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    missing = []
    for name, value in profile.secret_env.items():
        if value is not None:
            values[name] = value
        elif name in environ:
            values[name] = environ[name]
        else:
            missing.append(name)
    if missing:
        raise SettingsError(
            f"secret environment variable(s) {', '.join(missing)} named by executor profile "
            f"`{profile.profile_name or profile.backend}` are not set in your environment"
        )
    return values
