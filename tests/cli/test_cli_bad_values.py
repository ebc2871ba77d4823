"""Hostile values on the command line: one stderr line, exit 2, no traceback, store untouched.

Each case once escaped as a traceback (RecursionError, TypeError, OverflowError, a crash when
the experiment was recorded, ENAMETOOLONG, SQLite's OverflowError) or gave a misleading
answer (``ls --limit 0`` said the store was empty). Real subprocesses, a real store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "nemorun_tui.cli"]

WORKSPACE = textwrap.dedent(
    """
    import dataclasses
    from core.config import Config, Partial
    from core.recipes import recipe

    @dataclasses.dataclass
    class Trainer:
        max_steps: int = 3
        lr: float = 0.1

    def fit(trainer: Trainer, tags: list[str] | None = None) -> None:
        print("fit", trainer.max_steps, trainer.lr, tags)

    @recipe
    def train() -> Partial:
        return Partial(fit, trainer=Config(Trainer))
    """
)

BIG = "9" * 4000
LONG = "a" * 300


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One store with one finished experiment (`script`), shared by every case (read-only)."""
    root = tmp_path_factory.mktemp("bad-values")
    ws = root / "ws.py"
    ws.write_text(WORKSPACE)
    env = {
        **os.environ,
        "NEMORUN_TUI_HOME": str(root / "home"),
        "NEMORUN_TUI_WORKSPACE": str(ws),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    seeded = cli(env, "run", "--script", "true")
    assert seeded.returncode == 0, seeded.stderr
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def tree(home: Path) -> list[tuple[str, int, int]]:
    """Every file in the store with its size and mtime (the listing cache aside)."""
    return sorted(
        (str(p.relative_to(home)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in home.rglob("*")
        if p.is_file() and not p.name.startswith("index.sqlite")
    )


CASES = [
    # the overrides parser, through `run` (with and without --dryrun) and `relaunch`
    (["run", "train", "trainer.max_steps=" + "[" * 500], "brackets nest more than 100"),
    (["run", "train", "tags={[]}"], "set items must be scalars"),
    (["run", "train", "tags={[]}", "--dryrun"], "set items must be scalars"),
    (["run", "train", "trainer.lr=" + "9" * 400], "too large for a float"),
    (["run", "train", "trainer.lr*=" + "9" * 400], "the result is too large for a float"),
    (["run", "train", "trainer.lr=1e400"], "too large for a float"),
    (["run", "train", "trainer.max_steps=" + "9" * 4301], "has more than 4300 digits"),
    (["run", "train", f"trainer.max_steps={BIG}", f"trainer.max_steps*={BIG}"], "4300 digits"),
    (
        ["run", "train", f"trainer.max_steps={BIG}", f"trainer.max_steps*={BIG}", "--dryrun"],
        "4300 digits",
    ),
    (["run", "train", "tags=[\udcff]"], "not valid UTF-8"),  # the byte 0xff on argv
    (["run", "train", LONG + "=1"], "at most 255"),
    (["relaunch", "script", "args=" + "[" * 500], "brackets nest more than 100"),
    (["relaunch", "script", "args={[]}"], "set items must be scalars"),
    # local argument checks
    (["ls", "--limit", "1e20"], "--limit takes a whole number from 1 to 1000000000"),
    (["ls", "--limit", "0"], "--limit takes a whole number"),
    (["ls", "--limit", "-1"], "--limit takes a whole number"),
    (["ls", "--limit", "9" * 20], "--limit takes a whole number"),
    (["run", "--script", "true", "--name", LONG], "--name 'aaaa"),
    (["run", "train", "--name", LONG, "--dryrun"], "(300 characters; at most 128)"),
    (["status", LONG], "experiment reference 'aaaa"),
    (["logs", LONG], "(300 bytes; at most 255)"),
    (["cancel", LONG], "(300 bytes; at most 255)"),
    (["relaunch", LONG], "(300 bytes; at most 255)"),
    (["logs", "script", LONG], "job name 'aaaa"),
    (["status", "é" * 128], "(256 bytes; at most 255)"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=lambda v: str(v)[:40])
def test_hostile_value_is_one_line_exit_two_store_untouched(
    env: dict[str, str], args: list[str], message: str
) -> None:
    home = Path(env["NEMORUN_TUI_HOME"])
    before = tree(home)
    result = cli(env, *args)
    assert result.returncode == 2, (result.stdout[-500:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("nemorun-tui: error: ")
    assert message in lines[0]
    assert len(lines[0]) < 600  # the value is quoted clipped, never in full
    assert result.stdout == ""
    assert tree(home) == before


def test_ls_limit_in_range_lists_that_many(env: dict[str, str]) -> None:
    result = cli(env, "ls", "--limit", "1")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert len(rows) == 2 and rows[0].startswith("ID") and "script" in rows[1]
