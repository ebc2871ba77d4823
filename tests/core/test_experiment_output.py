"""The Python API streams job output while it waits, and a failure says what went wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import nemorun_tui as run
from core.engine.job_output import exception_in
from core.engine.states import JobState


def explode() -> None:
    print("about to fail", flush=True)
    raise ValueError("bad learning rate 7")


def leave(message: str) -> None:
    sys.exit(message)


def test_run_streams_stdout_and_stderr_while_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = run.run(run.Script(inline="echo out-line; echo err-line >&2"), home=tmp_path)
    assert record.state is JobState.SUCCEEDED
    captured = capsys.readouterr()
    assert captured.out == "out-line\n"
    assert captured.err == "err-line\n"


def test_stream_false_is_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run.run(run.Script(inline="echo out-line; echo err-line >&2"), home=tmp_path, stream=False)
    assert capsys.readouterr() == ("", "")


def test_experiment_run_prefixes_lines_of_several_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with run.Experiment("two", home=tmp_path) as exp:
        exp.add(run.Script(inline="echo one; echo two"), name="a")
        exp.add(run.Script(inline="printf 'no newline'"), name="bb")
        record = exp.run()
    assert record.state is JobState.SUCCEEDED
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines == ["[a ] one", "[a ] two", "[bb] no newline"]


def test_run_failed_error_carries_exception_stderr_and_log(tmp_path: Path) -> None:
    with pytest.raises(run.RunFailedError) as info:
        run.run(run.Partial(explode), home=tmp_path, stream=False)
    error = info.value
    assert (error.exc_type, error.exc_message) == ("ValueError", "bad learning rate 7")
    assert error.stderr_tail[-1] == "ValueError: bad learning rate 7"
    assert any(line.startswith("Traceback") for line in error.stderr_tail)
    assert error.log_path is not None and Path(error.log_path).is_file()
    assert "ValueError: bad learning rate 7" in Path(error.log_path).read_text()
    assert "ValueError: bad learning rate 7" in str(error)
    assert error.failures[0].job == "explode" and error.failures[0].exit_code == 1


def test_sys_exit_with_a_message_keeps_it(tmp_path: Path) -> None:
    with pytest.raises(run.RunFailedError) as info:
        run.run(run.Partial(leave, message="no GPU found"), home=tmp_path, stream=False)
    error = info.value
    assert error.stderr_tail == ["no GPU found"]
    assert error.failures[0].exit_code == 1
    assert "no GPU found" in str(error)


def test_only_a_traceback_ending_counts_as_an_exception() -> None:
    printed = ["ValueError: this was only printed"]
    assert exception_in(printed) == (None, None)
    raised = ["Traceback (most recent call last):", '  File "x.py", line 1', "KeyError: 'lr'"]
    assert exception_in(raised) == ("KeyError", "'lr'")
    assert exception_in(["Traceback (most recent call last):", "RecursionError"]) == (
        "RecursionError",
        None,
    )


def test_experiment_tags_and_note_are_recorded(tmp_path: Path) -> None:
    with run.Experiment("noted", home=tmp_path, tags=["api"], note="from a script") as exp:
        exp.add(run.Script(inline="true"), name="t")
        exp.run(stream=False)
    record = exp.record
    assert (record.tags, record.note, record.workdir) == (["api"], "from a script", str(Path.cwd()))


def test_run_failed_error_message_never_carries_terminal_controls(tmp_path: Path) -> None:
    """The job's stderr reaches the message as text: an OSC 0 (window title) is shown."""
    script = run.Script(
        inline=r"printf 'Traceback (most recent call last)\nValueError: \033]0;pwned\007x\n' >&2;"
        " exit 3"
    )
    with pytest.raises(run.RunFailedError) as info:
        run.run(script, home=tmp_path, stream=False)
    error = info.value
    assert error.exc_message == "\x1b]0;pwned\x07x"  # the data stays as the job wrote it
    assert "\x1b" not in str(error) and "\x07" not in str(error)
    assert "\\x1b]0;pwned" in str(error)
