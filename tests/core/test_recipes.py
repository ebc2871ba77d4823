"""core.recipes: decorators, workspaces from files/folders/modules, entry points, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from core import recipes
from core.recipes import (
    Recipe,
    RecipeError,
    UnknownRecipeError,
    WorkspaceError,
    discover,
    load_workspace,
    recipe,
    synthetic_module_name,
)

REPO = Path(__file__).resolve().parents[2]

BASIC = textwrap.dedent(
    """
    from dataclasses import dataclass
    from core import config as nr
    from core.recipes import factory, recipe

    @dataclass
    class Trainer:
        max_steps: int = 3

    def fit(trainer: Trainer, note: str = "") -> str:
        return f"{note}{trainer.max_steps}"

    @recipe
    def train():
        '''Train the thing.

        More words that are not the summary.
        '''
        return nr.Partial(fit, trainer=nr.Config(Trainer))

    @recipe(name="hello", help="says hello")
    def hello_recipe():
        return nr.Script(inline="echo hello")

    @factory
    def tiny_trainer():
        return nr.Config(Trainer, max_steps=1)

    @recipe
    def broken():
        return 42

    @recipe
    def crashes():
        return 1 / 0
    """
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_workspace_from_file_collects_recipes_and_factories(tmp_path: Path) -> None:
    ws = load_workspace(str(write(tmp_path / "ws.py", BASIC)))
    assert sorted(ws.recipes) == ["broken", "crashes", "hello", "train"]
    assert sorted(ws.factory_recipes) == ["tiny_trainer"]
    assert set(ws.factories) == {"broken", "crashes", "hello", "train", "tiny_trainer"}
    assert ws.get("train").help == "Train the thing."
    assert ws.get("hello").help == "says hello"
    assert ws.source == str(tmp_path / "ws.py")


def test_recipes_make_tasks_and_factories_plug_into_overrides(tmp_path: Path) -> None:
    import fiddle as fdl

    from core.overrides import apply_overrides

    ws = load_workspace(str(write(tmp_path / "ws.py", BASIC)))
    task = apply_overrides(ws.get("train").make(), ["trainer=tiny_trainer"], factories=ws.factories)
    assert fdl.build(task)(note="n=") == "n=1"
    assert ws.get("hello").make().inline == "echo hello"


def test_recipe_returning_a_non_task_is_a_clear_error(tmp_path: Path) -> None:
    ws = load_workspace(str(write(tmp_path / "ws.py", BASIC)))
    with pytest.raises(RecipeError, match="recipe `broken` returned int, expected a Config"):
        ws.get("broken").make()


def test_recipe_that_raises_names_its_line(tmp_path: Path) -> None:
    ws = load_workspace(str(write(tmp_path / "ws.py", BASIC)))
    with pytest.raises(RecipeError) as info:
        ws.get("crashes").make()
    line = BASIC.splitlines().index("    return 1 / 0") + 1
    assert str(info.value) == (
        f"recipe `crashes` failed: ZeroDivisionError: division by zero (line {line})"
    )


def test_the_same_file_gets_the_same_module_name_and_is_reused(tmp_path: Path) -> None:
    path = write(tmp_path / "ws.py", BASIC)
    first = load_workspace(str(path))
    second = load_workspace(str(tmp_path / "." / "ws.py"))
    assert first.get("train").fn is second.get("train").fn
    assert first.modules == [synthetic_module_name(str(path))]
    reloaded = load_workspace(str(path), reload=True)
    assert reloaded.get("train").fn is not first.get("train").fn


def test_workspace_from_folder_prefers_workspace_py(tmp_path: Path) -> None:
    write(tmp_path / "proj" / "recipes.py", "from core.recipes import recipe\n")
    write(tmp_path / "proj" / "workspace.py", BASIC)
    assert "train" in load_workspace(str(tmp_path / "proj")).recipes
    write(tmp_path / "other" / "recipes.py", BASIC)
    assert "train" in load_workspace(str(tmp_path / "other")).recipes


def test_folder_without_workspace_file_is_explained(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkspaceError, match="has no workspace.py or recipes.py"):
        load_workspace(str(tmp_path / "empty"))


def test_workspace_file_can_import_its_sibling_modules(tmp_path: Path) -> None:
    name = f"helpers_{uuid.uuid4().hex[:8]}"
    write(tmp_path / f"{name}.py", "VALUE = 41\n")
    write(
        tmp_path / "ws.py",
        f"""
        from core import config as nr
        from core.recipes import recipe
        from {name} import VALUE

        @recipe
        def answer():
            return nr.Config(int, VALUE + 1)
        """,
    )
    assert "answer" in load_workspace(str(tmp_path / "ws.py")).recipes


def test_workspace_from_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = f"wspkg_{uuid.uuid4().hex[:8]}"
    write(tmp_path / package / "__init__.py", "")
    write(tmp_path / package / "recipes_here.py", BASIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    ws = load_workspace(f"{package}.recipes_here")
    assert ws.get("train").module == f"{package}.recipes_here"
    assert ws.source == f"{package}.recipes_here"


def test_missing_workspace_file_says_where_the_name_came_from(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        load_workspace(str(tmp_path / "x.py"), origin="--workspace")
    assert str(info.value) == f"workspace `{tmp_path / 'x.py'}` not found (from --workspace)"


def test_missing_module_name_is_not_found() -> None:
    with pytest.raises(WorkspaceError, match="`no_such_ws_mod` not found: no such file"):
        load_workspace("no_such_ws_mod")


def test_workspace_raising_on_import_names_error_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "x.py", "import os\n\nvalue = 1 / 0\n")
    with pytest.raises(WorkspaceError) as info:
        load_workspace(str(path))
    assert str(info.value) == (
        f"workspace `{path}` failed to import: ZeroDivisionError: division by zero (line 3)"
    )
    assert synthetic_module_name(str(path)) not in sys.modules


def test_workspace_with_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.py", "x = 1\ndef (:\n")
    with pytest.raises(WorkspaceError, match=r"failed to import: SyntaxError: .*\(line 2\)"):
        load_workspace(str(path))


def test_module_workspace_raising_on_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"wsbad_{uuid.uuid4().hex[:8]}"
    write(tmp_path / f"{name}.py", "a = 1\nraise RuntimeError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(WorkspaceError) as info:
        load_workspace(name)
    assert str(info.value) == f"workspace `{name}` failed to import: RuntimeError: nope (line 2)"


def test_unknown_recipe_suggests_close_names(tmp_path: Path) -> None:
    ws = load_workspace(str(write(tmp_path / "ws.py", BASIC)))
    with pytest.raises(UnknownRecipeError) as info:
        ws.get("trian")
    assert str(info.value) == (
        "unknown recipe `trian`; did you mean `train`? (available: broken, crashes, hello, train)"
    )
    with pytest.raises(UnknownRecipeError, match=r"unknown recipe `zzz` \(available"):
        ws.get("zzz")


def test_duplicate_recipe_names_in_one_workspace_fail(tmp_path: Path) -> None:
    path = write(
        tmp_path / "dup.py",
        """
        from core.recipes import recipe

        @recipe(name="same")
        def one():
            pass

        @recipe(name="same")
        def two():
            pass
        """,
    )
    with pytest.raises(WorkspaceError, match="name `same` is used twice"):
        load_workspace(str(path))


def test_decorator_returns_the_function_unchanged() -> None:
    def plain() -> int:
        return 7

    assert recipe(plain) is plain
    assert recipe(name="plain_alias")(plain) is plain
    assert plain() == 7
    entry = plain.__nemorun_recipe__  # type: ignore[attr-defined]
    assert isinstance(entry, Recipe) and entry.name == "plain_alias"
    assert "plain_alias" in entry.describe()
    with pytest.raises(RecipeError, match="not a usable name"):
        recipe(name="has space")(plain)


def _fake_entry_points(
    monkeypatch: pytest.MonkeyPatch, mapping: dict[str, str]
) -> list[dict[str, Any]]:
    import importlib.metadata

    calls: list[dict[str, Any]] = []

    def fake(**kwargs: Any) -> list[importlib.metadata.EntryPoint]:
        calls.append(kwargs)
        return [
            importlib.metadata.EntryPoint(name=name, value=value, group=kwargs["group"])
            for name, value in mapping.items()
        ]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    return calls


def test_discover_adds_entry_point_recipes_behind_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = f"plugin_{uuid.uuid4().hex[:8]}"
    write(
        tmp_path / f"{plugin}.py",
        """
        from core import config as nr
        from core.recipes import recipe

        @recipe
        def pretrain():
            return nr.Script(inline="echo pretrain")

        @recipe
        def train():
            return nr.Script(inline="echo plugin train")
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = _fake_entry_points(monkeypatch, {"mine": f"{plugin}:unused", "gone": "no_such_plugin"})
    ws = discover(str(write(tmp_path / "ws.py", BASIC)))
    assert calls == [{"group": recipes.ENTRY_POINT_GROUP}]
    assert ws.get("pretrain").make().inline == "echo pretrain"
    assert ws.get("train").module != plugin  # the user's workspace wins the clash
    assert any("`train` is already defined" in e for e in ws.errors)
    assert any("recipe plugin `gone` (no_such_plugin) failed" in e for e in ws.errors)


