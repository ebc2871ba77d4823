"""The Compose pane: pick a recipe (or a past run), edit its config tree, preview, launch.

Editing is override-based: every field edit becomes a dotted override (``trainer.max_steps=
50``) and the plan is rebuilt from the recipe (or from the parent run) with the full list of
overrides, through the same :func:`core.overrides.apply_overrides` the CLI uses. A value that
does not fit the field's type is rejected inline with the reason and nothing changes. The
launched experiment records its overrides — and, for edit-and-relaunch, its parent.

Plans are built on the engine thread, and whatever needs the user's code (listing recipes,
building them, applying overrides) runs in the workspace helper process: the app itself never
imports the workspace. The pane only renders the results.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, OptionList, Select, Static, Tree
from textual.widgets.option_list import Option

from nemorun_tui.widgets.config_outline import config_outline, node_label
from nemorun_tui.widgets.format import block, cell

if TYPE_CHECKING:
    from core.engine import Plan
    from nemorun_tui.app import NemorunApp

_ENUM_DISPLAY = re.compile(r"^[A-Za-z_]\w*\.([A-Za-z_]\w*)$")


@dataclass
class ComposeSource:
    """Where the plan comes from: a recipe of the workspace, or a past experiment."""

    recipe: str | None = None
    parent: str | None = None
    title: str | None = None
    overrides: list[str] = field(default_factory=list)
    profile: str | None = None  # None: the recipe's default profile / the parent's executor
    tags: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class BuiltPlan:
    """A plan plus what the tree shows for each of its jobs."""

    plan: Plan
    flat: dict[str, dict[str, str]]  # job -> path -> display value (with defaults)
    explicit: dict[str, set[str]]  # job -> paths set explicitly (not signature defaults)
    help: str = ""


def profile_label(settings: Any, name: str) -> str:
    """``ci · slurm at ssh://me@login``: a profile's name and where it runs."""
    try:
        profile = settings.profile(name)
    except Exception as exc:  # a broken profile is listed, with why
        return f"{name} · broken: {exc}"[:60]
    target = profile.target()
    where = (
        profile.backend
        if target in ("", "local", profile.backend)
        else (f"{profile.backend} at {target}")
    )
    return f"{name} · {where}"


def _walk_nodes(node: Any) -> Any:
    """Every node under ``node``, depth first, in screen order."""
    for child in node.children:
        yield child
        yield from _walk_nodes(child)


def override_path(text: str) -> str:
    """The dotted path of an override (``a.b`` of ``a.b*=2``)."""
    match = re.match(r"\s*([A-Za-z_][\w.]*)\s*(?:\+=|-=|\*=|/=|=)", text)
    return match.group(1) if match else text


async def build_plan(
    engine: Any, helper: Any, workspace: str | None, source: ComposeSource
) -> BuiltPlan:
    """Build the plan for ``source`` (on the engine loop; raises the refusal as an error).

    Whatever needs the user's code (building the recipe, applying overrides to a stored
    task) runs in the workspace helper process (:mod:`core.engine.workspace_helper`); this process
    only ever holds the stored documents and their views.
    """
    from core.engine import Plan
    from core.engine.executor_overrides import apply_executor_overrides, split_overrides

    # ``executor.nodes=2`` sets the launch's executor, every other override the task.
    task_overrides, executor_overrides = split_overrides(source.overrides)
    help_text = ""
    if source.parent is not None:
        tasks = {}
        if task_overrides:  # as-is needs no user code: the stored documents are reused
            tasks = await helper.rebuild(str(engine.store.home), source.parent, task_overrides)
        plan = engine.relaunch_plan(
            source.parent, task_overrides, executor=source.profile, tasks=tasks
        )
        if source.title:
            plan.title = source.title
    else:
        if source.recipe is None:
            raise ValueError("pick a recipe first")
        built = await helper.build(workspace, source.recipe, task_overrides)
        help_text = built.help
        plan = Plan(
            title=source.title or built.title,
            workspace=built.workspace,
            recipe=built.recipe,
            overrides=list(source.overrides),
        )
        plan.add(built.task, engine.profile(source.profile), name=built.recipe)
    if executor_overrides:
        for job in plan.jobs:
            job.executor = apply_executor_overrides(job.executor, executor_overrides)
        if source.parent is not None:  # recorded with the run (Detail, the CLI show them)
            plan.overrides = [*plan.overrides, *executor_overrides]
    if source.tags:
        plan.tags = list(source.tags)
    if source.note:
        plan.note = source.note
    flat = {}
    explicit = {}
    for job in plan.jobs:
        view = job.task.view_or_document()
        flat[job.name] = view.flat
        explicit[job.name] = set(view.explicit)
    return BuiltPlan(plan, flat, explicit, help_text)


