"""The demo workspace shipped with the app, so ``make run`` has something real to launch.

It imports only the standard library and ``core`` (never textual): job processes import this
file to find ``train``. ``core.config`` is used as ``nr.Config(...)`` *inside* recipe bodies,
so importing this module does not import fiddle and a job starts fast.

Try: ``train``, ``quick_train trainer=big_trainer optimizer.lr*=2``, ``hello``, ``fail``.
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import time
from dataclasses import dataclass
from typing import Literal

from core import config as nr
from core.recipes import factory, recipe


class Precision(enum.Enum):
    """Numeric precision of the (pretend) training run."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


@dataclass
class Optimizer:
    """Optimizer settings; ``name`` is checked against the literal choices."""

    lr: float = 3e-4
    weight_decay: float = 0.0
    name: Literal["adamw", "sgd"] = "adamw"


@dataclass
class Trainer:
    """How long to train and how often to log; ``step_seconds`` paces the fake steps."""

    max_steps: int = 20
    log_every: int = 5
    precision: Precision = Precision.BF16
    step_seconds: float = 0.1


def train(
    trainer: Trainer,
    optimizer: Optimizer,
    tags: list[str] | None = None,
    seed: int = 0,
    fail_at_step: int | None = None,
) -> float:
    """Print a plausible training log (loss going down) and return the final loss.

    Raises at ``fail_at_step`` so the app's failure path (exit code, traceback in the log)
    can be shown without a real model.
    """
    rng = random.Random(seed)
    print(
        f"[train] steps={trainer.max_steps} precision={trainer.precision.value} "
        f"optimizer={optimizer.name} lr={optimizer.lr:g} wd={optimizer.weight_decay:g} "
        f"seed={seed} tags={','.join(tags or []) or '-'}",
        flush=True,
    )
    loss = 2.5 + rng.random()
    speed = min(1.0, optimizer.lr * 2000)  # a larger lr converges faster, up to a point
    # Metrics where the app looks for them (the job's output dir): the Metrics view (M) and
    # `nemorun-tui metrics` plot this file while the run goes on.
    out_dir = os.environ.get("NEMORUN_JOB_DIR")
    metrics = open(os.path.join(out_dir, "metrics.jsonl"), "a") if out_dir else None  # noqa: SIM115
    for step in range(1, trainer.max_steps + 1):
        if fail_at_step is not None and step == fail_at_step:
            raise RuntimeError(f"loss became NaN at step {step} (simulated failure)")
        time.sleep(trainer.step_seconds)
        loss = max(0.05, loss * (1 - 0.08 * speed) + rng.gauss(0, 0.02))
        if metrics is not None:
            metrics.write(json.dumps({"step": step, "loss": round(loss, 6)}) + "\n")
            metrics.flush()
        if step % max(1, trainer.log_every) == 0 or step == trainer.max_steps:
            tokens = int(4096 / max(trainer.step_seconds, 1e-3))
            print(
                f"step {step:>5}/{trainer.max_steps} | loss {loss:.4f} | "
                f"ppl {math.exp(loss):8.2f} | lr {optimizer.lr:.2e} | {tokens} tok/s",
                flush=True,
            )
    print(f"[train] done: final loss {loss:.4f}", flush=True)
    if metrics is not None:
        metrics.close()
    return loss


@factory(help="10 quick steps, logging every 2")
def small_trainer() -> nr.Config:
    return nr.Config(Trainer, max_steps=10, log_every=2, step_seconds=0.05)


@factory(help="200 steps at fp32, logging every 20")
def big_trainer() -> nr.Config:
    return nr.Config(Trainer, max_steps=200, log_every=20, precision=Precision.FP32)


@factory(help="plain SGD with a larger learning rate")
def sgd() -> nr.Config:
    return nr.Config(Optimizer, name="sgd", lr=0.05)


@recipe(name="train", help="20 fake training steps with AdamW (about 2 s)")
def train_recipe() -> nr.Partial:
    return nr.Partial(
        train,
        trainer=nr.Config(Trainer),
        optimizer=nr.Config(Optimizer),
        tags=["demo"],
    )


@recipe(help="5 fast steps: the smallest useful run")
def quick_train() -> nr.Partial:
    return nr.Partial(
        train,
        trainer=nr.Config(Trainer, max_steps=5, log_every=1, step_seconds=0.01),
        optimizer=nr.Config(Optimizer),
        tags=["quick"],
    )


@recipe(help="a bash script: greets 5 times (args: count)")
def hello() -> nr.Script:
    return nr.Script(
        inline=(
            'count="${1:-5}"\n'
            'for i in $(seq 1 "$count"); do\n'
            '  echo "hello $i/$count from $(hostname)"\n'
            "  sleep 0.2\n"
            "done\n"
        ),
        args=["5"],
    )


@recipe(help="training that crashes at step 3 (shows a failed run)")
def fail() -> nr.Partial:
    return nr.Partial(
        train,
        trainer=nr.Config(Trainer, max_steps=10, log_every=1, step_seconds=0.05),
        optimizer=nr.Config(Optimizer),
        fail_at_step=3,
    )
