"""Detail's "what it produced" part: why a job failed (with its log lines) and its artifacts.

Loaded after the rest of Detail, in a worker on the engine thread: finding a cause reads the
tail of the job's logs and listing artifacts lists its job dir, both possibly over SSH, and
Detail must not wait for either. In the artifact list, ``f`` fetches the highlighted file
(resumable, verified, into ``./nemorun-fetched/<run>/``), ``y`` copies its path and ``R``
opens edit-and-relaunch with a checkpoint in the recipe's checkpoint field.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from nemorun_tui.widgets.format import cell, when

#: Where the app puts fetched artifacts (relative to the directory it was started in).
FETCH_DIR = "nemorun-fetched"


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(n)


class ArtifactsList(OptionList):
    """One line per artifact; checkpoints first-class (marked)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "fetch", "Fetch artifact", id="artifact-fetch"),
        Binding("y", "copy_path", "Copy path", id="artifact-copy"),
        Binding("R", "resume", "Relaunch from checkpoint", id="artifact-resume"),
    ]

    DEFAULT_CSS = """
    ArtifactsList { height: auto; max-height: 14; border: none; padding: 0; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.items: list[tuple[str, str, Any]] = []  # (exp_id, job, Artifact)
        self.job_dirs: dict[str, str] = {}
        self.last_fetched: Any = None

    def set_items(self, items: list[tuple[str, str, Any]], job_dirs: dict[str, str]) -> None:
        self.items = items
        self.job_dirs = job_dirs
        self.clear_options()
        for index, (_, job, a) in enumerate(items):
            mark = "ckpt" if a.checkpoint else ("dir " if a.kind == "d" else "    ")
            size = "" if a.kind == "d" else size_text(a.size)
            text = Text(no_wrap=True, overflow="ellipsis")
            text.append(f"{mark} ", style="bold green" if a.checkpoint else "dim")
            text.append(f"{cell(job)}: {cell(a.path)}")
            text.append(f"  {size}  {when(a.mtime)}", style="dim")
            if a.sha256:
                text.append(f"  sha256:{a.sha256[:10]}", style="dim")
            self.add_option(Option(text, id=str(index)))

    def selected_item(self) -> tuple[str, str, Any] | None:
        if self.highlighted is None or not (0 <= self.highlighted < len(self.items)):
            return None
        return self.items[self.highlighted]

    def full_path(self, job: str, path: str) -> str:
        from core.results.artifacts import absolute

        return absolute(self.job_dirs.get(job, ""), path)

    def action_copy_path(self) -> None:
        item = self.selected_item()
        if item is None:
            return
        path = self.full_path(item[1], item[2].path)
        self.app.copy_to_clipboard(path)
        self.app.notify(f"copied {path}", timeout=3)

    def action_resume(self) -> None:
        """Edit-and-relaunch with this checkpoint in the recipe's checkpoint field."""
        item = self.selected_item()
        if item is None:
            return
        if not item[2].checkpoint:
            self.app.notify("not a checkpoint", severity="warning", timeout=3)
            return
        self.run_worker(self._resume(*item), group="resume", exit_on_error=False)

    async def _resume(self, exp_id: str, job: str, artifact: Any) -> None:
        from core.results.resume import resume_override
        from nemorun_tui.widgets.compose_pane import ComposeSource

        app: Any = self.app
        job_dir = self.job_dirs.get(job, "")
        try:
            override = await app.bridge.run(
                resume_override, app.engine, exp_id, job, job_dir, artifact.path
            )
        except Exception as exc:
            app.notify(str(exc), severity="warning", timeout=8)
            return
        await app.panes()
        app.compose_pane.start(ComposeSource(parent=exp_id, overrides=[override]))
        await app.action_pane("compose")

    def action_fetch(self) -> None:
        item = self.selected_item()
        if item is None:
            return
        exp_id, job, artifact = item
        if artifact.kind == "d":
            self.app.notify("a folder: fetch its files one by one", severity="warning")
            return
        self.run_worker(self._fetch(exp_id, job, artifact), group="fetch", exit_on_error=False)

    async def _fetch(self, exp_id: str, job: str, artifact: Any) -> None:
        from core.progress import RateMeter, describe_transfer
        from core.results.fetch import fetch, source_path
        from core.results.locate import locate

        app: Any = self.app
        parts = [p for p in artifact.path.split("/") if p not in ("", ".")]
        if ".." in parts or not parts:  # a listing is remote data: never a way out of here
            app.report_error(f"refusing to fetch {artifact.path!r}: not a plain path", every=0)
            return
        dest = Path.cwd() / FETCH_DIR / exp_id / job / Path(*parts)

        def show(done: int, total: int, rate: float) -> None:
            app.call_from_thread(
                app.notify, describe_transfer(done, total, rate), title="Fetching", timeout=3
            )

        meter = RateMeter(show, min_interval=2.0)

        async def go() -> Any:
            outputs = await locate(app.engine, exp_id, job)
            source = source_path(outputs, artifact.path, allow_outside=True)
            return await fetch(outputs, source, dest, progress=meter)

        try:
            result = await app.bridge.call(go())
        except Exception as exc:
            app.report_error(f"fetch of {artifact.path} failed: {exc}", every=0)
            return
        self.last_fetched = result
        app.notify(f"{result.dest} (sha256 verified)", title="Fetched", timeout=6)


