"""The NeMo Run-style Python API, on the real local backend."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nemorun_tui as run
from core.engine.states import JobState


def greet(name: str = "world") -> None:
    print(f"hello {name}")


def test_experiment_with_dependency_runs_in_order(tmp_path: Path) -> None:
    marker = tmp_path / "order.txt"
    with run.Experiment("api-deps", home=tmp_path / "home") as exp:
        first = exp.add(run.Script(inline=f"echo first >> {marker}"), name="first")
        exp.add(run.Script(inline=f"echo second >> {marker}"), name="second", dependencies=[first])
        record = exp.run()
    assert record.state is JobState.SUCCEEDED
    assert marker.read_text() == "first\nsecond\n"
    assert exp.status() == {"first": JobState.SUCCEEDED, "second": JobState.SUCCEEDED}
    again = run.Experiment.from_id(exp.id[:12], home=tmp_path / "home")
    assert again.id == exp.id and again.title == "api-deps"
    assert run.Experiment.from_title("api-deps", home=tmp_path / "home").id == exp.id
    assert [s.id for s in run.Experiment.catalog(home=tmp_path / "home")] == [exp.id]


def test_run_returns_outcome_and_raises_on_failure(tmp_path: Path) -> None:
    record = run.run(run.Script(inline="echo ok"), home=tmp_path)
    assert record.state is JobState.SUCCEEDED
    with pytest.raises(run.RunFailedError, match=r"FAILED \(exit 4\)"):
        run.run(run.Script(inline="exit 4"), home=tmp_path)


def test_partial_runs_with_the_same_interpreter(tmp_path: Path) -> None:
    """A Partial defined in a script file runs under sys.executable, not PATH's python."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            import nemorun_tui as run

            def where() -> None:
                print(sys.executable)

            if __name__ == "__main__":
                exp = run.Experiment("interp", home={str(tmp_path / "home")!r})
                exp.add(run.Partial(where), name="where")
                exp.run()  # streams the job's output, as the CLI does
            """
        )
    )
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == sys.executable


def test_dryrun_shows_the_command_and_records_nothing(tmp_path: Path) -> None:
    exp = run.Experiment("dry", home=tmp_path)
    exp.add(run.Script(inline="echo 'a b'; rm -rf $HOME"), name="s")
    (result,) = exp.dryrun(print_out=False)
    assert "rm -rf $HOME" in "\n".join(result.artifacts.values())
    assert run.Experiment.catalog(home=tmp_path) == []


def test_a_printed_dryrun_is_text_never_terminal_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = run.Experiment("dry", home=tmp_path)
    exp.add(run.Script(inline="echo '\x1b]52;c;cHduZWQ=\x07' \x1b[2J done"), name="s")
    exp.dryrun()
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "done" in out and "## command" in out  # the rest of the script stays


def test_logs_and_cancel(tmp_path: Path) -> None:
    exp = run.Experiment("cancel-me", home=tmp_path)
    exp.add(run.Script(inline="echo up; sleep 30"), name="sleepy")
    exp.run(detach=True)
    assert exp.cancel() == ["sleepy"]
    record = exp.wait()
    assert record.state is JobState.CANCELLED
    assert exp.logs("sleepy") in ("", "up\n")


def test_import_does_not_pull_textual() -> None:
    code = "import nemorun_tui as run, sys; run.Config; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
