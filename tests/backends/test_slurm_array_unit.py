"""The sweep's array job as rendered (dry run): one sbatch, one case per point, quoted."""

from __future__ import annotations

import shlex
from pathlib import Path

from core.config import Script
from core.engine import Engine
from core.engine.executors import LocalExecutor, LocalTunnel, SlurmExecutor
from core.engine.executors_docker import DockerExecutor
from core.engine.sweep_plan import task_sweep_plan
from core.engine.sweep_submit import array_jobs
from core.store import Store
from core.sweep import parse_param


async def test_dry_run_of_a_sweep_on_slurm_is_one_array(tmp_path: Path) -> None:
    executor = SlurmExecutor(tunnel=LocalTunnel(job_dir=str(tmp_path / "jobs")))
    hostile = "'$(touch /tmp/pwned)'"
    params = [parse_param(f"inline='echo a','echo b',{hostile}")]
    plan = task_sweep_plan(Script(inline="true"), params, executor, title="s", throttle=2)
    engine = Engine(Store(tmp_path / "home"))
    (dry,) = await engine.dryrun(plan)
    assert dry.summary.startswith("ONE sbatch for 3 points: array 0-2%2")
    assert "#SBATCH --array=0-2%2" in dry.artifacts["sbatch.sh"]
    points = dry.artifacts["points.sh"]
    assert points.count("    exec ") == 3 and "*) echo" in points
    # Every value reaches the script only through shlex.quote (here: the job name).
    name = plan.jobs[2].name
    assert f"export NEMORUN_JOB_NAME={shlex.quote(name)}" in points
    assert not (tmp_path / "jobs").exists() and not (tmp_path / "home").exists()


def test_only_sweeps_sharing_one_executor_become_arrays(tmp_path: Path) -> None:
    executor = SlurmExecutor(tunnel=LocalTunnel(job_dir=str(tmp_path / "jobs")))
    params = [parse_param("inline='echo a','echo b'")]
    assert array_jobs(task_sweep_plan(Script(inline="x"), params, executor, title="s"))
    local = task_sweep_plan(Script(inline="x"), params, LocalExecutor(), title="s")
    assert array_jobs(local)  # locally: one pool (backends/local/array_sweep.py)
    box = DockerExecutor(container_image="busybox", base_url="unix:///nonexistent.sock")
    assert array_jobs(task_sweep_plan(Script(inline="x"), params, box, title="s")) is None
    mixed = task_sweep_plan(Script(inline="x"), params, executor, title="s")
    mixed.jobs[1].executor = SlurmExecutor(
        partition="other", tunnel=LocalTunnel(job_dir=str(tmp_path / "jobs"))
    )
    assert array_jobs(mixed) is None
    sequential = task_sweep_plan(Script(inline="x"), params, executor, title="s")
    sequential.sequential = True
    assert array_jobs(sequential) is None


async def test_the_dry_runs_sbatch_command_is_one_a_shell_can_run(tmp_path: Path) -> None:
    """The shown command is quoted: copied into a shell it runs exactly that sbatch, whatever
    the job dir is called (it was joined with spaces, so a space split the path)."""
    jobs = tmp_path / "my jobs;$(x)"
    executor = SlurmExecutor(tunnel=LocalTunnel(job_dir=str(jobs)))
    for plan in (
        task_sweep_plan(
            Script(inline="true"), [parse_param("inline='echo a','echo b'")], executor, title="s"
        ),
        task_sweep_plan(Script(inline="true"), [], executor, title="one"),
    ):
        (dry,) = await Engine(Store(tmp_path / "home")).dryrun(plan)
        argv = shlex.split(dry.artifacts["command"])
        assert argv[0] == "sbatch" and any(str(jobs) in word for word in argv)


async def test_tasks_cancelled_before_any_started_read_cancelled_from_the_pending_record() -> None:
    """Released and cancelled within milliseconds, an array's accounting holds one record,
    ``<id>_[0-5%2]``, that asking for the tasks by id does not return (a clean-clone CI run
    saw all six points UNKNOWN). Asking for the array returns it; each task takes its state."""
    from backends.slurm.array_sweep import unsplit_tasks
    from core.engine.protocol import Handle

    when = "2026-12-02T02:32:18"
    line = f"4720_[0-5%2]|CANCELLED by 0|0:0|None|{when}|Unknown|{when}|nrt-s|/w\n"
    asked: list[list[str]] = []

    class Stub:
        _names: dict[str, str] = {}

        async def _run(self, argv: list[str], env: object = None) -> tuple[int, str, str]:
            asked.append(argv)
            return 0, line, ""

    handles = [Handle("slurm", "c", f"4720_{i}") for i in range(6)]
    found = await unsplit_tasks(Stub(), handles, {})  # type: ignore[arg-type]
    assert sorted(found) == [h.job_id for h in handles]
    assert {row.state.value for row in found.values()} == {"CANCELLED"}
    assert all(row.started_at is None for row in found.values())
    assert len(asked) == 1 and "4720" in asked[0]
