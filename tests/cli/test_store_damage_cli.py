"""The corruption matrix, command line: every damage kind against ls, status, logs, relaunch.

Real subprocesses, each bounded by a timeout: a damaged experiment must never crash (no
traceback), hang, or take the other experiments down. Also the store on a read-only bind
mount and on a full tmpfs (both need root and ``unshare``; skipped with a reason otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from store_damage import DAMAGES

CLI = [sys.executable, "-m", "nemorun_tui.cli"]
TIMEOUT = 30
COMMANDS = ("ls", "ls --json", "status other", "status damaged", "logs damaged", "relaunch")


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NEMORUN_TUI_HOME": str(home),
        "XDG_CONFIG_HOME": str(home.parent / "config"),
        "NEMORUN_TUI_CONFIG": str(home.parent / "no-config.toml"),
    }


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=_env(home), capture_output=True, text=True, timeout=TIMEOUT
    )


def survived(proc: subprocess.CompletedProcess[str]) -> bool:
    """Ended (the timeout raises otherwise), no traceback, and a failure is one line."""
    if "Traceback" in proc.stderr:
        return False
    if proc.returncode == 0:
        return True
    lines = proc.stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("nemorun-tui: error:")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A store with two finished experiments launched for real: `other` and `victim`."""
    home = tmp_path_factory.mktemp("template") / "home"
    for title in ("other", "victim"):
        proc = cli(home, "run", "--script", "echo hi", "--name", title, "-q")
        assert proc.returncode == 0, proc.stderr
    rows = json.loads(cli(home, "ls", "--json").stdout)
    ids = {r["title"]: r["id"] for r in rows}
    return home, ids["other"], ids["victim"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("name", "where", "apply"), DAMAGES, ids=[d[0] for d in DAMAGES])
def test_every_command_survives_one_damaged_experiment(
    template: tuple[Path, str, str], tmp_path: Path, name: str, where: str, apply: object
) -> None:
    source, other, victim = template
    home = tmp_path / "home"
    shutil.copytree(source, home, symlinks=True)
    apply(home / "experiments" / victim, home)  # type: ignore[operator]
    results = {
        "ls": cli(home, "ls"),
        "ls --json": cli(home, "ls", "--json"),
        "status other": cli(home, "status", other, "--no-refresh"),
        "status damaged": cli(home, "status", victim),
        "logs damaged": cli(home, "logs", victim),
        "relaunch": cli(home, "relaunch", victim, "--detach", "-q"),
    }
    broken = {c: p.stderr[-400:] for c, p in results.items() if not survived(p)}
    assert broken == {}
    assert results["ls"].returncode == 0 and other in results["ls"].stdout
    rows = {r["id"]: r for r in json.loads(results["ls --json"].stdout)}
    assert rows[other]["state"] == "SUCCEEDED" and rows[other]["damaged"] is None
    assert results["status other"].returncode == 0 and other in results["status other"].stdout
    if where == "manifest":
        assert rows[victim]["damaged"], rows[victim]
        line = next(x for x in results["ls"].stdout.splitlines() if x.startswith(victim))
        assert "DAMAGED" in line
        for command in ("status damaged", "logs damaged", "relaunch"):
            assert results[command].returncode != 0, command
            assert "damaged" in results[command].stderr, results[command].stderr
    else:
        assert rows[victim]["damaged"] is None
        assert results["status damaged"].returncode == 0, results["status damaged"].stderr


def test_over_long_experiment_references_are_one_line_exit_2(
    template: tuple[Path, str, str],
) -> None:
    home, _, _ = template
    for command in ("status", "logs", "relaunch", "cancel"):
        proc = cli(home, command, "x" * 10_000)
        assert proc.returncode == 2 and survived(proc), (command, proc.stderr[-300:])
        assert "too long" in proc.stderr


def test_rebuild_index_repairs_an_index_with_the_right_version_but_wrong_tables(
    template: tuple[Path, str, str], tmp_path: Path
) -> None:
    import sqlite3

    from core.store.index import INDEX_VERSION

    source, other, victim = template
    home = tmp_path / "home"
    shutil.copytree(source, home)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home}/index.sqlite{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(home / "index.sqlite")
    db.execute("CREATE TABLE experiments (x)")
    db.execute(f"PRAGMA user_version={INDEX_VERSION}")
    db.commit()
    db.close()
    proc = cli(home, "rebuild-index")
    assert proc.returncode == 0 and "2 experiments" in proc.stderr, proc.stderr
    assert {r["id"] for r in json.loads(cli(home, "ls", "--json").stdout)} == {other, victim}


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mount namespaces)"
    if shutil.which("unshare") is None:
        return "needs unshare(1)"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return None if probe.returncode == 0 else "unshare -m is not permitted here"


