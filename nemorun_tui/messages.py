"""Typed messages: the seams between panes and the app.

Panes never reach into each other; they post one of these and the app decides what happens
(switch pane, start a worker, ask for confirmation). Keeping them in one module makes the
flow of the app readable in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from textual.widget import Widget

    from core.engine.protocol import LogStream


class OpenDetail(Message):
    """Show an experiment in the Detail pane."""

    def __init__(self, exp_id: str) -> None:
        super().__init__()
        self.exp_id = exp_id


class OpenLogs(Message):
    """Open (or focus) a log tab for a job; ``job=None`` means the experiment's first job."""

    def __init__(
        self,
        exp_id: str,
        job: str | None = None,
        stream: LogStream = "stdout",
        *,
        sender: Widget | None = None,
    ) -> None:
        super().__init__()
        self.exp_id = exp_id
        self.job = job
        self.stream: LogStream = stream
        self.sender = sender

    @property
    def control(self) -> Widget | None:
        """The widget that asked (so ``@on(OpenLogs, "#detail")`` can pick by sender)."""
        return self.sender


class RelaunchRequested(Message):
    """Run an experiment again as it was (``edit=False``) or via Compose (``edit=True``)."""

    def __init__(self, exp_id: str, *, edit: bool) -> None:
        super().__init__()
        self.exp_id = exp_id
        self.edit = edit


class CancelRequested(Message):
    """Cancel one job (or every live job when ``job`` is None), after confirmation."""

    def __init__(self, exp_id: str, job: str | None = None) -> None:
        super().__init__()
        self.exp_id = exp_id
        self.job = job


class EngineEvent(Message):
    """A monitor event (``StateChange`` or ``PollError``) forwarded from the engine thread."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class Launched(Message):
    """An experiment was recorded (and is being submitted) from Compose."""

    def __init__(self, exp_id: str) -> None:
        super().__init__()
        self.exp_id = exp_id


class LaunchProgress(Message):
    """An event of one launch (:mod:`core.engine.launch_events`), from the engine thread."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


class StoreChanged(Message):
    """Something the app did changed the store; refresh listings soon."""


class ManageRequested(Message):
    """Manage runs (:mod:`nemorun_tui.manage`): tag, note, archive, delete, cancel several,
    copy an id or a path, open a shell or ``$EDITOR`` in a run's folder."""

    def __init__(self, action: str, exp_ids: list[str]) -> None:
        super().__init__()
        self.action = action
        self.exp_ids = exp_ids
