"""What the app remembers between runs (the chosen theme), in ``<store home>/ui-state.json``.

Kept next to the store rather than in config.toml: config.toml is the user's file (we never
rewrite it), and a palette choice is not a setting they typed. Precedence: a theme chosen
in the app (palette, ctrl+p → "theme") wins over ``[ui] theme`` of config.toml, which is
only the first default. The file is tiny, written atomically, and read or written on the
engine thread, never on the UI thread (the store may be on NFS).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

STATE_FILE = "ui-state.json"


def load_ui_state(home: Path) -> dict[str, Any]:
    """The remembered state; ``{}`` when missing or unreadable (never an error)."""
    try:
        data = json.loads((home / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_ui_state(home: Path, **changes: Any) -> None:
    """Merge ``changes`` into the remembered state (atomically; a failure is silent: the
    app works the same without it)."""
    from core.fsutil import atomic_write

    data = load_ui_state(home)
    data.update(changes)
    with contextlib.suppress(OSError):
        home.mkdir(parents=True, exist_ok=True)
        atomic_write(home / STATE_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")


def remember_theme(app: Any) -> None:
    """Apply the remembered theme now, and remember every later theme change."""
    home = Path(app.engine.store.home)

    async def load() -> dict[str, Any]:
        return load_ui_state(home)

    try:
        state = app.bridge.submit(load()).result(0.5)
    except Exception:
        state = {}
    theme = state.get("theme")
    if isinstance(theme, str) and theme in app.available_themes and theme != app.theme:
        app.theme = theme

    def changed(new: Any) -> None:
        name = getattr(new, "name", None)
        if isinstance(name, str):

            async def save() -> None:
                save_ui_state(home, theme=name)

            app.bridge.submit(save())

    app.theme_changed_signal.subscribe(app, changed)


def quit_key_warning(app: Any, keys: dict[str, str]) -> str | None:
    """Why ``q`` no longer quits, when a ``[keys]`` remap gave it to another binding."""
    takers = [
        name
        for name, key in keys.items()
        if name != "quit" and "q" in (k.strip() for k in str(key).split(","))
    ]
    quit_keys = [k.strip() for k in str(keys.get("quit", "q")).split(",")]
    if not takers or "q" not in quit_keys:
        return None
    return (
        f"config.toml [keys]: q is now {', '.join(sorted(takers))}, so q no longer quits; "
        'quit with ctrl+q, or give quit its own key (quit = "Q")'
    )
