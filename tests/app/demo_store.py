"""A fixed demo store: the same experiments, ids, times, logs and events every time.

Used by the snapshot tests and by ``scripts/screenshots.py``. Everything that would vary
(ids, timestamps, handles) is spelled out, and the app gets a fixed clock, so a rendered
pane is byte-for-byte stable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core.engine.executors import LocalExecutor
from core.engine.protocol import Handle
from core.engine.states import JobState
from core.store import ExperimentRecord, JobRecord, Store

#: "Now" for the app's clock: 2025-06-01 12:00:00 UTC.
NOW = 1_748_779_200.0
SOURCE_WORKSPACE = Path(__file__).resolve().parents[2] / "nemorun_tui" / "demo_workspace.py"
#: A copy of the demo workspace at a fixed path, so that paths on screen do not depend on
#: where the repository is checked out.
DEMO_WORKSPACE = "/tmp/nemorun-tui-demo/workspace/demo_workspace.py"


def install_workspace() -> str:
    """Copy the demo workspace to :data:`DEMO_WORKSPACE` (when it changed); returns the path."""
    target = Path(DEMO_WORKSPACE)
    source = SOURCE_WORKSPACE.read_bytes()
    if not target.exists() or target.read_bytes() != source:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(source)
        tmp.replace(target)
    return DEMO_WORKSPACE


def _task_files(recipe: str, overrides: list[str]) -> dict[str, str]:
    """task.json and view.json, as the engine records them."""
    from core import serialize
    from core.overrides import apply_overrides
    from core.recipes import discover

    workspace = discover(DEMO_WORKSPACE)
    task = apply_overrides(workspace.get(recipe).make(), overrides, factories=workspace.factories)
    view = serialize.TaskView.of(task).to_dict()
    return {
        "task.json": serialize.dumps(task),
        "view.json": json.dumps(view, indent=2, sort_keys=True) + "\n",
    }


def _executor_json(profile: str = "local") -> str:
    return json.dumps(LocalExecutor(profile_name=profile).to_dict(), indent=2, sort_keys=True)


TRAIN_LOG = "\n".join(
    [
        "[train] steps=200 precision=fp32 optimizer=adamw lr=0.0003 wd=0 seed=0 tags=demo",
        *(
            f"step {s:>5}/200 | loss {2.9 * (0.985**s):.4f} | ppl {2.718 ** (2.9 * 0.985**s):8.2f}"
            f" | lr 3.00e-04 | 40960 tok/s"
            for s in range(20, 201, 20)
        ),
        "[train] done: final loss 0.1416",
    ]
)

FAIL_LOG = "\n".join(
    [
        "[train] steps=10 precision=bf16 optimizer=adamw lr=0.0003 wd=0 seed=0 tags=-",
        "step     1/10 | loss 2.9012 | ppl    18.19 | lr 3.00e-04 | 81920 tok/s",
        "step     2/10 | loss 2.7420 | ppl    15.52 | lr 3.00e-04 | 81920 tok/s",
    ]
)
FAIL_ERR = "\n".join(
    [
        "Traceback (most recent call last):",
        '  File "demo_workspace.py", line 70, in train',
        "RuntimeError: loss became NaN at step 3 (simulated failure)",
    ]
)


def _job(
    name: str,
    state: JobState,
    *,
    start: float,
    end: float | None,
    exit_code: int | None = None,
    reason: str | None = None,
    source: str = "local:result.json",
    job_id: str = "",
    backend: str = "local",
    profile: str = "local",
) -> JobRecord:
    return JobRecord(
        name=name,
        kind="partial",
        backend=backend,
        profile=profile,
        handle=Handle(backend, "local", job_id or f"/demo/{name}"),
        state=state,
        source=source,
        observed_at=end if end is not None else NOW - 4,
        exit_code=exit_code,
        reason=reason,
        submitted_at=start,
        ended_at=end,
    )


def build_demo_store(home: Path) -> Store:
    """Create the demo store under ``home`` (emptied first)."""
    install_workspace()
    if home.exists():
        shutil.rmtree(home)
    store = Store(home)
    t0 = NOW - 3 * 3600
    experiments = [
        (
            ExperimentRecord(
                id="train-20250601-090000-a1b2",
                title="train",
                created_at=t0,
                jobs=[
                    _job(
                        "train", JobState.SUCCEEDED, start=t0 + 1, end=t0 + 2 * 60 + 5, exit_code=0
                    )
                ],
                tags=["demo"],
                workspace=DEMO_WORKSPACE,
                recipe="train",
                overrides=["trainer=big_trainer"],
            ),
            "train",
            {"stdout": TRAIN_LOG, "stderr": ""},
        ),
        (
            ExperimentRecord(
                id="train-20250601-093000-c3d4",
                title="train",
                created_at=t0 + 1800,
                jobs=[
                    _job(
                        "train",
                        JobState.SUCCEEDED,
                        start=t0 + 1801,
                        end=t0 + 1800 + 95,
                        exit_code=0,
                    )
                ],
                parent="train-20250601-090000-a1b2",
                tags=["demo"],
                workspace=DEMO_WORKSPACE,
                recipe="train",
                overrides=["trainer=big_trainer", "optimizer.lr=0.001"],
            ),
            "train",
            {"stdout": TRAIN_LOG, "stderr": ""},
        ),
        (
            ExperimentRecord(
                id="fail-20250601-100000-e5f6",
                title="fail",
                created_at=t0 + 3600,
                jobs=[
                    _job(
                        "fail",
                        JobState.FAILED,
                        start=t0 + 3601,
                        end=t0 + 3603,
                        exit_code=1,
                        reason="exit code 1",
                    )
                ],
                workspace=DEMO_WORKSPACE,
                recipe="fail",
            ),
            "fail",
            {"stdout": FAIL_LOG, "stderr": FAIL_ERR},
        ),
        (
            ExperimentRecord(
                id="sweep-lr-20250601-110000-0a0b",
                title="sweep-lr",
                created_at=t0 + 2 * 3600,
                jobs=[
                    _job(
                        "lr-1e-4",
                        JobState.RUNNING,
                        start=t0 + 7201,
                        end=None,
                        source="sacct",
                        backend="local",
                        profile="quick",
                    ),
                    _job(
                        "lr-3e-4",
                        JobState.PENDING,
                        start=t0 + 7201,
                        end=None,
                        reason="Priority",
                        source="squeue",
                        backend="local",
                        profile="quick",
                    ),
                ],
                tags=["sweep"],
            ),
            None,
            {},
        ),
        (
            ExperimentRecord(
                id="hello-20250601-114500-1c1d",
                title="hello",
                created_at=NOW - 900,
                jobs=[
                    _job(
                        "hello",
                        JobState.CANCELLED,
                        start=NOW - 899,
                        end=NOW - 880,
                        reason="cancelled by user",
                    )
                ],
                workspace=DEMO_WORKSPACE,
                recipe="hello",
            ),
            "hello",
            {"stdout": "hello 1/5 from demo\nhello 2/5 from demo\n", "stderr": ""},
        ),
    ]
    for record, recipe, logs in experiments:
        files = {}
        for job in record.jobs:
            task = _task_files(recipe or "quick_train", record.overrides if recipe else [])
            files[job.name] = {**task, "executor.json": _executor_json()}
        store.create(record, files)
        events = [{"t": record.created_at, "kind": "created", "parent": record.parent}]
        for job in record.jobs:
            events.append(
                {
                    "t": job.submitted_at,
                    "kind": "submitted",
                    "job": job.name,
                    "handle": str(job.handle),
                }
            )
            if job.state is not JobState.PENDING:
                events.append(
                    {
                        "t": job.submitted_at,
                        "kind": "state",
                        "job": job.name,
                        "from": "SUBMITTED",
                        "to": "RUNNING",
                        "source": "local:proc",
                        "observed_at": job.submitted_at,
                    }
                )
            if job.state.is_terminal:
                events.append(
                    {
                        "t": job.ended_at,
                        "kind": "state",
                        "job": job.name,
                        "from": "RUNNING",
                        "to": job.state.value,
                        "source": job.source,
                        "reason": job.reason,
                        "exit_code": job.exit_code,
                        "observed_at": job.ended_at,
                    }
                )
            for stream, text in logs.items():
                log = store.job_dir(record.id, job.name) / "logs" / f"{stream}.log"
                log.write_text(text + ("\n" if text else ""))
            if recipe == "train":
                lr = 0.001 if "optimizer.lr=0.001" in record.overrides else 0.0003
                _outputs(store.job_dir(record.id, job.name), job.submitted_at or t0, lr)
        (store.exp_dir(record.id) / "events.jsonl").write_text(
            "".join(json.dumps(e, sort_keys=True) + "\n" for e in events)
        )
    return store


def _outputs(job_dir: Path, start: float, lr: float) -> None:
    """What a training job leaves in its NEMORUN_JOB_DIR (here the store's job folder, the
    local backend's run dir): metrics.jsonl and a checkpoint, with fixed content and times."""
    import os

    lines = []
    for step in range(0, 201, 10):
        loss = 2.9 * (1 - lr * 300) ** (step / 10) if lr < 0.003 else 2.9
        lines.append(
            json.dumps({"step": step, "loss": round(loss, 4), "lr": lr, "time": start + step * 0.6})
        )
    metrics = job_dir / "metrics.jsonl"
    metrics.write_text("\n".join(lines) + "\n")
    ckpt = job_dir / "checkpoints" / "step=200.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(bytes(range(256)) * 16)
    for path in (metrics, ckpt, ckpt.parent):
        os.utime(path, (start + 121, start + 121))
