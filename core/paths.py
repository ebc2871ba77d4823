"""Where things live: the store and the config file (XDG conventions, env overrides).

Kept apart from :mod:`core.settings` so that ``nemorun-tui ls`` finds the store without
loading executor profiles or parsing TOML.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "NEMORUN_TUI_HOME"
WORKSPACE_ENV = "NEMORUN_TUI_WORKSPACE"
CONFIG_ENV = "NEMORUN_TUI_CONFIG"


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def default_config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return xdg_config_home() / "nemorun-tui" / "config.toml"


def resolve_home(flag: str | Path | None = None) -> Path:
    """Store location: ``--home`` > ``$NEMORUN_TUI_HOME`` > the XDG data dir."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return xdg_data_home() / "nemorun-tui"
