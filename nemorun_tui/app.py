"""The nemorun-tui app: four panes over the engine, keyboard first, never blocked by IO.

How IO stays off the UI thread:

* Every engine call (monitor ticks, launches, cancels, store reads) runs on one background
  thread with its own asyncio loop (:class:`EngineBridge`). One thread, because the store's
  sqlite index connection belongs to the thread that opened it, and because loop-bound
  backend clients (SSH connections) must always see the same loop. The UI awaits results
  through ``asyncio.wrap_future`` and a hanging backend simply leaves that await pending.
* Periodic work (store listing, monitor ticks) is a :class:`ChainedPoll`: the next run is
  scheduled with a timer only after the previous one finished, so polls never overlap or
  pile up behind a slow cluster.
* Tables update as keyed diffs and nothing is refreshed when nothing changed, so an idle
  app writes nothing to the terminal.

Importing this module imports textual; the CLI imports it only to open the app.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import ContentSwitcher, Footer

from core.engine.loop_thread import LoopThread
from nemorun_tui.messages import (
    CancelRequested,
    EngineEvent,
    Launched,
    LaunchProgress,
    ManageRequested,
    OpenDetail,
    OpenLogs,
    RelaunchRequested,
    StoreChanged,
)
from nemorun_tui.widgets.format import TERMINAL_STATES
from nemorun_tui.widgets.pane_bar import PANES, PaneBar
from nemorun_tui.widgets.runs_pane import RunsPane
from nemorun_tui.widgets.runs_table import RunsTable

if TYPE_CHECKING:
    from textual.command import Provider

    from core.engine import Engine
    from core.engine.protocol import LogStream
    from nemorun_tui.widgets.compose_pane import ComposePane
    from nemorun_tui.widgets.detail_pane import DetailPane
    from nemorun_tui.widgets.logs_pane import LogsPane

T = TypeVar("T")


class EngineBridge(LoopThread):
    """The app's engine thread: every engine and store call runs on this one loop."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(name="nemorun-engine")
        self.engine = engine


class LaunchPresenter:
    """One launch's events, from the engine thread to the UI: messages, and upload toasts.

    Upload progress is throttled per launch (at most one toast every 2 s, and one at the end),
    so a slow SSH link is not flooded with redraws and overlapping launches never share it.
    """

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.meters: dict[str, Any] = {}

    def __call__(self, event: Any) -> None:
        from core.engine import launch_events as ev

        if isinstance(event, ev.Uploading):
            meter = self.meters.get(event.job)
            if meter is None:
                meter = self.meters[event.job] = self._meter(event.job)
            meter(event.done, event.total)
            return
        self.app.post_message(LaunchProgress(event))  # thread-safe

    def _meter(self, job: str) -> Any:
        from core.progress import RateMeter, describe_transfer

        def show(done: int, total: int, rate: float) -> None:
            if total:  # an upload that was skipped (already on the cluster) says nothing
                text = describe_transfer(done, total, rate)
                self.app.call_from_thread(
                    self.app.notify, text, title=f"Uploading code of {job}", timeout=3
                )

        return RateMeter(show, min_interval=2.0)


#: Rows of the first listing (newest first): enough for any screen, cheap at any store size.
FIRST_ROWS = 500


