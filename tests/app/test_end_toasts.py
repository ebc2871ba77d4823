"""Job ends are said once per job, or once per experiment when a burst ends together."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from app_helpers import wait_for

from core.engine.states import JobState, StatusReport
from core.store import StateChange
from nemorun_tui.end_toasts import Toast, end_toasts
from nemorun_tui.messages import EngineEvent


def ended(
    exp: str, job: str, state: JobState, code: int | None = 0, reason: str | None = None
) -> StateChange:
    report = StatusReport(state, source="test", exit_code=code, reason=reason)
    return StateChange(exp, job, JobState.RUNNING, state, report)


def test_one_end_is_said_as_it_was() -> None:
    (toast,) = end_toasts([ended("e1", "train", JobState.FAILED, 3, "exited with code 3")])
    assert toast == Toast("e1 / train: FAILED, exit 3 (exited with code 3)", "Run ended", "warning")


def test_a_burst_is_one_toast_per_experiment_with_its_counts() -> None:
    changes = [ended("sweep", f"p{i}", JobState.SUCCEEDED) for i in range(5)]
    changes += [ended("sweep", "p5", JobState.FAILED, 1), ended("other", "x", JobState.SUCCEEDED)]
    assert end_toasts(changes) == [
        Toast("sweep: 6 jobs ended (1 FAILED, 5 SUCCEEDED)", "Runs ended", "warning"),
        Toast("other / x: SUCCEEDED, exit 0", "Run ended", "information"),
    ]
    assert end_toasts([ended("s", "a", JobState.SUCCEEDED)] * 2)[0].severity == "information"


async def test_the_app_says_a_sweeps_ends_in_one_toast(
    make_app: Callable[..., Any], tmp_path: Path
) -> None:
    app = make_app(tmp_path / "store", monitor=False, listing_seconds=3600)
    async with app.run_test(size=(140, 40)) as pilot:
        for i in range(6):
            app.post_message(EngineEvent(ended("sweep-1", f"seed={i}", JobState.SUCCEEDED)))
        await wait_for(
            pilot,
            lambda: any("jobs ended" in str(n.message) for n in app._notifications),
            5,
            "toast",
        )
        await pilot.pause(0.5)
        said = [str(n.message) for n in app._notifications if "sweep-1" in str(n.message)]
    assert said == ["sweep-1: 6 jobs ended (6 SUCCEEDED)"]
