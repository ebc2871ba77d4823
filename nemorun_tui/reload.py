"""Reload config.toml and the workspace without a restart: from the palette, and on change.

:class:`ReloadWatcher` looks at the two files' modification times every couple of seconds
(one ``stat`` each, on the engine thread: no redraw, no CPU to speak of while nothing
changes) and reloads when either changed. A broken config.toml is reported and the
settings in use stay as they were: a typo while editing never takes the app down.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nemorun_tui.app import NemorunApp

#: Seconds between two looks at the files' modification times.
WATCH_SECONDS = 2.0


def config_path(app: NemorunApp) -> Path:
    """The config.toml the engine's settings came from (or would come from)."""
    from core.paths import default_config_path

    path = app.engine.settings.path
    return Path(path) if path is not None else default_config_path()


def workspace_path(app: NemorunApp) -> Path | None:
    """The workspace file, when the workspace is a file (a module name is not watched)."""
    pane_workspace = (
        getattr(app.compose_pane, "workspace", None) if app.panes_ready.is_set() else None
    )
    source = getattr(pane_workspace, "source", None) or app.workspace
    if not source:
        return None
    path = Path(str(source)).expanduser()
    return path if path.suffix == ".py" else None


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return None


async def reload_all(app: NemorunApp, why: str = "") -> bool:
    """Read config.toml again and have Compose list profiles and recipes again."""
    from core.settings import SettingsError, load_settings

    path = config_path(app)
    try:
        settings = await app.bridge.run(load_settings, path)
    except SettingsError as exc:
        app.notify(f"{exc}; the settings in use are kept", title="Reload", severity="error")
        return False
    app.engine.settings = settings
    await app.panes()
    app.compose_pane.reload()
    app.notify(why or "config.toml and the workspace reloaded", title="Reload", timeout=3)
    return True


class ReloadWatcher:
    """Reload when config.toml or the workspace file changes (polled, see module doc)."""

    def __init__(self, app: NemorunApp) -> None:
        self.app = app
        self._seen: dict[str, float | None] = {}
        self.reloads = 0
        #: False stops looking (the palette's reload still works).
        self.enabled = True

    def start(self) -> None:
        """Remember the current times and look again every :data:`WATCH_SECONDS`."""
        self.app.run_worker(self._look(first=True), group="reload-watch", exit_on_error=False)
        self.app.set_interval(WATCH_SECONDS, self._tick, name="reload-watch")

    def _tick(self) -> None:
        if not self.enabled:
            return
        self.app.run_worker(self._look(), group="reload-watch", exit_on_error=False)

    async def _look(self, first: bool = False) -> None:
        app = self.app
        named: dict[str, Any] = {"config.toml": config_path(app), "workspace": workspace_path(app)}
        paths = {str(p): name for name, p in named.items() if p is not None}
        times = await app.bridge.run(lambda: {p: _mtime(Path(p)) for p in paths})
        # Keyed by path: a path seen for the first time (the workspace resolved to its file
        # once Compose loaded it) is remembered, not taken for a change.
        changed = [paths[p] for p, t in times.items() if p in self._seen and t != self._seen[p]]
        self._seen = times
        if changed and not first:
            self.reloads += 1
            await reload_all(app, f"{' and '.join(changed)} changed: reloaded")