class ChainedPoll:
    """Run ``job`` now and then every ``interval`` seconds *after* it finished.

    ``poke()`` asks for an early run: immediately if idle, or right after the current one.
    A job that raises is reported through ``on_error`` and the chain goes on.
    """

    def __init__(
        self,
        app: App[Any],
        name: str,
        job: Callable[[], Awaitable[None]],
        interval: float,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.app = app
        self.name = name
        self.job = job
        self.interval = interval
        self.on_error = on_error
        self._timer: Timer | None = None
        self._running = False
        self._again = False
        self._stopped = False
        self.runs = 0

    def start(self) -> None:
        """Begin the chain with an immediate run."""
        self._stopped = False
        self._launch()

    def stop(self) -> None:
        """End the chain; a run in progress finishes but schedules nothing."""
        self._stopped = True
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def poke(self) -> None:
        """Run as soon as possible (never two at once)."""
        if self._stopped:
            return
        if self._running:
            self._again = True
            return
        self._launch()

    def _launch(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._running = True
        self.app.run_worker(self._run(), group=f"poll-{self.name}", exit_on_error=False)

    async def _run(self) -> None:
        try:
            await self.job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error(exc)
        finally:
            self._running = False
            self.runs += 1
        if self._stopped:
            return
        if self._again:
            self._again = False
            self._launch()
        else:
            self._timer = self.app.set_timer(self.interval, self._launch, name=self.name)


class NemorunApp(App[int]):
    """k9s for ML runs: Runs, Compose, Logs, Detail."""

    CSS_PATH = "app.tcss"
    TITLE = "nemorun-tui"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {lambda: _runs_provider()}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Help", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
        Binding("1", "pane('runs')", "Runs", show=False, id="pane-runs"),
        Binding("2", "pane('compose')", "Compose", show=False, id="pane-compose"),
        Binding("3", "pane('logs')", "Logs", show=False, id="pane-logs"),
        Binding("4", "pane('detail')", "Detail", show=False, id="pane-detail"),
        Binding("l", "logs", "Logs", id="logs"),
        Binding("r", "relaunch", "Relaunch", id="relaunch"),
        Binding("e", "edit", "Edit+relaunch", id="edit"),
        Binding("c", "cancel", "Cancel", id="cancel"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("m", "sweep", "Sweep", show=False, id="sweep"),  # not in the footer: see help
        Binding("M", "metrics", "Metrics", id="metrics", show=False),
        Binding("C", "compare", "Compare", id="compare", show=False),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        workspace: str | None = None,
        clock: Callable[[], float] = time.time,
        poll_seconds: float | None = None,
        listing_seconds: float | None = None,
        log_max_rate: float | None = None,
        monitor: bool = True,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.workspace = workspace
        self.clock = clock
        self.bridge = EngineBridge(engine)
        from core.engine.workspace_helper import WorkspaceHelper

        #: Imports the workspace in its own process (used on the engine loop only).
        self.workspace_helper = WorkspaceHelper()
        self.bridge.on_restart.append(self._engine_restarted)
        settings = engine.settings
        self.poll_seconds = poll_seconds if poll_seconds is not None else settings.ui.poll_seconds
        self.listing_seconds = (
            listing_seconds if listing_seconds is not None else max(1.0, self.poll_seconds)
        )
        self.log_max_rate = (
            log_max_rate if log_max_rate is not None else settings.ui.log_redraws_per_second
        )
        self.monitor_enabled = monitor
        self.bell_enabled = settings.ui.bell
        self._summaries: dict[str, Any] = {}
        self._error_seen: dict[str, float] = {}
        self._ended: list[Any] = []  # job ends not yet said (see nemorun_tui.end_toasts)
        self._ended_timer: Timer | None = None
        self._listing: ChainedPoll | None = None
        self._monitor: ChainedPoll | None = None
        self._ticker: Timer | None = None
        self._spools: dict[tuple[str, str, str], concurrent.futures.Future[None]] = {}
        self._select_after_listing: str | None = None
        self.panes_ready = asyncio.Event()
        self._mounting_panes = False
        # Start reading the store before Textual has even set up the screen: the listing
        # (tens of ms for 10k runs) overlaps the app's own start-up.
        self.bridge.start()
        self._prefetch: concurrent.futures.Future[Any] | None = self.bridge.submit(
            _call(lambda: engine.store.list(limit=FIRST_ROWS))
        )
        self._listing_gen: str | None = None
        self.first_rows_at: float | None = None
        with contextlib.suppress(Exception):
            self.theme = settings.ui.theme
        if settings.keys:
            self.set_keymap(dict(settings.keys))

    def wait_for_prefetch(self, timeout: float) -> None:
        """Give the first store listing up to ``timeout`` s before Textual starts.

        Listing and Textual's start-up both want the CPU (one GIL): run in parallel, each
        takes twice as long and the first rows appear later than if the listing runs alone
        first. A slow store (NFS) still cannot hold the screen back for more than
        ``timeout``: the app then starts with "loading…" and the rows follow.
        """
        if self._prefetch is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                self._prefetch.result(timeout)

    # -- composition ------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Pane bar, the panes (one ContentSwitcher), footer."""
        yield PaneBar(id="pane-bar")
        with ContentSwitcher(initial="runs", id="panes"):
            yield RunsPane(clock=self.clock, last_poll=self._last_poll, id="runs")
        yield Footer()

    def _last_poll(self, key: tuple[str, str]) -> float | None:
        """When this app's monitor last polled a (backend, target) successfully."""
        if not self.monitor_enabled:
            return None
        return self.engine.monitor.last_poll.get(key)

    @property
    def main(self) -> Screen[Any]:
        """The default screen, even while a modal (help, confirm) is on top."""
        return self.screen_stack[0]

    def compose_extra_panes(self) -> ComposeResult:
        """Compose, Logs and Detail panes, imported and built after the first frame."""
        from nemorun_tui.widgets.compose_pane import ComposePane
        from nemorun_tui.widgets.detail_pane import DetailPane
        from nemorun_tui.widgets.logs_pane import LogsPane

        yield ComposePane(id="compose")
        yield LogsPane(id="logs", max_rate=self.log_max_rate)
        yield DetailPane(clock=self.clock, last_poll=self._last_poll, id="detail")

    async def _mount_extra_panes(self) -> None:
        """Mount the hidden panes once the run list is on screen (a faster first frame)."""
        if self.panes_ready.is_set() or self._mounting_panes:
            return
        self._mounting_panes = True
        switcher = self.main.query_one(ContentSwitcher)
        panes = list(self.compose_extra_panes())
        for pane in panes:
            pane.display = False  # the switcher only hides children it had when mounted
        await switcher.mount_all(panes)
        self.panes_ready.set()
        self._check_keymap()

    def _check_keymap(self) -> None:
        """Say so when config.toml ``[keys]`` names a binding that does not exist."""
        from nemorun_tui.screens.help import own_bindings

        wanted = set(self.engine.settings.keys)
        if not wanted:
            return
        known = {b.id for b in own_bindings(self) if b.id}
        for node in self.main.walk_children():
            known.update(b.id for b in own_bindings(node) if b.id)
        from nemorun_tui.ui_state import quit_key_warning

        warning = quit_key_warning(self, dict(self.engine.settings.keys))
        if warning:
            self.notify(warning, title="Settings", severity="warning", timeout=12)
        unknown = sorted(wanted - known)
        if unknown:
            self.notify(
                f"config.toml [keys]: no binding called {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}",
                title="Settings",
                severity="warning",
                timeout=12,
            )

    async def panes(self) -> None:
        """Wait until every pane is mounted (mounting them now if needed)."""
        if not self.panes_ready.is_set():
            await self._mount_extra_panes()
            await self.panes_ready.wait()

    @property
    def compose_pane(self) -> ComposePane:
        """The Compose pane (its class is imported only when the pane is mounted)."""
        return cast("ComposePane", self.main.query_one("#compose"))

    @property
    def logs_pane(self) -> LogsPane:
        """The Logs pane."""
        return cast("LogsPane", self.main.query_one("#logs"))

    @property
    def detail_pane(self) -> DetailPane:
        """The Detail pane."""
        return cast("DetailPane", self.main.query_one("#detail"))

    @property
    def runs_pane(self) -> RunsPane:
        """The Runs pane."""
        return self.main.query_one(RunsPane)

    @property
    def runs_table(self) -> RunsTable:
        """The experiments table."""
        return self.main.query_one(RunsTable)

    @property
    def marked(self) -> list[str]:
        """Experiment ids marked in Runs (space), in display order: what bulk actions and
        the Compare screen act on."""
        return self.runs_table.marked_ids()

    @property
    def active_pane(self) -> str:
        """Id of the pane on screen."""
        return self.main.query_one(ContentSwitcher).current or "runs"

    # -- lifecycle --------------------------------------------------------------------
    def on_mount(self) -> None:
        """Start the listing and monitor chains and the 1 Hz ticker (the engine runs)."""
        self.runs_table.focus()
        from core.transport.prompts import set_prompt_handler
        from nemorun_tui.screens.prompt import make_prompt_handler

        # SSH 2FA/password questions come to a modal here, not to the hidden terminal.
        set_prompt_handler(make_prompt_handler(self))
        self._listing = ChainedPoll(
            self, "listing", self._list_store, self.listing_seconds, self._poll_failed
        )
        self._monitor = ChainedPoll(
            self, "monitor", self._tick_monitor, self.poll_seconds, self._poll_failed
        )
        self._listing.start()
        if self.monitor_enabled:
            self._subscribe_monitor()
        self._ticker = self.set_interval(1.0, self._tick_clock, name="clock")
        from nemorun_tui.reload import ReloadWatcher
        from nemorun_tui.ui_state import remember_theme

        remember_theme(self)
        self.reload_watcher = ReloadWatcher(self)
        self.reload_watcher.start()

    async def on_unmount(self) -> None:
        """Stop polling and the engine thread."""
        from core.transport.prompts import set_prompt_handler

        set_prompt_handler(None)
        for chain in (self._listing, self._monitor):
            if chain is not None:
                chain.stop()
        if self.bridge.alive:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bridge.call(self.workspace_helper.close()), 2)
        self.bridge.stop()

    def _engine_restarted(self) -> None:
        """On the fresh engine loop after the old one died: rebuild what was bound to it,
        and say so (the app never freezes silently on a dead engine)."""
        from core.engine.workspace_helper import WorkspaceHelper

        self.engine.loop_restarted()
        self.workspace_helper.kill_now()  # its pipes belong to the dead loop
        self.workspace_helper = WorkspaceHelper(python=self.workspace_helper.python)
        if self.monitor_enabled:
            self._subscribe_monitor()
        why = self.bridge.died or "unknown cause"
        self.bridge.died = None
        self.call_from_thread(
            self.report_error, f"the engine thread died ({why}); restarted it", every=0
        )

    # -- polling ----------------------------------------------------------------------
    async def _list_store(self) -> None:
        partial = False
        if self._prefetch is not None:
            # The first screen from the newest FIRST_ROWS only (a store of 100,000 costs a
            # second to materialize); the whole listing follows at once, after that frame.
            prefetch, self._prefetch = self._prefetch, None
            summaries = await asyncio.wrap_future(prefetch)
            partial = len(summaries) >= FIRST_ROWS
        else:
            gen, listed = await self.bridge.run(
                self.engine.store.list_if_changed, self._listing_gen
            )
            if listed is None:  # no row changed since the last listing
                if self._select_after_listing and self.runs_table.move_cursor_to(
                    self._select_after_listing
                ):
                    self._select_after_listing = None
                return
            self._listing_gen, summaries = gen, listed
        first = not self.runs_table.loaded
        if partial and self._listing is not None:
            # After the first frame is painted: the full listing must not compete with it.
            self.call_after_refresh(lambda: self.set_timer(0.05, self._listing_poke))
        self._summaries = {s.id: s for s in summaries}
        changed = self.runs_pane.apply(summaries)
        if self._select_after_listing and self.runs_table.move_cursor_to(
            self._select_after_listing
        ):
            self._select_after_listing = None
        if first:
            self.first_rows_at = time.perf_counter()
            # Everything alive now (textual, modules, the first listing) lives as long as the
            # app: keep it out of future full collections so they stay short (no hitches).
            gc.freeze()
            self.call_after_refresh(self._mount_extra_panes)
            if self.monitor_enabled and self._monitor is not None:
                self._monitor.start()
        if changed or first:
            self._reload_highlighted_jobs()

    def _listing_poke(self) -> None:
        if self._listing is not None:
            self._listing.poke()

    def _live_ids(self) -> list[str]:
        return [
            s.id
            for s in self._summaries.values()
            if not s.damaged and s.state not in TERMINAL_STATES
        ]

    async def _tick_monitor(self) -> None:
        ids = self._live_ids()
        if not ids:
            return
        await self.bridge.call(self.engine.refresh(ids))

    def _poll_failed(self, exc: BaseException) -> None:
        self.report_error(f"{type(exc).__name__}: {exc}")

    def _subscribe_monitor(self) -> None:
        async def forward() -> None:
            queue = self.engine.monitor.subscribe()
            while True:
                event = await queue.get()
                self.post_message(EngineEvent(event))

        self.bridge.submit(forward())

    @on(EngineEvent)
    def _engine_event(self, message: EngineEvent) -> None:
        from core.engine.monitor import PollError
        from core.store import StateChange

        event = message.event
        if isinstance(event, StateChange):
            if self._listing is not None:
                self._listing.poke()
            if self.panes_ready.is_set() and event.exp_id == self.detail_pane.exp_id:
                self._load_detail(event.exp_id)
            if self.panes_ready.is_set():
                self.logs_pane.set_job_state(
                    event.exp_id, event.job, event.new.value, event.report.exit_code
                )
            if event.new.is_terminal:
                self._run_ended(event)
        elif isinstance(event, PollError):
            where = f"{event.backend}@{event.target}"
            self.report_error(f"poll of {where} failed: {event.message}", key=where)

    def _run_ended(self, change: Any) -> None:
        from core.results.jobs import record_end
        from nemorun_tui.end_toasts import GATHER_SECONDS

        # Record what the job left (artifacts.json) and why it failed (cause.json).
        self.bridge.submit(record_end(self.engine, change.exp_id, change.job))
        self._ended.append(change)
        if self._ended_timer is None:  # a sweep's points end together: say them at once
            self._ended_timer = self.set_timer(GATHER_SECONDS, self._say_ended)

    def _say_ended(self) -> None:
        from nemorun_tui.end_toasts import end_toasts

        self._ended_timer = None
        changes, self._ended = self._ended, []
        for toast in end_toasts(changes):
            self.notify(toast.message, title=toast.title, severity=toast.severity)
        if changes and self.bell_enabled:
            self.bell()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast; never markup (backend messages like ``[Errno 2]`` must show as written),
        never terminal controls (messages quote titles, reasons and job names)."""
        from nemorun_tui.widgets.format import block, cell

        super().notify(
            block(message), title=cell(title), severity=severity, timeout=timeout, markup=False
        )

    def action_help_quit(self) -> None:
        """ctrl+c: say how to quit, in plain words (Textual's own toast is markup, and our
        toasts never are, so it showed a raw ``[b]ctrl+q[/b]``)."""
        keys = [key for key, b in self.active_bindings.items() if b.binding.action in ("quit",)]
        if keys:
            shown = " or ".join(self.get_key_display(self.active_bindings[k].binding) for k in keys)
            self.notify(f"Press {shown} to quit the app", title="Do you want to quit?")

    def report_error(self, text: str, *, key: str | None = None, every: float = 30.0) -> None:
        """A notification for a backend/store problem; the same one at most every ``every`` s."""
        key = key or text
        now = time.monotonic()
        if now - self._error_seen.get(key, -1e9) < every:
            return
        self._error_seen[key] = now
        self.notify(text, title="Backend error", severity="error", timeout=8)

    def _tick_clock(self) -> None:
        """Once a second: let live rows update their coarse durations (usually a no-op)."""
        if not self.screen_stack or not self.main.query(RunsTable):
            return  # the app is closing: its widgets are being removed
        pane = self.active_pane
        if pane == "runs":
            self.runs_table.tick()
            self.runs_pane.jobs.tick()
        elif pane == "detail" and self.panes_ready.is_set():
            self.detail_pane.tick()

    @on(StoreChanged)
    def _store_changed(self) -> None:
        if self._listing is not None:
            self._listing.poke()
        if self._monitor is not None:
            self._monitor.poke()

    # -- the highlighted experiment's jobs ----------------------------------------------
    @on(RunsTable.Highlighted)
    def _highlighted(self, message: RunsTable.Highlighted) -> None:
        if self.screen_stack:  # not while the app is closing
            self._reload_highlighted_jobs()

    def _reload_highlighted_jobs(self) -> None:
        exp_id = self.runs_table.cursor_id
        if exp_id is None:
            self.runs_pane.jobs.show(None)
            return
        self._load_jobs(exp_id)

    @work(group="jobs-panel", exclusive=True, exit_on_error=False)
    async def _load_jobs(self, exp_id: str) -> None:
        await asyncio.sleep(0.03)  # let fast cursor movement settle before reading
        try:
            record = await self.bridge.run(self.engine.store.load, exp_id)
        except Exception as exc:
            self.runs_pane.jobs.show(None)
            self.runs_pane.update_status(f"{exp_id}: {exc}")
            return
        if self.runs_table.cursor_id == exp_id:
            self.runs_pane.jobs.show(record)

    # -- current run ----------------------------------------------------------------------
    def current_exp_id(self) -> str | None:
        """The experiment the keys act on: highlighted in Runs, shown in Detail or Logs."""
        pane = self.active_pane
        if pane == "runs":
            return self.runs_table.cursor_id
        getter = getattr(self.main.query_one(f"#{pane}"), "current_exp_id", None)
        if callable(getter):
            exp_id: str | None = getter()
            return exp_id
        return self.runs_table.cursor_id

    def _need_run(self) -> str | None:
        exp_id = self.current_exp_id()
        if exp_id is None:
            self.notify("no experiment selected", severity="warning", timeout=3)
        return exp_id

    # -- actions --------------------------------------------------------------------------
    async def action_pane(self, pane: str) -> None:
        """Switch to a pane by id."""
        if pane not in {key for key, _ in PANES}:
            return
        if pane != "runs":
            await self.panes()
        self.main.query_one(ContentSwitcher).current = pane
        self.main.query_one(PaneBar).active = pane
        target = self.main.query_one(f"#{pane}")
        focus = getattr(target, "focus_default", None)
        if callable(focus):
            focus()
        elif pane == "runs":
            self.runs_table.focus()

    @on(PaneBar.Clicked)
    async def _pane_clicked(self, message: PaneBar.Clicked) -> None:
        await self.action_pane(message.pane)

    async def action_filter(self) -> None:
        """``/``: search the log in Logs, otherwise filter the Runs table."""
        if self.active_pane == "logs" and self.logs_pane.view is not None:
            self.logs_pane.start_search()
            return
        await self.action_pane("runs")
        self.runs_pane.open_filter()

    def action_reload(self) -> None:
        """Read config.toml and the workspace again."""
        from nemorun_tui.reload import reload_all

        self.run_worker(reload_all(self), group="reload", exit_on_error=False)

    def action_help(self) -> None:
        """Show every key of the current pane."""
        from nemorun_tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.active_pane))

    def action_logs(self) -> None:
        """Open the current run's logs."""
        exp_id = self._need_run()
        if exp_id is not None:
            self.post_message(OpenLogs(exp_id))

    def action_sweep(self) -> None:
        """Show the current run's points (nemorun_tui.widgets.sweep_view)."""
        exp_id = self._need_run()
        if exp_id is not None:
            from nemorun_tui.widgets.sweep_view import SweepScreen

            self.push_screen(SweepScreen(exp_id))

    def action_relaunch(self) -> None:
        """Relaunch the current run as is."""
        exp_id = self._need_run()
        if exp_id is not None:
            self.post_message(RelaunchRequested(exp_id, edit=False))

    def action_edit(self) -> None:
        """Open the current run in Compose to edit and relaunch it."""
        exp_id = self._need_run()
        if exp_id is not None:
            self.post_message(RelaunchRequested(exp_id, edit=True))

    def action_cancel(self) -> None:
        """Cancel the current run's live jobs (or the marked runs'), after confirmation."""
        if self.active_pane == "runs" and self.marked:
            from nemorun_tui.messages import ManageRequested

            self.post_message(ManageRequested("cancel", self.marked))
            return
        exp_id = self._need_run()
        if exp_id is not None:
            self.post_message(CancelRequested(exp_id))

    @on(RunsTable.Selected)
    def _run_selected(self, message: RunsTable.Selected) -> None:
        self.post_message(OpenDetail(message.exp_id))

    @on(OpenDetail)
    async def _open_detail(self, message: OpenDetail) -> None:
        await self.panes()
        self.detail_pane.show_loading(message.exp_id)
        await self.action_pane("detail")
        self._load_detail(message.exp_id)

    @work(group="detail", exclusive=True, exit_on_error=False)
    async def _load_detail(self, exp_id: str) -> None:
        from nemorun_tui.widgets.detail_pane import load_detail

        try:
            data = await self.bridge.run(load_detail, self.engine, exp_id)
        except Exception as exc:
            self.detail_pane.show_error(exp_id, str(exc))
            return
        if self.detail_pane.exp_id == exp_id:
            self.detail_pane.show(data)

    # -- logs -------------------------------------------------------------------------------
    @on(OpenLogs)
    def _open_logs(self, message: OpenLogs) -> None:
        # ``l`` (no sender) opens where a failed job's error is; a chosen stream is kept.
        self._resolve_logs(message.exp_id, message.job, message.stream, message.sender is None)

    @work(group="open-logs", exit_on_error=False)
    async def _resolve_logs(
        self, exp_id: str, job: str | None, stream: LogStream, where_error: bool = False
    ) -> None:
        await self.panes()
        try:
            record = await self.bridge.run(self.engine.store.load, exp_id)
        except Exception as exc:
            self.report_error(f"{exp_id}: {exc}")
            return
        if not record.jobs:
            self.notify(f"{exp_id} has no jobs", severity="warning")
            return
        rec = record.job(job) if job else record.jobs[0]
        if rec.handle is None:
            self.notify(
                f"{rec.name} of {exp_id} was never submitted ({rec.state.value})",
                severity="warning",
            )
            return
        if where_error and rec.state.value in ("FAILED", "CANCELLED"):
            from core.results.triage import triage

            cause = None
            with contextlib.suppress(Exception):  # no cause: the stream asked for
                cause = await self.bridge.call(triage(self.engine, exp_id, rec.name))
            if cause is not None and cause.stream not in (None, stream):
                stream = "stderr" if cause.stream == "stderr" else "stdout"
                self.notify(
                    f"{rec.name}: the error is in {stream} (s: the other stream)", timeout=4
                )
        try:
            source = await self.bridge.run(self.engine.log_source, exp_id, rec.name, stream)
        except Exception as exc:
            self.report_error(f"logs of {exp_id} / {rec.name}: {exc}", every=0)
            return
        path = source.path
        if source.spool:
            self._start_spool(exp_id, rec.name, stream, path)
        from nemorun_tui.widgets.logs_pane import LogKey

        key = LogKey(exp_id, rec.name, stream)
        pane = self.logs_pane
        current = pane.current_key
        replace = (
            current is not None
            and current.exp_id == exp_id
            and current.job == rec.name
            and current.stream != stream
        )
        pane.open_log(key, str(path), replace=replace)
        pane.set_job_state(exp_id, rec.name, rec.state.value, rec.exit_code)
        await self.action_pane("logs")
        if len(record.jobs) > 1 and job is None:
            others = ", ".join(j.name for j in record.jobs[1:])
            self.notify(f"other jobs: {others} (L in Detail opens every job's log)", timeout=4)

    def on_logs_pane_closed(self, message: Any) -> None:
        """A closed tab's remote copy stops (it resumes from the copied size if reopened)."""
        key = (message.key.exp_id, message.key.job, message.key.stream)
        future = self._spools.pop(key, None)
        if future is not None and not future.done():
            future.cancel()

    def _start_spool(self, exp_id: str, job: str, stream: LogStream, path: Path) -> None:
        """Have the engine copy a log stream into the file the log view follows."""
        key = (exp_id, job, stream)
        if key in self._spools and not self._spools[key].done():
            return
        future = self.bridge.submit(self.engine.spool_log(exp_id, job, stream, path))

        def done(f: concurrent.futures.Future[None]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                self.call_from_thread(
                    self.report_error, f"logs of {exp_id}/{job}: {type(exc).__name__}: {exc}"
                )

        future.add_done_callback(done)
        self._spools[key] = future

    # -- relaunch / cancel / launch -------------------------------------------------------------
    @on(RelaunchRequested)
    async def _relaunch(self, message: RelaunchRequested) -> None:
        if message.edit:
            from nemorun_tui.widgets.compose_pane import ComposeSource

            await self.panes()
            self.compose_pane.start(ComposeSource(parent=message.exp_id))
            await self.action_pane("compose")
            return
        self._relaunch_as_is(message.exp_id)

    @work(group="relaunch", exit_on_error=False)
    async def _relaunch_as_is(self, exp_id: str) -> None:
        try:
            plan = await self.bridge.run(self.engine.relaunch_plan, exp_id)
        except Exception as exc:
            self.report_error(f"cannot relaunch {exp_id}: {exc}", every=0)
            return
        from nemorun_tui.manage import confirm_relaunch

        if not await confirm_relaunch(self, exp_id, plan):
            self.notify("not relaunched", timeout=2)
            return
        await self.launch_plan(plan)

    def on_compose_pane_launch_requested(self, message: Any) -> None:
        """Compose asked to launch its plan."""
        self.run_worker(self.launch_plan(message.plan), group="launch", exit_on_error=False)

    async def launch_plan(self, plan: Any) -> str | None:
        """Launch ``plan`` through the engine's one launch path; this only presents it.

        Packaging runs before anything is recorded: a refusing policy (uncommitted changes
        with ``uncommitted="refuse"``) stops there with nothing written, and a warning (the
        dirty tree is not packaged) must be confirmed here before the engine goes on.
        """
        from core.engine.launch_events import NotLaunched

        ui_loop = asyncio.get_running_loop()

        async def confirm(warnings: list[str]) -> bool:  # called on the engine loop
            asked = asyncio.run_coroutine_threadsafe(self._confirm_packaging(warnings), ui_loop)
            return await asyncio.wrap_future(asked)

        try:
            record = await self.bridge.call(
                self.engine.launch(plan, on_event=LaunchPresenter(self), confirm=confirm)
            )
        except NotLaunched:
            self.notify("not launched", timeout=2)
            return None
        except Exception as exc:
            self.report_error(f"cannot launch {plan.title}: {exc}", every=0)
            return None
        finally:
            self.post_message(StoreChanged())
        return str(record.id)

    async def _confirm_packaging(self, warnings: list[str]) -> bool:
        from nemorun_tui.screens.confirm import ConfirmScreen

        question = "Packaging says:\n" + "\n".join(f"• {w}" for w in warnings)
        question += "\nLaunch from the packaged code anyway?"
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.push_screen(
            ConfirmScreen(question, yes="Launch", no="Back"),
            callback=lambda yes: answer.set_result(bool(yes)),
        )
        return await answer

    @on(LaunchProgress)
    async def _launch_progress(self, message: LaunchProgress) -> None:
        from core.engine import launch_events as ev

        event = message.event
        if isinstance(event, ev.Recorded):
            record = event.record
            parent = f" (relaunch of {record.parent})" if record.parent else ""
            self.notify(f"{record.id} recorded{parent}; submitting…", title="Launched", timeout=4)
            self._select_after_listing = record.id
            self.post_message(Launched(record.id))
            await self.action_pane("runs")
        elif isinstance(event, ev.Submitted) and event.handle is None and event.reason:
            self.report_error(f"{event.job}: {event.reason}", every=0)

    @on(CancelRequested)
    def _cancel(self, message: CancelRequested) -> None:
        self._confirm_cancel(message.exp_id, message.job)

    @work(group="cancel", exit_on_error=False)
    async def _confirm_cancel(self, exp_id: str, job: str | None) -> None:
        from nemorun_tui.screens.confirm import ConfirmScreen

        try:
            record = await self.bridge.run(self.engine.store.load, exp_id)
        except Exception as exc:
            self.report_error(f"{exp_id}: {exc}", every=0)
            return
        live = [j.name for j in record.jobs if not j.state.is_terminal and (job in (None, j.name))]
        if not live:
            self.notify(f"nothing to cancel: every job of {exp_id} has ended", timeout=3)
            return
        question = f"Cancel {', '.join(live)} of {exp_id}?\nRunning processes are stopped."
        if not await self.push_screen_wait(ConfirmScreen(question, yes="Cancel run", no="Keep")):
            self.notify("not cancelled", timeout=2)
            return
        self.notify(f"cancelling {exp_id}…", timeout=3)
        try:
            asked = await self.bridge.call(self.engine.cancel(exp_id, job))
        except Exception as exc:
            self.report_error(f"cancel of {exp_id} failed: {exc}", every=0)
            return
        finally:
            self.post_message(StoreChanged())
        if asked:
            self.notify(f"cancel requested for {', '.join(asked)}", timeout=3)

    @on(ManageRequested)
    def _manage(self, message: ManageRequested) -> None:
        from nemorun_tui import manage

        manage.handle(self, message)

    @on(Launched)
    def _launched(self, message: Launched) -> None:
        self.post_message(StoreChanged())

    @property
    def summaries(self) -> dict[str, Any]:
        """The last store listing, by id (the palette searches it without disk access)."""
        return self._summaries

    def open_run(self, exp_id: str) -> None:
        """Palette "open run": put the Runs cursor on it and show its Detail."""
        if not self.runs_table.move_cursor_to(exp_id):
            self.runs_pane.action_clear_filter()
            self.runs_table.move_cursor_to(exp_id)
        self.post_message(OpenDetail(exp_id))

    def get_system_commands(self, screen: Screen[Any]) -> Any:
        """Palette entries: switch pane, relaunch, plus Textual's (theme, keys, quit)."""
        for key, label in PANES:
            yield SystemCommand(f"Pane: {label}", f"Switch to the {label} pane", _pane(self, key))
        yield SystemCommand(
            "Relaunch run", "Run the current experiment again", self.action_relaunch
        )
        yield SystemCommand(
            "Edit and relaunch", "Open the current run in Compose", self.action_edit
        )
        yield SystemCommand("Cancel run", "Cancel the current run's live jobs", self.action_cancel)
        yield SystemCommand("Logs", "Open the current run's logs", self.action_logs)
        yield SystemCommand(
            "Reload config and workspace",
            "Read config.toml and the workspace again (also done when they change)",
            self.action_reload,
        )
        # One entry only, so the palette's "Open run" hits stay on its first page; the Metrics
        # view is M, and its `c` puts the metric in a Runs column.
        yield SystemCommand(
            "Runs: compare", "Compare the marked runs, or pick one (C)", self.action_compare
        )
        yield from super().get_system_commands(screen)

    # -- metrics and compare (nemorun_tui/screens/metrics.py, compare.py) --------------------
    def action_metrics(self) -> None:
        """Plot the current run's metrics (live while it runs)."""
        from nemorun_tui.screens.metrics import MetricsScreen

        exp_id = self._need_run()
        if exp_id is not None:
            self.push_screen(MetricsScreen([exp_id]))

    def action_runs_metric(self, name: str | None = None) -> None:
        """Show (or hide, with an empty name) a metric's last value and sparkline in Runs."""
        from nemorun_tui.widgets.runs_metric import MetricNameScreen, RunsMetricColumn

        def chosen(value: str | None) -> None:
            if value is None:
                return
            old = getattr(self, "_runs_metric", None)
            if old is not None:
                old.stop()
            self._runs_metric = RunsMetricColumn(self, value) if value else None
            if self._runs_metric is not None:
                self._runs_metric.start()

        if name is not None:
            chosen(name)
            return
        current = getattr(getattr(self, "_runs_metric", None), "name", None)
        self.push_screen(MetricNameScreen(current), callback=chosen)

    def action_compare(self) -> None:
        """Compare the marked runs (two or more), else the current run and a picked one."""
        from nemorun_tui.screens.compare import CompareScreen, PickRunScreen

        marked = [m for m in self.marked if m in self.summaries]
        if len(marked) >= 2:
            self.push_screen(CompareScreen(sorted(marked)))
            return
        exp_id = self._need_run()
        if exp_id is None:
            return

        def picked(other: str | None) -> None:
            if other:
                self.push_screen(CompareScreen([exp_id, other]))

        self.push_screen(
            PickRunScreen(list(self.summaries.values()), exclude=exp_id), callback=picked
        )


def _pane(app: NemorunApp, key: str) -> Callable[[], Any]:
    return lambda: app.run_worker(app.action_pane(key))


def _runs_provider() -> type[Provider]:
    """The palette's "open run" provider, imported when the palette first opens."""
    from nemorun_tui.commands import RunsProvider

    return RunsProvider


def _call(fn: Callable[[], T]) -> Coroutine[Any, Any, T]:
    """Wrap a blocking call as a coroutine for the engine loop."""

    async def run() -> T:
        return fn()

    return run()


def run_app(
    *,
    home: str | Path | None = None,
    workspace: str | None = None,
    demo_workspace: str | None = None,
) -> int:
    """Open the app; returns the process exit code (2 when settings are broken)."""
    import sys

    from core.engine import Engine
    from core.settings import WORKSPACE_ENV, SettingsError

    try:
        engine = Engine.from_environment(home)
    except SettingsError as exc:
        print(f"nemorun-tui: error: {exc}", file=sys.stderr)
        return 2
    ref = workspace or os.environ.get(WORKSPACE_ENV) or engine.settings.workspace or demo_workspace
    app = NemorunApp(engine, workspace=ref)
    app.wait_for_prefetch(0.4)
    result = app.run()
    return int(result or 0)