def _in_namespace(script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script in a private mount namespace (its mounts vanish with it)."""
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-ec", script],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_read_only_store_on_a_real_read_only_mount(
    template: tuple[Path, str, str], tmp_path: Path
) -> None:
    """ls, status --no-refresh and logs of a finished local job work on a store bind-mounted
    read-only (EROFS on every write); a write command fails with one line."""
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    source, other, victim = template
    home = tmp_path / "home"
    shutil.copytree(source, home)
    env = " ".join(f"{k}={v}" for k, v in _env(home).items() if k.startswith(("NEMO", "XDG")))
    py = " ".join(CLI)
    out = tmp_path / "out"
    out.mkdir()
    script = textwrap.dedent(
        f"""
        mount --bind {home} {home}
        mount -o remount,bind,ro {home}
        touch {home}/probe 2>/dev/null && exit 90
        cd {Path(__file__).resolve().parents[2]}
        run() {{ name=$1; shift; set +e; env {env} {py} "$@" >{out}/$name.out 2>{out}/$name.err;
                 echo $? >{out}/$name.rc; set -e; }}
        run ls ls
        run json ls --json
        run status status {other} --no-refresh
        run title status victim --no-refresh
        run logs logs {victim}
        run write run --script true -q
        """
    )
    proc = _in_namespace(script)
    assert proc.returncode == 0, proc.stderr
    result = {
        name: (
            int((out / f"{name}.rc").read_text()),
            (out / f"{name}.out").read_text(),
            (out / f"{name}.err").read_text(),
        )
        for name in ("ls", "json", "status", "title", "logs", "write")
    }
    for name in ("ls", "json", "status", "title", "logs"):
        rc, _, stderr = result[name]
        assert rc == 0 and "Traceback" not in stderr, (name, stderr[-500:])
    assert victim in result["ls"][1] and other in result["ls"][1]
    assert "hi" in result["logs"][1]
    rc, _, stderr = result["write"]
    assert rc != 0 and stderr.strip().count("\n") == 0 and "Read-only" in stderr, stderr


FULL_DISK = textwrap.dedent(
    """
    import asyncio, errno, json, os, subprocess, sys
    from pathlib import Path
    from core.config import Script
    from core.engine import Engine, Plan
    from core.settings import Settings
    from core.store import Store

    root, cli = Path(sys.argv[1]), sys.argv[2:]
    home = root / "home"
    env = {**os.environ, "NEMORUN_TUI_HOME": str(home), "NEMORUN_TUI_CONFIG": "/nonexistent"}
    first = subprocess.run([*cli, "run", "--script", "echo hi", "-q"], env=env)
    assert first.returncode == 0

    def fill() -> None:
        # Write until the filesystem is full (smaller and smaller blocks, to the last byte).
        block = 1 << 16
        try:
            fh = open(root / f"filler-{len(os.listdir(root))}", "wb", buffering=0)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            return
        with fh:
            while block:
                try:
                    fh.write(b"\\0" * block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    block //= 2

    # 1. the disk is full before a launch: one line, exit != 0, nothing left UNSUBMITTED
    fill()
    launch = subprocess.run([*cli, "run", "--script", "echo hi"], env=env,
                            capture_output=True, text=True)
    listing = subprocess.run([*cli, "ls", "--json"], env=env, capture_output=True, text=True)
    rows = json.loads(listing.stdout)
    print(json.dumps({"launch_rc": launch.returncode, "launch_err": launch.stderr,
                      "ls_rc": listing.returncode,
                      "states": sorted(r["state"] for r in rows)}))

    # 2. the disk fills between recording and submitting: the jobs' fate is still recorded
    for path in root.glob("filler-*"):
        path.unlink()
    engine = Engine(Store(home), Settings())
    plan = Plan(title="between")
    plan.add(Script(inline="echo hi"), engine.profile("local"), name="script")
    record = engine.record(plan)
    fill()
    try:
        asyncio.run(engine.submit_recorded(record.id, plan))
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    job = Store(home).load(record.id).jobs[0]
    print(json.dumps({"submit_error": error, "state": job.state.value, "reason": job.reason}))
    """
)


def test_a_full_disk_gives_one_line_errors_and_no_experiment_stays_unsubmitted(
    tmp_path: Path,
) -> None:
    """A real full filesystem: a 4 MB tmpfs mounted in a private mount namespace."""
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    root = tmp_path / "disk"
    root.mkdir()
    script_file = tmp_path / "full_disk.py"
    script_file.write_text(FULL_DISK)
    repo = Path(__file__).resolve().parents[2]
    cli_words = " ".join(CLI)
    proc = _in_namespace(
        f"mount -t tmpfs -o size=4m tmpfs {root}\ncd {repo}\n"
        f"{sys.executable} {script_file} {root} {cli_words}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, between = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert before["launch_rc"] != 0
    err_lines = before["launch_err"].strip().splitlines()
    assert len(err_lines) == 1 and "No space left on device" in err_lines[0], before
    assert before["ls_rc"] == 0 and before["states"] == ["SUCCEEDED"], before
    assert between["state"] != "UNSUBMITTED", between
