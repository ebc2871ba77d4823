"""The Detail pane: one experiment in full — jobs, config, executor, handles, packaging,
the event timeline, and what changed against its parent.

:func:`load_detail` gathers everything in one blocking call that the app runs on the engine
thread; the pane only renders the resulting :class:`DetailData`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from nemorun_tui.widgets.config_outline import config_outline, node_label, root_fn
from nemorun_tui.widgets.format import cell, duration, plain_row, state_label, when, when_seconds
from nemorun_tui.widgets.jobs_panel import JobsPanel
from nemorun_tui.widgets.results_panel import ResultsPanel


@dataclass
class JobDetail:
    """What the pane shows for one job."""

    name: str
    config: dict[str, str] | None = None  # flattened, defaults included (see config_outline)
    explicit: set[str] = field(default_factory=set)  # the paths set by the recipe/overrides
    config_error: str | None = None
    executor: dict[str, Any] = field(default_factory=dict)
    executor_error: str | None = None
    provenance: dict[str, Any] | None = None
    diff: list[Any] | None = None  # core.serialize.Change items, None without a parent
    diff_error: str | None = None
    code_diff: list[str] = field(default_factory=list)  # provenance lines vs the parent


@dataclass
class DetailData:
    """An experiment, its events and per-job details, ready to render."""

    record: Any
    events: list[dict[str, Any]]
    jobs: list[JobDetail]
    parent_error: str | None = None
    parent_overrides: list[str] = field(default_factory=list)


def _code_diff(
    engine: Any, parent_id: str, job: str, provenance: dict[str, Any] | None
) -> list[str]:
    """What changed in the code against the parent: commit range, dirty diff, archive."""
    try:
        before = engine.provenance_of(parent_id, job)
    except Exception as exc:
        return [f"parent provenance unavailable: {exc}"]
    if before is None and provenance is None:
        return []
    from core.packaging import Provenance, diff_provenance

    try:
        old = Provenance.from_dict(before) if before is not None else None
        new = Provenance.from_dict(provenance) if provenance is not None else None
        return list(diff_provenance(old, new))
    except Exception as exc:
        return [f"code diff unavailable: {exc}"]


def config_tree(flat: dict[str, str], explicit: set[str]) -> Tree:
    """The config as a Rich tree: set values bold, signature defaults dim (as in Compose)."""
    tree = Tree(Text(cell(root_fn(flat) or "config"), style="bold"), guide_style="dim")
    nodes: dict[str, Tree] = {"": tree}
    for item in config_outline(flat):
        if item.value is None:
            nodes[item.path] = nodes[item.parent].add(node_label(item))
        else:
            nodes[item.parent].add(node_label(item, "bold" if item.path in explicit else "dim"))
    return tree


def load_detail(engine: Any, exp_id: str) -> DetailData:
    """Read everything Detail shows (blocking: call it on the engine thread).

    Only stored JSON is read: the config comes from each job's recorded view (or its task
    document), never from importing the task, so no user code runs in the app.
    """
    from core import serialize

    store = engine.store
    record = store.load(exp_id)
    events = store.events(exp_id)
    parent_views: dict[str, Any] = {}
    parent_error = None
    parent_overrides: list[str] = []
    if record.parent:
        try:
            parent = store.load(record.parent)
            parent_overrides = list(parent.overrides)
            for job in parent.jobs:
                try:
                    parent_views[job.name] = engine.task_view(parent.id, job.name)
                except Exception as exc:
                    parent_views[job.name] = exc
        except Exception as exc:
            parent_error = f"parent {record.parent}: {exc}"
    jobs = []
    for job in record.jobs:
        detail = JobDetail(job.name)
        view = None
        try:
            view = engine.task_view(exp_id, job.name)
            detail.config = _clipped(view.flat, 160)
            detail.explicit = set(view.explicit)
        except Exception as exc:
            detail.config_error = f"{type(exc).__name__}: {exc}"
        try:
            profile = engine.executor_of(exp_id, job.name)
            data = profile.to_dict()
            data["env_vars"] = profile.redacted_env()
            data.pop("secret_env", None)
            detail.executor = data
        except Exception as exc:
            detail.executor_error = f"{type(exc).__name__}: {exc}"
        try:
            detail.provenance = engine.provenance_of(exp_id, job.name)
        except (OSError, ValueError) as exc:
            detail.provenance = {"error": str(exc)}
        if record.parent and parent_error is None:
            before = parent_views.get(job.name)
            if before is None:
                detail.diff_error = "job not in the parent"
            elif isinstance(before, Exception):
                detail.diff_error = f"parent config unavailable: {before}"
            elif view is not None:
                try:
                    if before.with_defaults != view.with_defaults:
                        # One side has no recorded defaults: compare what both really store.
                        before = engine.task_view(record.parent, job.name, from_document=True)
                        view = engine.task_view(exp_id, job.name, from_document=True)
                    detail.diff = serialize.diff_flat(before.flat, view.flat)
                except Exception as exc:
                    detail.diff_error = f"parent config unavailable: {exc}"
            detail.code_diff = _code_diff(engine, record.parent, job.name, detail.provenance)
        jobs.append(detail)
    return DetailData(record, events, jobs, parent_error, parent_overrides)


def _clipped(flat: dict[str, str], width: int) -> dict[str, str]:
    return {k: v if len(v) <= width else v[: width - 1] + "…" for k, v in flat.items()}


class DetailPane(VerticalScroll, can_focus=True):
    """A scrollable page about one experiment."""

    DEFAULT_CSS = """
    DetailPane { height: 1fr; padding: 0 1; background: $surface; }
    DetailPane:focus { background-tint: $foreground 3%; }
    DetailPane > .section { margin-top: 1; }
    DetailPane > .heading { text-style: bold; color: $accent; margin-top: 1; }
    DetailPane > #detail-empty { color: $text-muted; padding: 1 1; }
    DetailPane > JobsPanel { border-top: none; padding: 0; max-height: 20; }
    DetailPane > JobsPanel:focus { border-top: none; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "scroll_up", "Scroll up", show=False),
        Binding("down,j", "scroll_down", "Scroll down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown,space", "page_down", "Page down", show=False),
        Binding("home,g", "scroll_home", "Top", show=False),
        Binding("end,G", "scroll_end", "Bottom", show=False),
        Binding("L", "all_logs", "Logs of every job", id="all-logs"),
        Binding("slash", "filter_runs", "Filter runs", id="detail-filter"),
        Binding("t", "manage('tag')", "Tags", id="detail-tag"),
        Binding("n", "manage('note')", "Note", id="detail-note"),
        Binding("y", "manage('copy-id')", "Copy id", show=False, id="detail-copy-id"),
        Binding("Y", "manage('copy-path')", "Copy path", show=False, id="detail-copy-path"),
        Binding("o", "manage('shell')", "Shell in run folder", show=False, id="detail-shell"),
        Binding("E", "manage('editor')", "$EDITOR", show=False, id="detail-editor"),
    ]

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        last_poll: Callable[[tuple[str, str]], float | None] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.last_poll = last_poll
        self.data: DetailData | None = None
        self.exp_id: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Select a run in Runs (1) and press enter.", id="detail-empty")
        yield Static("", id="detail-header", classes="section")
        yield Static("Jobs", classes="heading")
        yield JobsPanel(clock=self.clock, last_poll=self.last_poll, id="detail-jobs", max_rows=18)
        yield Static("Changes against the parent", classes="heading", id="detail-diff-h")
        yield Static("", id="detail-diff")
        yield Static("Config", classes="heading")
        yield Static("", id="detail-config")
        yield Static("Executor, handles and packaging", classes="heading")
        yield Static("", id="detail-executor")
        yield Static("Event timeline", classes="heading")
        yield Static("", id="detail-events")
        yield ResultsPanel(id="detail-results")  # why it failed, artifacts (loaded after)

    def on_mount(self) -> None:
        """Start empty."""
        self._set_visible(False)

    def _set_visible(self, shown: bool) -> None:
        for child in self.children:
            child.display = shown if child.id != "detail-empty" else not shown

    def current_exp_id(self) -> str | None:
        """The experiment shown (the app's keys act on it)."""
        return self.exp_id

    def focus_default(self) -> None:
        """Focus the page so arrows scroll it."""
        self.focus()

    def show_loading(self, exp_id: str) -> None:
        """Say what is loading (the data arrives from a worker)."""
        self.exp_id = exp_id
        if self.data is None or self.data.record.id != exp_id:
            self._set_visible(False)
            self.query_one("#detail-empty", Static).update(Text(cell(f"loading {exp_id}…")))

    def show_error(self, exp_id: str, message: str) -> None:
        """The experiment could not be read."""
        self.exp_id = exp_id
        self.data = None
        self._set_visible(False)
        self.query_one("#detail-empty", Static).update(Text(cell(f"{exp_id}: {message}")))

    def show(self, data: DetailData) -> None:
        """Render an experiment."""
        first = self.data is None or self.data.record.id != data.record.id
        self.data = data
        self.exp_id = data.record.id
        self._set_visible(True)
        self.query_one("#detail-header", Static).update(self._header(data))
        self.query_one(JobsPanel).show(data.record)
        self.query_one(ResultsPanel).load(data.record)
        has_parent = bool(data.record.parent)
        self.query_one("#detail-diff-h").display = has_parent
        self.query_one("#detail-diff").display = has_parent
        if has_parent:
            self.query_one("#detail-diff", Static).update(self._diff(data))
        self.query_one("#detail-config", Static).update(self._config(data))
        self.query_one("#detail-executor", Static).update(self._executor(data))
        self.query_one("#detail-events", Static).update(self._events(data))
        if first:
            self.scroll_home(animate=False)

    def action_all_logs(self) -> None:
        """Open one log tab per job of this experiment."""
        from nemorun_tui.messages import OpenLogs

        if self.data is None:
            return
        for job in self.data.record.jobs:
            if job.handle is not None:
                self.post_message(OpenLogs(self.data.record.id, job.name, sender=self))

    def action_filter_runs(self) -> None:
        """``/``: a page has nothing to narrow, so it goes to the Runs filter (and says so)."""
        self.app.run_worker(self.app.run_action("filter"))

    def action_manage(self, action: str) -> None:
        """Edit the tags or note of this run, copy its id or path, open its folder."""
        from nemorun_tui.messages import ManageRequested

        if self.exp_id is not None:
            self.post_message(ManageRequested(action, [self.exp_id]))

    def tick(self) -> None:
        """Keep the jobs' ages current (re-renders only if their text changed)."""
        self.query_one(JobsPanel).tick()

    # -- sections ------------------------------------------------------------------------------
    @staticmethod
    def _kv_table() -> Table:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        return table

    def _header(self, data: DetailData) -> RenderableType:
        r = data.record
        table = self._kv_table()
        plain_row(table, "title", Text(cell(r.title), style="bold"))
        plain_row(table, "id", r.id)
        plain_row(table, "state", state_label(r.state.value))
        plain_row(table, "created", when(r.created_at))
        if r.ended_at is not None:
            plain_row(table, "ended", when(r.ended_at))
        if r.parent:
            plain_row(table, "parent", r.parent)
        tags = Text(cell(", ".join(r.tags))) if r.tags else Text("(none: t adds some)", "dim")
        plain_row(table, "tags", tags)
        note = getattr(r, "note", "")
        plain_row(table, "note", Text(cell(note)) if note else Text("(none: n adds one)", "dim"))
        if getattr(r, "archived", False):
            plain_row(table, "archived", "yes (hidden from the Runs list)")
        if r.recipe:
            plain_row(table, "recipe", f"{r.recipe}  ({r.workspace or '-'})")
        if r.overrides:
            plain_row(table, "overrides", " ".join(r.overrides))
        return table

    def _diff(self, data: DetailData) -> RenderableType:
        r = data.record
        if data.parent_error:
            return Text(cell(data.parent_error), style="italic")
        parts: list[RenderableType] = [Text(cell(f"vs parent {r.parent}"), style="dim")]
        new_overrides = [o for o in r.overrides if o not in data.parent_overrides]
        if new_overrides:
            parts.append(Text(cell("overrides added: " + " ".join(new_overrides))))
        for job in data.jobs:
            if len(data.jobs) > 1:
                parts.append(Text(cell(job.name), style="bold"))
            if job.diff_error:
                parts.append(Text(cell(f"  {job.diff_error}"), style="italic"))
            elif job.diff is not None and not job.diff:
                parts.append(Text("  no config changes", style="dim"))
            elif job.diff:
                for change in job.diff:
                    line = Text("  ")
                    line.append(cell(change.path), style="bold")
                    line.append(": ")
                    line.append("(unset)" if change.old is None else cell(change.old), style="red")
                    line.append(" → ")
                    new = "(unset)" if change.new is None else cell(change.new)
                    line.append(new, style="green")
                    parts.append(line)
            for code_line in job.code_diff:
                parts.append(Text(cell(f"  {code_line}"), style="yellow"))
        return Group(*parts)

    def _config(self, data: DetailData) -> RenderableType:
        parts: list[RenderableType] = []
        for job in data.jobs:
            if len(data.jobs) > 1:
                parts.append(Text(cell(job.name), style="bold"))
            if job.config_error:
                parts.append(Text(cell(f"config unavailable: {job.config_error}"), style="italic"))
            elif job.config is not None:
                parts.append(config_tree(job.config, job.explicit))
        return Group(*parts)

    def _executor(self, data: DetailData) -> RenderableType:
        parts: list[RenderableType] = []
        for job, rec in zip(data.jobs, data.record.jobs, strict=False):
            table = self._kv_table()
            plain_row(table, "job", Text(cell(job.name), style="bold"))
            plain_row(table, "handle", handle_text(rec.handle) if rec.handle else "(not submitted)")
            if rec.submitted_at:
                plain_row(table, "submitted", when_seconds(rec.submitted_at))
            if rec.started_at:
                waited = rec.queued
                started = when_seconds(rec.started_at)
                if waited is not None and waited >= 1:
                    started = f"{started} (queued {duration(waited)})"
                plain_row(table, "started", started)
            from nemorun_tui.job_status import detail_rows

            retries = job.executor.get("retries")
            for key, value in detail_rows(rec, retries if isinstance(retries, int) else None):
                plain_row(table, key, value)
            if job.executor_error:
                plain_row(table, "executor", Text(cell(job.executor_error), style="italic"))
            for key, value in sorted(job.executor.items()):
                if value in (None, {}, [], "") and key not in ("backend",):
                    continue
                plain_row(table, key, setting_text(key, value))
            if job.provenance is not None:
                plain_row(table, "packaging", _provenance_line(job.provenance))
                dirty = job.provenance.get("dirty_files") or []
                if dirty:
                    plain_row(table, "dirty files", ", ".join(dirty[:10]))
            else:
                plain_row(table, "packaging", Text("no provenance recorded", style="dim"))
            parts.append(table)
        return Group(*parts)

    def _events(self, data: DetailData) -> RenderableType:
        table = Table(box=None, pad_edge=False, header_style="bold dim", expand=False)
        for header in ("TIME", "JOB", "EVENT", "SOURCE", "DETAIL"):
            table.add_column(header, no_wrap=header != "DETAIL")
        for event in data.events:
            kind = event.get("kind", "?")
            at = event.get("observed_at") or event.get("t")
            if kind == "state":
                what = f"{event.get('from')} → {event.get('to')}"
                detail = []
                if event.get("exit_code") is not None:
                    detail.append(f"exit {event['exit_code']}")
                if event.get("reason"):
                    detail.append(str(event["reason"]))
                extra = "; ".join(detail)
            elif kind == "created":
                what = "created"
                extra = f"parent {event['parent']}" if event.get("parent") else ""
            elif kind == "submitted":
                what = "submitted"
                extra = handle_text_of(str(event.get("handle", "")))
            else:
                what = kind
                extra = ", ".join(
                    f"{k}={v}" for k, v in sorted(event.items()) if k not in ("t", "kind", "job")
                )
            plain_row(
                table,
                when_seconds(at) if isinstance(at, int | float) else "-",
                str(event.get("job") or ""),
                what,
                str(event.get("source") or ("engine" if kind == "submitted" else "")),
                extra,
            )
        return table


