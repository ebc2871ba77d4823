"""Why a job failed: on real failures (local jobs, the real Slurm cluster), and on log
shapes the real thing prints (a CUDA OOM, NCCL, Slurm's own lines) that cannot be produced
on a machine without GPUs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from ci_services import slurm_available
from services import require_service

from core.config import Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor, LocalTunnel, SlurmExecutor
from core.engine.states import JobState
from core.results.triage import CAUSE_FILE, cached, classify, triage
from core.store import Store


async def run_script(tmp_path: Path, inline: str, executor: object = None) -> tuple[Engine, str]:
    engine = Engine(Store(tmp_path / "home"))
    plan = Plan(title="triage")
    plan.add(Script(inline=inline), executor or LocalExecutor(), name="job")
    record = await engine.launch(plan)
    await engine.wait(record.id, max_interval=0.5)
    return engine, record.id


PY = sys.executable


async def test_a_python_exception_names_type_message_and_last_frame(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """\
            def load(path):
                raise FileNotFoundError(f"no shard {path}")

            def main():
                print("training", flush=True)
                load("/data/shard-7")

            main()
            """
        )
    )
    engine, exp_id = await run_script(tmp_path, f"{PY} {script}")
    cause = await triage(engine, exp_id, "job")
    assert cause is not None and cause.kind == "python-exception"
    assert cause.exception == {
        "type": "FileNotFoundError",
        "message": "no shard /data/shard-7",
        "file": str(script),
        "line": 2,
        "function": "load",
    }
    assert cause.stream == "stderr"
    assert cause.summary == f"FileNotFoundError: no shard /data/shard-7 at {script}:2"
    texts = [line.text for line in cause.lines]
    assert texts[0].startswith("Traceback") and texts[-1].startswith("FileNotFoundError")
    # The lines point into the real log: their offsets find them there.
    log = Path(engine.store.job_dir(exp_id, "job") / "logs" / "stderr.log").read_bytes()
    for line in cause.lines:
        assert log[line.offset :].startswith(line.text.encode())
    # Stored for the next reader, keyed by the job's state.
    rec = engine.store.load(exp_id).job("job")
    assert (engine.store.job_dir(exp_id, "job") / CAUSE_FILE).is_file()
    assert cached(engine.store, exp_id, rec) == cause


async def test_kill_9_is_a_host_oom_kill_or_a_kill(tmp_path: Path) -> None:
    engine, exp_id = await run_script(tmp_path, "echo working; kill -9 $$")
    rec = engine.store.load(exp_id).job("job")
    assert rec.exit_code == 137
    cause = await triage(engine, exp_id, "job")
    assert cause is not None and cause.kind == "host-oom"
    assert "137" in cause.summary and "kill -9" in cause.summary


async def test_a_memory_limit_gives_a_host_oom_with_the_memoryerror(tmp_path: Path) -> None:
    # ulimit -v caps the address space: the allocation fails inside Python.
    engine, exp_id = await run_script(
        tmp_path, f"ulimit -v 400000; {PY} -c 'x = bytearray(2 * 1024**3)'"
    )
    cause = await triage(engine, exp_id, "job")
    assert cause is not None and cause.kind == "host-oom", cause
    assert "MemoryError" in cause.summary
    assert cause.exception is not None and cause.exception["type"] == "MemoryError"
    assert any("MemoryError" in line.text for line in cause.lines)


async def test_a_missing_module_and_a_segfault(tmp_path: Path) -> None:
    engine, exp_id = await run_script(tmp_path / "a", f"{PY} -c 'import no_such_pkg_xyz'")
    cause = await triage(engine, exp_id, "job")
    assert cause is not None and cause.kind == "missing-module"
    assert "no_such_pkg_xyz" in cause.summary
    engine, exp_id = await run_script(
        tmp_path / "b", f"{PY} -c 'import ctypes; ctypes.string_at(0)'"
    )
    assert engine.store.load(exp_id).job("job").exit_code == 139
    cause = await triage(engine, exp_id, "job")
    assert cause is not None and cause.kind == "segfault"


async def test_a_job_that_succeeded_has_no_cause(tmp_path: Path) -> None:
    engine, exp_id = await run_script(tmp_path, "echo fine")
    assert await triage(engine, exp_id, "job") is None


@pytest.mark.slurm
@pytest.mark.slow
async def test_slurm_timeout_from_a_tiny_time_limit(tmp_path: Path) -> None:
    ok, why = slurm_available()
    require_service(ok, why)
    executor = SlurmExecutor(
        tunnel=LocalTunnel(job_dir=str(tmp_path / "cluster-jobs")), time="1", poll_rate=2.0
    )
    engine, exp_id = await run_script(tmp_path, "echo started; sleep 600", executor)
    rec = engine.store.load(exp_id).job("job")
    assert rec.state is JobState.FAILED and "TIMEOUT" in (rec.reason or ""), rec
    cause = await triage(engine, exp_id, "job")
    assert cause is not None and cause.kind == "slurm-timeout"
    # Slurm's own line says so in the job's stderr, and it is the evidence shown.
    assert cause.stream == "stderr" and "DUE TO TIME LIMIT" in cause.lines[0].text


CUDA_OOM = b"""\
Epoch 0:  12%|#2        | 12/100 [00:03<00:25]
Traceback (most recent call last):
  File "/workspace/train.py", line 88, in <module>
    main()
  File "/workspace/train.py", line 71, in main
    loss = model(batch)
  File "/usr/lib/python3/site-packages/torch/nn/modules/module.py", line 1553, in _call_impl
    return forward_call(*args, **kwargs)
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total \
capacity of 79.15 GiB of which 1.02 GiB is free.
"""

NCCL = b"""\
[rank1]:[E ProcessGroupNCCL.cpp:607] [Rank 1] Watchdog caught collective operation timeout: \
WorkNCCL(SeqNum=3, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600051 milliseconds
[rank1]: torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, \
unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5
"""


@pytest.mark.parametrize(
    ("reason", "tails", "kind", "stream"),
    [
        (None, {"stderr": CUDA_OOM}, "cuda-oom", "stderr"),
        (None, {"stderr": NCCL, "stdout": b"step 10 loss 1.0\n"}, "nccl", "stderr"),
        ("NODE_FAIL", {}, "slurm-node-fail", None),
        ("PREEMPTED", {}, "slurm-preempted", None),
        (
            "OUT_OF_MEMORY",
            {"stderr": b"slurmstepd: error: Detected 1 oom_kill event\n"},
            "host-oom",
            "stderr",
        ),
        (None, {"stdout": b"Fatal Python error: Segmentation fault\n"}, "segfault", "stdout"),
        (None, {"stderr": b"some tool: bad input\n"}, "exit-code", "stderr"),
    ],
)
def test_log_shapes(reason: str | None, tails: dict[str, bytes], kind: str, stream: str) -> None:
    cause = classify(
        JobState.FAILED,
        exit_code=1,
        reason=reason,
        tails={name: (0, data) for name, data in tails.items()},
    )
    assert cause is not None and cause.kind == kind and cause.stream == stream


def test_cuda_oom_keeps_the_frame_of_the_users_code_and_escapes_controls() -> None:
    cause = classify(JobState.FAILED, exit_code=1, tails={"stderr": (10, b"junk\n" + CUDA_OOM)})
    assert cause is not None and cause.exception is not None
    assert cause.exception["type"] == "torch.OutOfMemoryError"
    assert cause.exception["line"] == 1553  # the last frame, as Python printed it
    hostile = classify(
        JobState.FAILED, exit_code=1, tails={"stderr": (0, b"\x1b]0;owned\x07boom\n")}
    )
    assert hostile is not None and "\x1b" not in hostile.lines[0].text


def test_pending_for_ever_and_cancelled() -> None:
    stuck = classify(JobState.PENDING, reason="DependencyNeverSatisfied")
    assert stuck is not None and stuck.kind == "pending"
    assert classify(JobState.PENDING, reason="Priority") is None
    cancelled = classify(JobState.CANCELLED, reason="cancelled by uid 0")
    assert cancelled is not None and cancelled.kind == "cancelled"
