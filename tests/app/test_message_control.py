"""Messages posted by widgets name their sender as ``control``, so ``@on(Msg, "#id")``
handlers pick messages by who sent them (Textual refuses a selector on a message without one)."""

from __future__ import annotations

from textual import on
from textual.app import App, ComposeResult
from textual.widget import Widget

from nemorun_tui.logview.view import LogView
from nemorun_tui.messages import OpenLogs
from nemorun_tui.widgets.runs_table import RunsTable


class _Sender(Widget):
    def ask(self) -> None:
        self.post_message(OpenLogs("exp-1", "train", "stderr", sender=self))


class _Picky(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield _Sender(id="detail")
        yield _Sender(id="logs")

    @on(OpenLogs, "#detail")
    def _from_detail(self, message: OpenLogs) -> None:
        self.seen.append(("detail", message.stream))

    @on(OpenLogs, "#logs")
    def _from_logs(self, message: OpenLogs) -> None:
        self.seen.append(("logs", message.stream))


async def test_open_logs_is_routed_by_the_widget_that_sent_it() -> None:
    app = _Picky()
    async with app.run_test() as pilot:
        app.query_one("#logs", _Sender).ask()
        await pilot.pause()
        assert app.seen == [("logs", "stderr")]
        app.query_one("#detail", _Sender).ask()
        await pilot.pause()
        assert app.seen == [("logs", "stderr"), ("detail", "stderr")]


def test_open_logs_from_the_app_itself_has_no_control() -> None:
    assert OpenLogs("exp-1").control is None


def test_table_and_view_messages_name_their_widget() -> None:
    table = RunsTable()
    assert RunsTable.Highlighted(table, "exp-1").control is table
    assert RunsTable.Selected(table, "exp-1").control is table
    assert RunsTable.Sorted(table).control is table
    view = LogView("/nonexistent/stdout.log")  # constructed only: nothing is opened
    assert LogView.StatusChanged(view).control is view
