"""Fixtures for the app tests: stores (real, demo, slow), an app factory, and waiting."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from demo_store import DEMO_WORKSPACE, NOW, build_demo_store, install_workspace

#: The snapshot store lives at a fixed path so that paths shown on screen never vary; a lock
#: keeps two test runs on one machine (two engineers, CI) from rebuilding it under each other.
SNAPSHOT_HOME = Path("/tmp/nemorun-tui-demo/store")
#: The real interpreter, for the workspace helper process (demo_home pins sys.executable to
#: a fixed path that does not exist, for the dry run on screen).
REAL_PYTHON = sys.executable
LOCK = Path("/tmp/nemorun-tui-demo/.lock")


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen in UTC, whatever the machine's zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    time.tzset()


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's own config.toml."""
    monkeypatch.setenv("NEMORUN_TUI_CONFIG", str(tmp_path / "no-config.toml"))


@pytest.fixture
def demo_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fixed demo store (rebuilt for each test, held under a lock)."""
    import fcntl

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build_demo_store(SNAPSHOT_HOME)
        monkeypatch.chdir("/tmp")
        # The dry run shows the interpreter's path; pin it so snapshots do not depend on
        # where the virtualenv lives (nothing is executed in these tests).
        monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python3")
        yield SNAPSHOT_HOME


@pytest.fixture
def make_app() -> Callable[..., Any]:
    """Build a NemorunApp over a store home; tests pass fast polling."""

    def factory(home: Path, **kwargs: Any) -> Any:
        from core.engine import Engine
        from core.settings import Settings, UISettings
        from core.store import Store
        from nemorun_tui.app import NemorunApp

        settings = kwargs.pop("settings", None) or Settings(ui=UISettings(bell=False))
        engine = Engine(Store(home), settings)
        kwargs.setdefault("workspace", install_workspace())
        app = NemorunApp(engine, **kwargs)
        app.workspace_helper.python = REAL_PYTHON
        return app

    return factory


@pytest.fixture
def demo_app(demo_home: Path, make_app: Callable[..., Any]) -> Any:
    """The app on the demo store with a fixed clock and no monitor (stable snapshots)."""
    return make_app(demo_home, clock=lambda: NOW, monitor=False, listing_seconds=3600)


__all__ = ["DEMO_WORKSPACE", "NOW"]
