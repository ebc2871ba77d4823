"""Compare two or more runs: what differs in config, overrides, code and executor, their
final metrics side by side, and one metric's curves overlaid.

Opened with ``C``: the marked runs when two or more are marked, else the current run and one
picked from a list (:class:`PickRunScreen`). Identical config fields are hidden
(:func:`core.results.compare.compare`); every value is shown as text.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from nemorun_tui.widgets.format import cell, state_label, when
from nemorun_tui.widgets.metrics_view import Curve, MetricsView


class PickRunScreen(ModalScreen[str | None]):
    """Pick the run to compare with (newest first); escape picks none."""

    DEFAULT_CSS = """
    PickRunScreen { align: center middle; }
    PickRunScreen > Vertical {
        width: 100; max-width: 95%; height: 70%; border: thick $accent;
        background: $surface; padding: 0 1;
    }
    PickRunScreen OptionList { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "pick_none", "Back")]

    def __init__(self, summaries: list[Any], *, exclude: str, limit: int = 500) -> None:
        super().__init__()
        ordered = sorted(summaries, key=lambda s: s.created_at, reverse=True)
        self.summaries = [s for s in ordered if s.id != exclude and not s.damaged][:limit]
        self.exclude = exclude

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Compare {cell(self.exclude)} with:", style="bold"))
            yield OptionList(
                *(
                    Option(
                        Text(
                            f"{state_label(s.state):<13} {cell(s.title)[:30]:<30} "
                            f"{cell(s.id)}  {when(s.created_at)}"
                        ),
                        id=s.id,
                    )
                    for s in self.summaries
                ),
                id="pick-run",
            )

    @on(OptionList.OptionSelected)
    def _picked(self, message: OptionList.OptionSelected) -> None:
        self.dismiss(message.option.id)

    def action_pick_none(self) -> None:
        self.dismiss(None)


def _side_by_side(runs: int, rows: list[Any], empty: str) -> RenderableType:
    if not rows:
        return Text(empty, style="dim italic")
    table = Table(box=None, pad_edge=False, header_style="bold dim", expand=True)
    table.add_column("PATH", ratio=2, overflow="fold")
    for i in range(runs):
        table.add_column(f"[{i + 1}]", ratio=2, overflow="fold")
    for row in rows:
        table.add_row(
            Text(cell(row.path)),
            *(
                Text("(unset)", style="dim") if value is None else Text(cell(value))
                for value in row.values
            ),
        )
    return table


class CompareScreen(Screen[None]):
    """Side-by-side differences of ``exp_ids`` and their overlaid metric curves."""

    DEFAULT_CSS = """
    CompareScreen { background: $surface; }
    CompareScreen VerticalScroll { height: 1fr; padding: 0 1; }
    CompareScreen .heading { text-style: bold; color: $accent; margin-top: 1; }
    CompareScreen MetricsView { height: 16; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close", id="compare-close"),
        Binding("n", "metric(1)", "Next metric", id="compare-next"),
        Binding("p", "metric(-1)", "Prev metric", id="compare-prev"),
        Binding("M", "metrics", "Metrics view", id="compare-metrics"),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("down,j", "scroll(1)", "Down", show=False),
    ]

    def __init__(self, exp_ids: list[str]) -> None:
        super().__init__()
        self.exp_ids = list(exp_ids)
        self.comparison: Any = None
        self.series: list[dict[str, Any]] = []
        self.metric: str | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("Comparing…", id="compare-runs")
            yield Static("Config (fields that differ)", classes="heading")
            yield Static("", id="compare-config")
            yield Static("Overrides", classes="heading")
            yield Static("", id="compare-overrides")
            yield Static("Code", classes="heading")
            yield Static("", id="compare-code")
            yield Static("Executor", classes="heading")
            yield Static("", id="compare-executors")
            yield Static("Final metrics", classes="heading")
            yield Static("", id="compare-metrics")
            yield Static("", id="compare-metric-name", classes="heading")
            yield MetricsView(id="compare-plot")
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self._load(), group="compare", exclusive=True, exit_on_error=False)

    async def _load(self) -> None:
        from core.results.compare import add_final_metrics, compare
        from core.results.jobs import MetricsCache

        app: Any = self.app
        try:
            out = await app.bridge.run(compare, app.engine, self.exp_ids)
        except Exception as exc:
            self.query_one("#compare-runs", Static).update(Text(cell(str(exc)), style="bold red"))
            return
        cache = MetricsCache()
        finals = []
        self.series = []
        paired = out.jobs[0] if out.jobs else [None] * len(out.runs)  # the first job pair
        for exp_id, job in zip(out.runs, paired, strict=True):
            snaps = await app.bridge.call(cache.refresh(app.engine, exp_id))
            snap = snaps.get(job) if job else None
            self.series.append(dict(snap.series) if snap else {})
            finals.append(snap.last_values() if snap else {})
        add_final_metrics(out, finals)
        self.comparison = out
        self._show()

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for series in self.series:
            for name in series:
                names.setdefault(name, None)
        return list(names)

    def _show(self) -> None:
        out = self.comparison
        runs = Table(box=None, pad_edge=False, show_header=False)
        for i, (run, title, state) in enumerate(zip(out.runs, out.titles, out.states, strict=True)):
            runs.add_row(f"[{i + 1}]", Text(cell(run)), Text(cell(title)), state_label(state))
        parts: list[RenderableType] = [runs]
        if out.problems:
            parts.append(Text(cell("; ".join(out.problems)), style="italic yellow"))
        self.query_one("#compare-runs", Static).update(Group(*parts))
        n = len(out.runs)
        self.query_one("#compare-config", Static).update(
            _side_by_side(n, out.config, "same config in every run")
        )
        overrides = Table(box=None, pad_edge=False, show_header=False)
        for i, items in enumerate(out.overrides):
            overrides.add_row(f"[{i + 1}]", Text(cell(" ".join(items)) or "(none)"))
        self.query_one("#compare-overrides", Static).update(overrides)
        self.query_one("#compare-code", Static).update(
            _side_by_side(n, out.provenance, "same code provenance")
        )
        self.query_one("#compare-executors", Static).update(
            _side_by_side(n, out.executors, "same executor")
        )
        self.query_one("#compare-metrics", Static).update(
            _side_by_side(n, out.metrics, "no metrics found")
        )
        self._plot()

    def _plot(self) -> None:
        names = self.metric_names()
        if self.metric not in names:
            self.metric = names[0] if names else None
        curves = []
        if self.metric is not None:
            for i, series in enumerate(self.series):
                if self.metric in series:
                    curves.append(Curve(f"[{i + 1}]", self.metric, series[self.metric]))
        label = f"Curves: {self.metric} (n/p: other metrics)" if self.metric else "Curves"
        self.query_one("#compare-metric-name", Static).update(Text(cell(label)))
        self.query_one(MetricsView).set_curves(curves, "" if curves else "no metrics found")

    def action_metric(self, step: int) -> None:
        names = self.metric_names()
        if not names:
            return
        index = names.index(self.metric) if self.metric in names else 0
        self.metric = names[(index + step) % len(names)]
        self._plot()

    def action_metrics(self) -> None:
        from nemorun_tui.screens.metrics import MetricsScreen

        self.app.push_screen(MetricsScreen(self.exp_ids, metric=self.metric))

    def action_scroll(self, step: int) -> None:
        scroll = self.query_one(VerticalScroll)
        scroll.scroll_relative(y=step, animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