def handle_text(handle: Any) -> str:
    """A job's handle as a person reads it: ``12345 on slurm at ssh://me@login`` or, for a
    local job, its process directory (the ``local://local//tmp/…`` URL form said it twice)."""
    if handle.backend == handle.target or handle.target in ("", "local"):
        return f"{handle.job_id}  ({handle.backend})"
    return f"{handle.job_id}  ({handle.backend} at {handle.target})"


def handle_text_of(stored: str) -> str:
    """:func:`handle_text` for a handle stored as its URL (``local://local//tmp/x``)."""
    from core.engine.protocol import Handle

    backend, sep, rest = stored.partition("://")
    if not sep:
        return stored
    if "://" in rest:  # a target that is itself a URL: ssh://me@login/12345
        scheme, _, tail = rest.partition("://")
        host, _, job_id = tail.partition("/")
        target = f"{scheme}://{host}"
    else:
        target, _, job_id = rest.partition("/")
    return handle_text(Handle(backend, target, job_id))


def setting_text(key: str, value: Any) -> str:
    """One executor setting, readable: a tunnel as ``ssh me@login:22`` (job dir …), a
    table as ``k=v`` pairs, a list comma-separated — never raw JSON."""
    if isinstance(value, dict):
        data = {k: v for k, v in value.items() if v not in (None, "", {}, [])}
        kind = str(data.pop("__type__", ""))
        if key == "tunnel" or kind.endswith("Tunnel"):
            if kind == "LocalTunnel" or not data.get("host"):
                job_dir = data.get("job_dir")
                return f"this machine, job dir {job_dir}" if job_dir else "this machine"
            user = f"{data.pop('user')}@" if data.get("user") else ""
            port = f":{data.pop('port')}" if data.get("port") else ""
            text = f"ssh {user}{data.pop('host')}{port}"
            rest = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(data.items()))
            return f"{text} ({rest})" if rest else text
        pairs = ", ".join(f"{k}={setting_text(k, v)}" for k, v in sorted(data.items()))
        if kind:  # a typed value (a launcher): its type is half of what it says
            return f"{kind}({pairs})"
        return pairs or "-"
    if isinstance(value, list):
        return ", ".join(setting_text(key, v) for v in value) or "-"
    return str(value)


def _provenance_line(prov: dict[str, Any]) -> str:
    if "error" in prov and len(prov) == 1:
        return f"unreadable provenance.json: {prov['error']}"
    parts = [str(prov.get("packager", "?"))]
    if prov.get("git_commit"):
        parts.append(str(prov["git_commit"])[:12])
    if prov.get("git_branch"):
        parts.append(f"on {prov['git_branch']}")
    if prov.get("dirty_files") or prov.get("dirty_diff_sha256"):
        parts.append("(+dirty)")
    if prov.get("archive_sha256"):
        parts.append(f"sha256:{str(prov['archive_sha256'])[:12]}")
    if prov.get("file_count"):
        parts.append(f"{prov['file_count']} files")
    return " ".join(parts)
