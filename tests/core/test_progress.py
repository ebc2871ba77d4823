"""Transfer progress: throttled updates, the final one always delivered."""

from __future__ import annotations

import pytest

from core import progress
from core.progress import RateMeter, describe_transfer


def test_updates_are_throttled_but_the_last_one_always_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    seen: list[tuple[int, float]] = []
    meter = RateMeter(lambda done, total, rate: seen.append((done, rate)), min_interval=0.5)
    for t, done in ((0.0, 0), (0.1, 10), (0.2, 20), (0.6, 30), (0.7, 40), (0.8, 100)):
        now[0] = t
        meter(done, 100)
    assert [d for d, _ in seen] == [0, 30, 100]
    assert seen[-1][1] == pytest.approx(125.0)  # 100 bytes in 0.8 s


def test_describe_transfer() -> None:
    assert (
        describe_transfer(50_000_000, 200_000_000, 25_000_000) == "50.0/200.0 MB (25%, 25.0 MB/s)"
    )
    assert describe_transfer(0, 0, 0) == "0.0/0.0 MB (100%, 0.0 MB/s)"
