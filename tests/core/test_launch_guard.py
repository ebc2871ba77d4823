"""A script never launches itself again; nested launches need an opt-in and are bounded.

Real launches on the local backend. Each launcher runs as a subprocess under a hard timeout,
and every script caps its own imports (see tests/launch_scripts.py), so a broken guard makes
these tests fail, never fork without limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from launch_scripts import (
    experiment_count,
    lines,
    nesting_script,
    run_bounded,
    unguarded_script,
)

import nemorun_tui as run
from core.engine import Engine, LaunchError, Plan, launch_guard
from core.engine.executors import LocalExecutor
from core.store import Store

pytestmark = pytest.mark.slow


def test_unguarded_script_runs_each_task_once_and_warns_once_per_job(tmp_path: Path) -> None:
    script = unguarded_script(tmp_path, "run.LocalExecutor()", "selfl")
    result = run_bounded(script)
    assert result.returncode == 0, result.stderr
    assert "launched SUCCEEDED" in result.stdout
    # Two launch calls at top level: two experiments, each task ran exactly once, at depth 1.
    assert lines(tmp_path / "runs") == ["train depth=1", "train depth=1"]
    assert experiment_count(tmp_path / "home") == 2
    assert lines(tmp_path / "imports") == ["0", "1", "1"]  # the launcher, then each job
    engine = Engine(Store(tmp_path / "home"))
    for summary in engine.store.list():
        record = engine.store.load(summary.id)
        assert record.state.value == "SUCCEEDED"
        job_dir = engine.store.job_dir(record.id, record.jobs[0].name)
        err = (job_dir / "logs" / "stderr.log").read_text()
        out = (job_dir / "logs" / "stdout.log").read_text()
        # One warning per job process, naming the call, the line and the fix.
        assert err.count("SelfLaunchWarning") == 1, err
        assert "run.run() was called while this job imports" in err
        assert 'if __name__ == "__main__":' in err
        assert f"{script}:" in err
        # The skipped calls returned stand-ins, so the rest of the top level kept working.
        assert "launched UNSUBMITTED not-launched" in out
        assert "exp {'again': <JobState.UNSUBMITTED: 'UNSUBMITTED'>} ''" in out
        assert out.rstrip().endswith("trained")


def test_nested_launch_from_a_job_is_refused_without_opt_in(tmp_path: Path) -> None:
    result = run_bounded(nesting_script(tmp_path, "none"))
    assert result.returncode == 0, result.stderr
    runs = lines(tmp_path / "runs")
    assert runs[0] == "nest depth=1"
    assert len(runs) == 2, runs
    assert runs[1].startswith("refused at depth=1: LaunchError: not launching from inside")
    assert "NEMORUN_TUI_ALLOW_NESTED=1" in runs[1] and "allow_nested_launch()" in runs[1]
    assert experiment_count(tmp_path / "home") == 1


@pytest.mark.parametrize("opt_in", ["env", "api"])
def test_opted_in_nesting_stops_at_the_depth_limit(tmp_path: Path, opt_in: str) -> None:
    env = {launch_guard.ALLOW_NESTED_ENV: "1"} if opt_in == "env" else {}
    result = run_bounded(nesting_script(tmp_path, opt_in), env=env)
    assert result.returncode == 0, result.stderr
    depths = list(range(1, launch_guard.MAX_DEPTH + 1))
    runs = lines(tmp_path / "runs")
    assert runs[:-1] == [f"nest depth={d}" for d in depths]
    assert runs[-1].startswith(f"refused at depth={launch_guard.MAX_DEPTH}: LaunchError")
    assert f"at most {launch_guard.MAX_DEPTH} levels" in runs[-1]
    assert experiment_count(tmp_path / "home") == launch_guard.MAX_DEPTH


def test_script_jobs_carry_the_depth_marker(tmp_path: Path) -> None:
    record = run.run(run.Script(inline='echo "depth=$NEMORUN_TUI_DEPTH"'), home=tmp_path)
    exp = run.Experiment.from_id(record.id, home=tmp_path)
    assert exp.logs() == "depth=1\n"


def test_executor_env_cannot_lower_the_depth(tmp_path: Path) -> None:
    profile = LocalExecutor(env_vars={launch_guard.DEPTH_ENV: "0"})
    record = run.run(run.Script(inline='echo "$NEMORUN_TUI_DEPTH"'), profile, home=tmp_path)
    assert run.Experiment.from_id(record.id, home=tmp_path).logs() == "1\n"


@pytest.mark.parametrize(
    ("env", "allowed", "message"),
    [
        ({}, False, None),
        ({"NEMORUN_TUI_DEPTH": "1"}, False, "not launching from inside a nemorun-tui job"),
        ({"NEMORUN_TUI_DEPTH": "1", "NEMORUN_TUI_ALLOW_NESTED": "1"}, False, None),
        ({"NEMORUN_TUI_DEPTH": "1"}, True, None),
        ({"NEMORUN_TUI_DEPTH": "3", "NEMORUN_TUI_ALLOW_NESTED": "1"}, False, "at most 3"),
        ({"NEMORUN_TUI_DEPTH": "3"}, True, "at most 3"),
        ({"NEMORUN_TUI_DEPTH": "x"}, True, "is not a job depth"),
        ({"NEMORUN_TUI_DEPTH": "1" * 30}, True, "is not a job depth"),
        ({"NEMORUN_TUI_IMPORT_ONLY": "1"}, True, "importing a job's task"),
    ],
)
def test_launch_problem(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], allowed: bool, message: str | None
) -> None:
    for name in ("NEMORUN_TUI_DEPTH", "NEMORUN_TUI_ALLOW_NESTED", "NEMORUN_TUI_IMPORT_ONLY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(launch_guard, "_allowed", allowed)
    problem = launch_guard.launch_problem()
    if message is None:
        assert problem is None
    else:
        assert problem is not None and message in problem


def test_engine_refuses_before_recording_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(launch_guard.DEPTH_ENV, "1")
    monkeypatch.delenv(launch_guard.ALLOW_NESTED_ENV, raising=False)
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="nested")
    plan.add(run.Script(inline="true"), LocalExecutor())
    with pytest.raises(LaunchError, match="inside a nemorun-tui job"):
        engine.record(plan)
    assert engine.store.list() == []
    # A job's env is one level deeper than its launcher.
    assert launch_guard.job_env() == {launch_guard.DEPTH_ENV: "2"}


def test_task_import_window_skips_launch_and_returns_a_stand_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch_guard, "_warned", False)
    warned = pytest.warns(launch_guard.SelfLaunchWarning, match=r"exp\.run\(\)")
    with launch_guard.importing_task("the task module x.py"), warned:
        exp = run.Experiment("inside", home=tmp_path)
        exp.add(run.Script(inline="true"), name="a")
        record = exp.run()
    assert record.id == "not-launched" and [j.state.value for j in record.jobs] == ["UNSUBMITTED"]
    assert exp.status() == {"a": run.JobState.UNSUBMITTED}
    assert exp.logs() == "" and exp.cancel() == [] and exp.wait() is record
    assert experiment_count(tmp_path) == 0