@dataclass(frozen=True)
class FieldRef:
    """A tree node's field: job name and dotted path inside that job's task."""

    job: str
    path: str
    value: str
    leaf: bool


class FieldEditor(Input):
    """Inline editor for one field; escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel edit", show=False),
    ]

    class Cancelled(Message):
        """The user left the editor without applying."""

    def action_cancel(self) -> None:
        """Leave without applying."""
        self.post_message(self.Cancelled())


class ConfigTree(Tree[FieldRef]):
    """The task as a tree; leaves are editable fields."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Edit field", id="edit-field"),
        Binding("backspace,delete", "reset_field", "Reset field", id="reset-field"),
    ]

    class ResetField(Message):
        """Remove the override of the highlighted field."""

        def __init__(self, ref: FieldRef) -> None:
            super().__init__()
            self.ref = ref

    def action_reset_field(self) -> None:
        """Drop the override on the highlighted field."""
        node = self.cursor_node
        if node is not None and node.data is not None:
            self.post_message(self.ResetField(node.data))


class ComposePane(Vertical):
    """Recipe list, config tree with inline editing, executor profile, dry-run preview."""

    DEFAULT_CSS = """
    ComposePane { height: 1fr; }
    ComposePane > #compose-heading { height: auto; padding: 0 1; background: $panel; }
    ComposePane #compose-body { height: 1fr; }
    ComposePane #compose-left { width: 30; border-right: solid $primary 30%; }
    ComposePane #compose-left > Label { padding: 0 1; text-style: bold; color: $accent; }
    ComposePane #recipes { height: 1fr; border: none; }
    ComposePane #profile { margin: 0; }
    ComposePane #profile-help { padding: 0 1; color: $text-muted; height: auto; }
    ComposePane #compose-center { width: 1fr; }
    ComposePane #config-tree { height: 1fr; }
    ComposePane #field-editor { display: none; }
    ComposePane.-editing #field-editor { display: block; }
    ComposePane #field-error { height: auto; color: $error; padding: 0 1; display: none; }
    ComposePane #field-error.-shown { display: block; }
    ComposePane #overrides { height: auto; padding: 0 1; color: $text-muted; }
    ComposePane #compose-right { width: 1fr; border-left: solid $primary 30%; }
    ComposePane #compose-right > Label { padding: 0 1; text-style: bold; color: $accent; }
    ComposePane #dryrun { padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+l", "launch", "Launch", id="launch", priority=True),
        Binding("o", "add_override", "Add override", id="add-override"),
        Binding("p", "focus_profile", "Executor", id="profile"),
        Binding("t", "focus_recipes", "Recipes", id="recipes", show=False),
        Binding("m", "run_info", "Title, tags, note", id="run-info"),
        Binding("slash", "find_field", "Find field", id="find-field"),
    ]

    class LaunchRequested(Message):
        """Launch this plan (the app records and submits it)."""

        def __init__(self, plan: Plan) -> None:
            super().__init__()
            self.plan = plan

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = ComposeSource()
        self.built: BuiltPlan | None = None
        self.workspace: Any = None
        self.workspace_error: str | None = None
        self._editing: FieldRef | None = None
        self._free_override = False
        self._finding = False
        self._find_text = ""
        self._dryrun_text = ""

    def compose(self) -> ComposeResult:
        yield Static("Compose: pick a recipe on the left.", id="compose-heading")
        with Horizontal(id="compose-body"):
            with Vertical(id="compose-left"):
                yield Label("Recipes")
                yield OptionList(id="recipes")
                yield Label("Executor profile")
                yield Select[str]([], id="profile", allow_blank=True, prompt="default profile")
                yield Static("", id="profile-help")
            with Vertical(id="compose-center"):
                yield ConfigTree("config", id="config-tree")
                yield Static("", id="field-error")
                yield FieldEditor(id="field-editor")
                yield Static("", id="overrides")
            with Vertical(id="compose-right"):
                yield Label("Dry run (what would be submitted)")
                with VerticalScroll():
                    yield Static("", id="dryrun")

    @property
    def nemorun(self) -> NemorunApp:
        """The app, typed: this pane only ever runs inside NemorunApp."""
        return cast("NemorunApp", self.app)

    @property
    def config_tree(self) -> ConfigTree:
        """The config tree."""
        return self.query_one(ConfigTree)

    def on_mount(self) -> None:
        """Load the workspace and profiles on the engine thread."""
        self.config_tree.show_root = False
        self._load_workspace()

    def focus_default(self) -> None:
        """Focus the tree when a plan is shown, else the recipe list."""
        if self.built is not None or self.source.recipe or self.source.parent:
            self.config_tree.focus()
        else:
            self.query_one("#recipes", OptionList).focus()

    def current_exp_id(self) -> str | None:
        """Compose acts on a parent run when relaunching, else nothing."""
        return self.source.parent

    # -- workspace ------------------------------------------------------------------------
    @work(group="compose-workspace", exclusive=True, exit_on_error=False)
    async def _load_workspace(self) -> None:
        app = self.nemorun
        ref = app.workspace

        self._show_profiles()
        try:
            self.workspace = await app.bridge.call(app.workspace_helper.discover(ref))
        except Exception as exc:
            self.workspace_error = str(exc) or type(exc).__name__
            self.query_one("#compose-heading", Static).update(
                Text(block(f"workspace {ref}: {self.workspace_error}"), style="bold red")
            )
            return
        options = []
        for name, recipe in sorted(self.workspace.recipes.items()):
            label = Text(cell(name), style="bold")
            if recipe.help:
                label.append(f"\n{cell(recipe.help)}", style="dim")
            options.append(Option(label, id=name))
        recipes = self.query_one("#recipes", OptionList)
        highlighted = recipes.highlighted_option.id if recipes.highlighted_option else None
        recipes.clear_options()
        recipes.add_options(options)
        if options:
            # A reload keeps the recipe the user was on (if it still exists).
            names = [o.id for o in options]
            recipes.highlighted = names.index(highlighted) if highlighted in names else 0
        for error in self.workspace.errors:
            app.notify(error, title="Workspace", severity="warning")
        if self.source.recipe is None and self.source.parent is None:
            self.query_one("#compose-heading", Static).update(
                Text(
                    f"Compose: {len(options)} recipes from {self.workspace.source or ref}. "
                    "Pick one (enter), edit fields (enter), launch with ctrl+l."
                )
            )

    def _show_profiles(self) -> None:
        """Profiles with what they are (``gpu · local``, ``ci · slurm at ssh://…``), and
        what "default" means: the blank choice is config.toml's ``default_executor``."""
        settings = self.nemorun.engine.settings
        options = [(profile_label(settings, name), name) for name in settings.profile_names()]
        select = self.query_one("#profile", Select)
        with select.prevent(Select.Changed):
            select.set_options(options)
            if self.source.profile in settings.profile_names():
                select.value = self.source.profile
        default = settings.default_executor
        where = f" in {settings.path}" if settings.path else " (no config.toml)"
        self.query_one("#profile-help", Static).update(
            Text(
                f"blank: the default, {cell(default)} (default_executor{where}); "
                "add profiles under [executors.NAME]; p picks one",
                style="dim",
            )
        )
        select.prompt = f"default ({cell(default)})"

    def reload(self) -> None:
        """config.toml or the workspace changed: list profiles and recipes again, and
        rebuild the plan on screen with the same overrides (nothing is lost)."""
        self._show_profiles()
        self._load_workspace()
        if self.source.recipe or self.source.parent:
            self._rebuild(None)

    def action_run_info(self) -> None:
        """Set the title, tags and note the launched run records."""
        self._ask_run_info()

    @work(group="compose-run-info", exclusive=True, exit_on_error=False)
    async def _ask_run_info(self) -> None:
        from nemorun_tui.screens.text_input import TextInputScreen, split_tags

        if self.built is None:
            self.app.notify("pick a recipe first", severity="warning", timeout=3)
            return
        source = self.source
        screen: Any = TextInputScreen(
            "The run to launch",
            [
                ("title", source.title or self.built.plan.title, "a short name for the run"),
                ("tags (spaces or commas)", " ".join(source.tags), "baseline lr-sweep"),
                ("note", source.note, "why this run"),
            ],
        )
        answer = await self.app.push_screen_wait(screen)
        if answer is None:
            return
        title, tags, note = answer
        try:
            from core.store.files import check_note, check_tags

            source.tags = check_tags(split_tags(tags))
            source.note = check_note(note)
        except Exception as exc:
            self.app.notify(str(exc), severity="error", timeout=6)
            return
        source.title = title.strip() or None
        self._rebuild(None)

    @on(OptionList.OptionSelected, "#recipes")
    def _recipe_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is None:
            return
        self.start(ComposeSource(recipe=event.option.id))
        self.config_tree.focus()

    @on(Select.Changed, "#profile")
    def _profile_changed(self, event: Select.Changed) -> None:
        value = event.value if isinstance(event.value, str) else None
        if value != self.source.profile and (self.source.recipe or self.source.parent):
            self.source.profile = value
            self._rebuild(None)

    # -- starting points ---------------------------------------------------------------------
    def start(self, source: ComposeSource) -> None:
        """Show a new starting point (a recipe, or a run to edit and relaunch)."""
        self.source = source
        self.built = None
        self._hide_error()
        self._close_editor()
        self.config_tree.clear()
        recipes = self.query_one("#recipes", OptionList)
        if source.recipe is not None:
            with contextlib.suppress(Exception):  # the list may not be loaded yet
                recipes.highlighted = recipes.get_option_index(source.recipe)
        select = self.query_one("#profile", Select)
        with select.prevent(Select.Changed):
            if source.profile is None:
                select.clear()
            else:
                select.value = source.profile
        self._rebuild(None)

    # -- editing ------------------------------------------------------------------------------
    @on(Tree.NodeSelected, "#config-tree")
    def _node_selected(self, event: Tree.NodeSelected[FieldRef]) -> None:
        ref = event.node.data
        if ref is None or not ref.leaf:
            return
        event.stop()
        self._open_editor(ref)

    def _open_editor(self, ref: FieldRef) -> None:
        self._editing = ref
        self._free_override = False
        editor = self.query_one(FieldEditor)
        value = ref.value
        enum_match = _ENUM_DISPLAY.match(value)
        if enum_match and not value.startswith(("'", '"')):
            value = enum_match.group(1)
        editor.value = "" if value == "<required>" else value
        editor.placeholder = f"{self._dotted(ref)} = …  (enter applies, escape cancels)"
        editor.border_title = self._dotted(ref)
        self.add_class("-editing")
        editor.focus()

    def action_find_field(self) -> None:
        """``/``: type part of a field's path; enter puts the cursor on the next match."""
        if self.built is None:
            self.query_one("#recipes", OptionList).focus()
            self.app.notify("pick a recipe first; then / finds a field", timeout=3)
            return
        self._editing = None
        self._free_override = False
        self._finding = True
        editor = self.query_one(FieldEditor)
        editor.value = self._find_text
        editor.placeholder = "find a field: part of its path (enter: next match)"
        editor.border_title = "find field"
        self.add_class("-editing")
        editor.focus()

    def find_field(self, text: str) -> bool:
        """Move the tree cursor to the next leaf whose path holds ``text`` (wrapping)."""
        tree = self.config_tree
        leaves = [n for n in _walk_nodes(tree.root) if n.data is not None and n.data.leaf]
        needle = text.lower()
        hits = [n for n in leaves if needle in f"{n.data.job}.{n.data.path}".lower()]
        if not hits:
            return False
        current = tree.cursor_node
        after = [n for n in hits if current is not None and n.line > current.line]
        tree.move_cursor((after or hits)[0])
        return True

    def action_add_override(self) -> None:
        """Type a free override (``trainer=small_trainer``, ``lr*=2``, …)."""
        if self.built is None:
            self.app.notify("pick a recipe first", severity="warning", timeout=3)
            return
        self._editing = None
        self._free_override = True
        editor = self.query_one(FieldEditor)
        editor.value = ""
        editor.placeholder = "override, e.g. trainer=small_trainer or optimizer.lr*=2"
        editor.border_title = "override"
        self.add_class("-editing")
        editor.focus()

    def _dotted(self, ref: FieldRef) -> str:
        multi = self.built is not None and len(self.built.plan.jobs) > 1
        return f"{ref.job}.{ref.path}" if multi else ref.path

    @on(Input.Submitted, "#field-editor")
    def _editor_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if self._finding:
            self._find_text = text
            found = bool(text) and self.find_field(text)
            self._close_editor()
            if text and not found:
                self.app.notify(f"no field matches “{text}”", severity="warning", timeout=3)
            return
        if self._free_override:
            if not text:
                self._close_editor()
                return
            self._rebuild(text, free=True)
            return
        ref = self._editing
        if ref is None:
            return
        self._rebuild(f"{self._dotted(ref)}={text}")

    @on(FieldEditor.Cancelled)
    def _editor_cancelled(self) -> None:
        self._hide_error()
        self._close_editor()

    def _close_editor(self) -> None:
        self.remove_class("-editing")
        self._editing = None
        self._free_override = False
        self._finding = False
        if self.built is not None:
            self.config_tree.focus()

    @on(ConfigTree.ResetField)
    def _reset_field(self, event: ConfigTree.ResetField) -> None:
        path = self._dotted(event.ref)
        kept = [o for o in self.source.overrides if override_path(o) != path]
        if kept == self.source.overrides:
            self.app.notify(f"{path} has no override to reset", timeout=2)
            return
        self._rebuild(None, replace=kept)

    def _show_error(self, message: str) -> None:
        box = self.query_one("#field-error", Static)
        box.update(Text(block(f"✘ {message}")))
        box.add_class("-shown")
        self.query_one(FieldEditor).add_class("-invalid")

    def _hide_error(self) -> None:
        self.query_one("#field-error", Static).remove_class("-shown")
        self.query_one(FieldEditor).remove_class("-invalid")

    # -- building -----------------------------------------------------------------------------
    def _rebuild(
        self, override: str | None, *, free: bool = False, replace: list[str] | None = None
    ) -> None:
        if replace is not None:
            overrides = replace
        elif override is not None:
            path = override_path(override)
            is_assignment = "=" in override and not re.search(r"[-+*/]=", override)
            overrides = [
                o for o in self.source.overrides if not (is_assignment and override_path(o) == path)
            ]
            overrides.append(override)
        else:
            overrides = list(self.source.overrides)
        self._build(overrides, override is not None)

    @work(group="compose-build", exclusive=True, exit_on_error=False)
    async def _build(self, overrides: list[str], from_editor: bool) -> None:
        app = self.nemorun
        candidate = ComposeSource(
            recipe=self.source.recipe,
            parent=self.source.parent,
            title=self.source.title,
            overrides=overrides,
            profile=self.source.profile,
            tags=list(self.source.tags),
            note=self.source.note,
        )
        try:
            built = await app.bridge.call(
                build_plan(app.engine, app.workspace_helper, app.workspace, candidate)
            )
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            if from_editor:
                self._show_error(message)  # rejected: nothing changes, nothing launched
            else:
                self._show_error(message)
                self.query_one("#compose-heading", Static).update(
                    Text(block(f"cannot build the plan: {message}"), style="bold red")
                )
            return
        self._hide_error()
        self.source = candidate
        self.built = built
        if from_editor:
            self._close_editor()
        self._show_plan(built)
        self._preview(built.plan)

    def _show_plan(self, built: BuiltPlan) -> None:
        plan = built.plan
        heading = Text()
        if self.source.parent:
            heading.append("Edit and relaunch ", style="bold")
            heading.append(cell(self.source.parent), style="bold")
            heading.append("  (the new run records it as its parent)", style="dim")
        else:
            heading.append(cell(plan.recipe), style="bold")
            if built.help:
                heading.append(f" — {cell(built.help)}", style="dim")
        profiles = sorted({j.executor.profile_name or j.executor.backend for j in plan.jobs})
        heading.append(f"\ntitle: {cell(plan.title)} · executor: {cell(', '.join(profiles))}")
        if plan.tags:
            heading.append(f" · tags: {cell(', '.join(plan.tags))}")
        if plan.note:
            heading.append(f" · note: {cell(plan.note)}")
        heading.append(
            " · enter: edit field · o: override · m: title/tags/note · ctrl+l: launch",
            style="dim",
        )
        self.query_one("#compose-heading", Static).update(heading)
        overrides = self.source.overrides
        line = Text(cell("overrides: " + (" ".join(overrides) if overrides else "(none)")))
        # A relaunch plan's overrides are the parent's followed by this edit's.
        inherited = plan.overrides[: len(plan.overrides) - len(overrides)]
        if self.source.parent and inherited:
            # The parent's own overrides are already in its recorded config; the new run
            # records both, so show both rather than let the parent's look dropped.
            line.append(cell(f"  (on top of the parent's: {' '.join(inherited)})"), style="dim")
        self.query_one("#overrides", Static).update(line)
        self._fill_tree(built)

    def _fill_tree(self, built: BuiltPlan) -> None:
        tree = self.config_tree
        cursor = tree.cursor_node.data if tree.cursor_node is not None else None
        tree.clear()
        edited = {override_path(o) for o in self.source.overrides}
        multi = len(built.plan.jobs) > 1
        target = None
        for job in built.plan.jobs:
            flat = built.flat[job.name]
            explicit = built.explicit[job.name]
            root = tree.root
            if multi:
                root = tree.root.add(Text(cell(f"job {job.name}"), style="bold"), expand=True)
            nodes: dict[str, Any] = {"": root}
            for item in config_outline(flat):
                if item.value is None:
                    nodes[item.path] = nodes[item.parent].add(
                        node_label(item),
                        data=FieldRef(job.name, item.path, item.fn, False),
                        expand=True,
                    )
                    continue
                dotted = f"{job.name}.{item.path}" if multi else item.path
                if dotted in edited or item.path in edited:
                    style = "bold reverse"
                else:
                    style = "bold" if item.path in explicit else "dim"
                ref = FieldRef(job.name, item.path, item.value, True)
                node = nodes[item.parent].add_leaf(node_label(item, style), data=ref)
                if cursor is not None and cursor.job == ref.job and cursor.path == ref.path:
                    target = node
        tree.root.expand_all()
        if target is not None:
            self.call_after_refresh(tree.move_cursor, target)
            return
        # A fresh tree has no cursor (line -1) and enter would do nothing until an arrow
        # key was pressed: start on the first editable field (unless the user moved first).
        first = next((n for n in _walk_nodes(tree.root) if n.data and n.data.leaf), None)
        if first is not None:

            def start_on_first() -> None:
                if tree.cursor_line < 0:
                    tree.move_cursor(first)

            self.call_after_refresh(start_on_first)

    @work(group="compose-dryrun", exclusive=True, exit_on_error=False)
    async def _preview(self, plan: Plan) -> None:
        app = self.nemorun
        box = self.query_one("#dryrun", Static)
        try:
            # What will run (the call and its config tree, packaging, env with secrets
            # redacted), then what the backend would submit. The preview reflects every
            # field edit; no git run here (the launch's own packaging asks about that).
            previews = await app.bridge.run(app.engine.preview, plan)
            results = await app.bridge.call(app.engine.dryrun(plan))
        except Exception as exc:
            box.update(Text(block(f"dry run failed: {exc}"), style="red"))
            return
        parts = []
        for preview, result in zip(previews, results, strict=False):
            parts.append(preview.text())
            lines = "".join(f"# {line}\n" for line in result.summary.splitlines())
            parts.append(f"# what the {result.backend} backend would submit\n{lines.rstrip()}")
            for name, text in result.artifacts.items():
                if name == "command":
                    continue
                parts.append(f"## {name}\n{text.rstrip()}")
        text = "\n\n".join(parts)
        if text != self._dryrun_text:
            self._dryrun_text = text
            box.update(Text(block(text)))

    # -- launching ----------------------------------------------------------------------------
    def action_launch(self) -> None:
        """Launch the plan as shown (the app records it, then submits in the background)."""
        if self.has_class("-editing"):
            self.app.notify("finish or cancel the edit first (enter / escape)", timeout=3)
            return
        if self.built is None:
            self.app.notify("nothing to launch: pick a recipe first", severity="warning")
            return
        self.post_message(self.LaunchRequested(self.built.plan))

    def action_focus_profile(self) -> None:
        """Focus the executor profile picker."""
        self.query_one("#profile", Select).focus()

    def action_focus_recipes(self) -> None:
        """Focus the recipe list."""
        self.query_one("#recipes", OptionList).focus()
