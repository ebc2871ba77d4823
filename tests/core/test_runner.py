"""core.runner: the job process for Config/Partial tasks, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.recipes import load_workspace
from core.serialize import dump_task, dumps

REPO = Path(__file__).resolve().parents[2]

WORKSPACE = textwrap.dedent(
    """
    import sys
    from core import config as nr
    from core.recipes import recipe

    def greet(name, out=None):
        print(f"hello {name}")
        print("fiddle loaded:", "fiddle" in sys.modules)
        if out:
            open(out, "w").write(name)

    def explode(why):
        raise ValueError(f"exploded: {why}")

    def leave(code):
        sys.exit(code)

    @recipe
    def hello():
        return nr.Partial(greet, name="world")
    """
)


@pytest.fixture
def workspace(tmp_path: Path) -> object:
    path = tmp_path / "ws.py"
    path.write_text(WORKSPACE)
    return load_workspace(str(path))


def run_runner(task_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core.runner", str(task_file), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def write_task(tmp_path: Path, workspace: object, kind: str, fn: str, **kwargs: object) -> Path:
    from core import config

    module = sys.modules[workspace.modules[0]]  # type: ignore[attr-defined]
    cls = config.Partial if kind == "partial" else config.Config
    task_file = tmp_path / f"{fn}.json"
    task_file.write_text(dumps(cls(getattr(module, fn), **kwargs)))
    return task_file


def test_partial_runs_prints_only_user_output_and_never_imports_fiddle(
    tmp_path: Path, workspace: object
) -> None:
    task_file = tmp_path / "task.json"
    task_file.write_text(dumps(workspace.get("hello").make()))  # type: ignore[attr-defined]
    result = run_runner(task_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\nfiddle loaded: False\n"
    assert result.stderr == ""


def test_config_build_is_the_run(tmp_path: Path, workspace: object) -> None:
    out = tmp_path / "out.txt"
    task_file = write_task(tmp_path, workspace, "config", "greet", name="cfg", out=str(out))
    result = run_runner(task_file)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "cfg"


def test_exception_exits_1_with_traceback_on_stderr(tmp_path: Path, workspace: object) -> None:
    task_file = write_task(tmp_path, workspace, "partial", "explode", why="on purpose")
    result = run_runner(task_file)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: exploded: on purpose")


def test_task_exit_code_is_kept(tmp_path: Path, workspace: object) -> None:
    assert run_runner(write_task(tmp_path, workspace, "partial", "leave", code=7)).returncode == 7
    assert (
        run_runner(write_task(tmp_path, workspace, "partial", "leave", code=None)).returncode == 0
    )


def test_scripts_are_refused(tmp_path: Path) -> None:
    from core.config import Script

    task_file = tmp_path / "script.json"
    task_file.write_text(dumps(Script(inline="echo no")))
    result = run_runner(task_file)
    assert result.returncode == 1
    assert "runs Config/Partial tasks" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_unreadable_task_file_is_a_usage_error(tmp_path: Path, content: str | None) -> None:
    task_file = tmp_path / "task.json"
    if content is not None:
        task_file.write_text(content)
    result = run_runner(task_file)
    assert result.returncode == 2
    assert "cannot read task file" in result.stderr


def test_wrong_arguments_print_usage(tmp_path: Path) -> None:
    result = run_runner(tmp_path / "a.json", "extra")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: python -m core.runner")


def test_demo_training_job_imports_no_fiddle(tmp_path: Path) -> None:
    from core.overrides import apply_overrides

    ws = load_workspace(str(REPO / "nemorun_tui" / "demo_workspace.py"))
    task = apply_overrides(ws.get("quick_train").make(), ["trainer.step_seconds=0"])
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(dump_task(task)))
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "core.runner", str(task_file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "[train] done: final loss" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert {"core", "core.serialize", "core.recipes"} <= imported
    assert not {"fiddle", "libcst", "textual"} & imported