class ResultsPanel(Vertical):
    """The failure cause of each failed job, and every job's artifacts."""

    DEFAULT_CSS = """
    ResultsPanel { height: auto; }
    ResultsPanel > .heading { text-style: bold; color: $accent; margin-top: 1; }
    ResultsPanel > #results-cause { height: auto; }
    ResultsPanel > #results-artifacts-note { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.exp_id: str | None = None
        self.causes: dict[str, Any] = {}
        self.listings: dict[str, Any] = {}
        self.loaded_at: float | None = None

    def compose(self) -> ComposeResult:
        yield Static("Why it failed", classes="heading", id="results-cause-h")
        yield Static("", id="results-cause")
        yield Static("Artifacts", classes="heading")
        yield Static("listing…", id="results-artifacts-note")
        yield ArtifactsList(id="results-artifacts")

    def load(self, record: Any) -> None:
        """Find causes and list artifacts of ``record``'s jobs (in a worker)."""
        if record.id != self.exp_id:
            self.causes, self.listings = {}, {}
            self._show_causes()
            self.query_one("#results-artifacts-note", Static).update("listing…")
            self.query_one(ArtifactsList).set_items([], {})
        self.exp_id = record.id
        self.run_worker(self._load(record), group="results", exclusive=True, exit_on_error=False)

    async def _load(self, record: Any) -> None:
        from core.results.jobs import artifacts
        from core.results.triage import triage

        app: Any = self.app
        engine = app.engine

        async def gather() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
            causes: dict[str, Any] = {}
            listings: dict[str, Any] = {}
            problems: list[str] = []
            for job in record.jobs:
                if job.state.value in ("FAILED", "CANCELLED", "UNKNOWN", "PENDING"):
                    try:
                        found = await triage(engine, record.id, job.name)
                    except Exception as exc:
                        problems.append(f"{job.name}: cause unavailable ({exc})")
                        found = None
                    if found is not None:
                        causes[job.name] = found
                if job.handle is None:
                    continue
                try:
                    listings[job.name] = await artifacts(engine, record.id, job.name)
                except Exception as exc:
                    problems.append(f"{job.name}: {type(exc).__name__}: {exc}")
            return causes, listings, problems

        causes, listings, problems = await app.bridge.call(gather())
        if self.exp_id != record.id:
            return
        self.causes, self.listings = causes, listings
        self.loaded_at = time.time()
        self._show_causes()
        items = [
            (record.id, job, a) for job, listing in listings.items() for a in listing.artifacts
        ]
        job_dirs = {job: listing.job_dir for job, listing in listings.items()}
        notes = [cell(p) for p in problems]
        notes += [
            cell(f"{job}: {listing.problem}")
            for job, listing in listings.items()
            if listing.problem
        ]
        count = len(items)
        ckpts = sum(1 for _, _, a in items if a.checkpoint)
        summary = (
            f"{count} files and folders, {ckpts} checkpoints · f fetch · y copy path · "
            "R relaunch from checkpoint"
            if count
            else "no artifacts: nothing under NEMORUN_JOB_DIR yet"
        )
        self.query_one("#results-artifacts-note", Static).update(Text("\n".join([summary, *notes])))
        self.query_one(ArtifactsList).set_items(items, job_dirs)

    def _show_causes(self) -> None:
        shown = bool(self.causes)
        self.query_one("#results-cause-h").display = shown
        widget = self.query_one("#results-cause", Static)
        widget.display = shown
        if not shown:
            return
        table = Table(box=None, show_header=False, pad_edge=False, expand=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for job, cause in self.causes.items():
            table.add_row(Text(cell(job)), Text(f"{cell(cause.summary)}  [{cause.kind}]"))
            for line in cause.lines:
                table.add_row(
                    Text(f"{line.stream}@{line.offset}", style="dim"), Text(cell(line.text))
                )
            if cause.stream:
                table.add_row("", Text(f"l opens the log on {cause.stream}", style="dim italic"))
        widget.update(table)
