"""core.launchers: the launcher model and the one launch-line builder every backend uses."""

from __future__ import annotations

import json

import pytest

from core.engine.executors import LocalExecutor, SlurmExecutor, profile_from_dict
from core.launchers import (
    RANK_PREFIX_ENV,
    FaultTolerance,
    LauncherError,
    RankFilter,
    Torchrun,
    as_launcher,
    launch_argv,
    ranks_per_node,
)

PY = "/venv/bin/python"


def line(launcher: Torchrun, argv: list[str], **kw: object) -> list[str]:
    args: dict[str, object] = {
        "python": PY,
        "nnodes": 2,
        "nproc_per_node": 4,
        "rdzv_endpoint": "10.0.0.1:29400",
        "rdzv_id": "nrt-x-job",
    }
    args.update(kw)
    return launch_argv(launcher, argv, **args)  # type: ignore[arg-type]


def test_torchrun_line_for_a_python_script() -> None:
    got = line(Torchrun(), [PY, "train.py", "--lr", "0.1"])
    assert got == [
        PY, "-m", "torch.distributed.run",
        "--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.1:29400", "--rdzv-id=nrt-x-job", "--max-restarts=0", "--tee=3",
        "train.py", "--lr", "0.1",
    ]  # fmt: skip


def test_a_module_a_shell_command_and_interpreter_flags() -> None:
    assert line(Torchrun(), [PY, "-m", "core.runner", "t.json"])[-3:] == [
        "-m",
        "core.runner",
        "t.json",
    ]
    shell = line(Torchrun(), ["bash", "-c", "echo $RANK"])
    assert shell[-4:] == ["--no-python", "bash", "-c", "echo $RANK"]
    inline = line(Torchrun(), [PY, "-c", "print(1)"])
    assert inline[-4:] == ["--no-python", PY, "-c", "print(1)"]


def test_launcher_fields_reach_the_line_and_extra_args_come_before_the_program() -> None:
    t = Torchrun(rdzv_backend="static", rdzv_id="fixed", max_restarts=3, extra_args=["--x=1"])
    got = line(t, [PY, "a.py"], log_dir="/jobs/j/torchrun")
    assert "--rdzv-backend=static" in got and "--rdzv-id=fixed" in got
    assert "--max-restarts=3" in got and "--log-dir=/jobs/j/torchrun" in got
    assert got[-2:] == ["--x=1", "a.py"]


def test_fault_tolerance_uses_ft_launcher_and_its_timeouts() -> None:
    ft = FaultTolerance(
        initial_rank_heartbeat_timeout=600,
        rank_heartbeat_timeout=30.5,
        rank_termination_signal="SIGKILL",
    )
    got = line(ft, [PY, "a.py"])
    assert got[0] == "/venv/bin/ft_launcher"
    assert "--ft-initial-rank-heartbeat-timeout=600" in got
    assert "--ft-rank-heartbeat-timeout=30.5" in got
    assert "--ft-rank-termination-signal=SIGKILL" in got
    assert "--max-restarts=3" in got  # its own default restart limit


def test_the_line_is_argv_words_never_a_shell_string() -> None:
    hostile = [PY, "x.py", "; rm -rf /", "$(id)", "a b"]
    got = line(Torchrun(), hostile)
    assert got[-4:] == ["x.py", "; rm -rf /", "$(id)", "a b"]


def test_aliases_objects_and_stored_tables() -> None:
    assert as_launcher(None) is None
    assert type(as_launcher("torchrun")) is Torchrun
    assert type(as_launcher("ft")) is FaultTolerance
    assert as_launcher({"__type__": "Torchrun", "max_restarts": 2}) == Torchrun(max_restarts=2)
    assert as_launcher({"kind": "ft", "rank_heartbeat_timeout": 9}) == FaultTolerance(
        rank_heartbeat_timeout=9
    )
    for bad in ("mpirun", {"__type__": "Torchrun", "nodes": 2}, 5):
        with pytest.raises(LauncherError):
            as_launcher(bad)
    for bad_field in (
        {"nproc_per_node": 0},
        {"rdzv_port": 70000},
        {"max_restarts": -1},
        {"rdzv_backend": "c10d; rm"},
    ):
        with pytest.raises(LauncherError):
            as_launcher({"__type__": "Torchrun", **bad_field})


def test_profiles_store_and_rebuild_their_launcher() -> None:
    for profile in (
        LocalExecutor(ntasks_per_node=2, launcher="torchrun"),
        SlurmExecutor(nodes=2, launcher=FaultTolerance(rank_heartbeat_timeout=5)),
    ):
        stored = json.loads(json.dumps(profile.to_dict()))
        again = profile_from_dict(stored)
        assert again.launcher == profile.launcher  # type: ignore[attr-defined]
    assert LocalExecutor().launcher is None
    assert LocalExecutor().to_dict()["launcher"] is None


def test_ranks_per_node_defaults_to_the_executors_tasks() -> None:
    assert ranks_per_node(Torchrun(), 3) == 3
    assert ranks_per_node(Torchrun(nproc_per_node=8), 1) == 8


def test_rank_filter_picks_one_rank_across_chunk_boundaries() -> None:
    log = b"[rank0]:a\n[rank1]:b\nplain\n[rank10]:c\n[rank1]:d\n[rank1]:tail"
    for size in (1, 3, 7, len(log)):
        picked = RankFilter(1)
        out = b"".join(picked.feed(log[i : i + size]) for i in range(0, len(log), size))
        assert out + picked.flush() == b"b\nd\ntail"
    keep = RankFilter(10, keep_prefix=True)
    assert keep.feed(log) + keep.flush() == b"[rank10]:c\n"


def test_the_rank_prefix_names_the_global_rank() -> None:
    assert RANK_PREFIX_ENV == {"TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": "[rank${rank}]:"}
