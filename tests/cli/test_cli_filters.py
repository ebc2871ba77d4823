"""nemorun_tui.cli_filters and the command-line parser: filters and intermixed words."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from core.store import ExperimentSummary
from nemorun_tui.cli import build_parser, parse_command_line
from nemorun_tui.cli_filters import FilterError, ListingFilter, parse_since, parse_states

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("2h", 7200), ("7d", 7 * 86400), ("1w", 7 * 86400), ("1d12h", 129600)],
)
def test_since_takes_ages(text: str, seconds: int) -> None:
    assert parse_since(text, now=NOW) == NOW - seconds


def test_since_takes_local_dates() -> None:
    assert parse_since("2026-12-01") == time.mktime(time.strptime("2026-12-01", "%Y-%m-%d"))
    assert parse_since("2026-12-01 14:30") == time.mktime(
        time.strptime("2026-12-01 14:30", "%Y-%m-%d %H:%M")
    )


@pytest.mark.parametrize("text", ["yesterday", "", "2h ago", "99999999d", "2026-13-01"])
def test_since_refuses_what_means_nothing(text: str) -> None:
    with pytest.raises(FilterError, match="--since takes"):
        parse_since(text, now=NOW)


def test_states_any_case_and_unknown_named() -> None:
    assert parse_states("running, Failed") == {"RUNNING", "FAILED"}
    with pytest.raises(FilterError, match="unknown state 'runing'.*running"):
        parse_states("runing")
    with pytest.raises(FilterError, match="needs a state"):
        parse_states(",")


def row(**kw: object) -> ExperimentSummary:
    base: dict[str, object] = {"id": "x", "title": "t", "created_at": NOW, "state": "SUCCEEDED"}
    return ExperimentSummary(**{**base, **kw})  # type: ignore[arg-type]


def test_filter_keeps_rows_matching_every_criterion() -> None:
    args = SimpleNamespace(state="failed,damaged", title="LR", tag=["a,b"], since=None)
    wanted = ListingFilter.from_args(args)  # type: ignore[arg-type]
    keep = row(state="FAILED", title="big lr sweep", tags=("a", "b", "c"))
    assert wanted.keeps(keep)
    assert not wanted.keeps(row(state="SUCCEEDED", title="lr", tags=("a", "b")))
    assert not wanted.keeps(row(state="FAILED", title="other", tags=("a", "b")))
    assert not wanted.keeps(row(state="FAILED", title="lr", tags=("a",)))
    assert wanted.keeps(row(state="DAMAGED", damaged="bad json", title="lr", tags=("a", "b")))
    assert not wanted.is_default and ListingFilter().is_default


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "train", "--executor", "local", "trainer.max_steps=3"],
        ["run", "train", "a=1", "-q", "b=2", "--detach", "--name", "n", "c=3"],
        ["--home", "/h", "relaunch", "exp", "--detach", "k=v", "--repackage"],
        ["run", "--tag", "x", "train", "a=1", "--tag", "y", "--note", "hi"],
        ["logs", "exp", "--job", "a", "-f"],
        ["ls", "--state", "running", "--tag", "t", "--all"],
    ],
)
def test_options_anywhere_parse_like_options_first(argv: list[str]) -> None:
    """Intermixed words give what the same words with every option moved first give."""
    args = parse_command_line(argv)
    command_at = next(i for i, a in enumerate(argv) if a in ("run", "relaunch", "logs", "ls"))
    words, options, rest = [], [], argv[command_at + 1 :]
    i = 0
    parser = build_parser()
    while i < len(rest):
        item = rest[i]
        if item.startswith("-"):
            takes_value = item in ("--executor", "--name", "--tag", "--note", "--job", "--state")
            options += rest[i : i + 1 + takes_value]
            i += 1 + takes_value
        else:
            words.append(item)
            i += 1
    reordered = [*argv[: command_at + 1], *options, *words]
    assert args == parser.parse_args(reordered)