def test_discover_without_workspace_uses_only_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch, {})
    ws = discover(None)
    assert ws.recipes == {} and ws.errors == []


def test_demo_workspace_recipes_all_make_tasks() -> None:
    from core.config import task_kind

    ws = load_workspace("nemorun_tui.demo_workspace")
    kinds = {name: task_kind(r.make()) for name, r in ws.recipes.items()}
    assert kinds == {
        "train": "partial",
        "quick_train": "partial",
        "hello": "script",
        "fail": "partial",
    }
    assert {"small_trainer", "big_trainer"} <= set(ws.factory_recipes)


def test_demo_train_runs_with_overrides_and_fail_raises(capsys: pytest.CaptureFixture[str]) -> None:
    import fiddle as fdl

    from core.overrides import apply_overrides

    ws = load_workspace("nemorun_tui.demo_workspace")
    task = apply_overrides(
        ws.get("train").make(),
        ["trainer=small_trainer", "trainer.step_seconds=0", "trainer.precision=fp16"],
        factories=ws.factories,
    )
    final_loss = fdl.build(task)()
    out = capsys.readouterr().out
    assert "precision=fp16" in out
    assert "step    10/10" in out
    assert 0 < final_loss < 3.6
    failing = apply_overrides(ws.get("fail").make(), ["trainer.step_seconds=0"])
    with pytest.raises(RuntimeError, match="step 3"):
        fdl.build(failing)()


def test_demo_hello_script_runs() -> None:
    from core.overrides import apply_overrides

    ws = load_workspace("nemorun_tui.demo_workspace")
    script = apply_overrides(ws.get("hello").make(), ["args=[2]", "inline='echo \"hi $1\"'"])
    out = subprocess.run(script.argv(sys.executable), capture_output=True, text=True, check=True)
    assert out.stdout == "hi 2\n"


def test_importing_the_demo_workspace_imports_neither_fiddle_nor_textual() -> None:
    code = (
        "import sys; import nemorun_tui.demo_workspace\n"
        "bad = {'fiddle', 'textual'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
