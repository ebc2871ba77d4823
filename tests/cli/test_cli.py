"""The `nemorun-tui` command line, end to end through real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "nemorun_tui.cli"]

WORKSPACE = textwrap.dedent(
    """
    import dataclasses, json, os, sys
    from core.config import Config, Partial, Script
    from core.recipes import recipe

    @dataclasses.dataclass
    class Trainer:
        max_steps: int = 3
        lr: float = 0.1

    def fit(trainer: Trainer, out: str = "", note: str = "") -> None:
        if out:
            with open(out, "w") as fh:
                json.dump({"note": note, "env": os.environ.get("NRT_TEST_ENV"),
                           "max_steps": trainer.max_steps, "lr": trainer.lr}, fh)
        print(f"fit {trainer.max_steps} {trainer.lr}")

    def boom() -> None:
        raise RuntimeError("exploded on purpose")

    @recipe
    def train() -> Partial:
        return Partial(fit, trainer=Config(Trainer))

    @recipe
    def crash() -> Partial:
        return Partial(boom)

    @recipe
    def sleeper() -> Script:
        return Script(inline="echo started; sleep 30; echo never")
    """
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    ws = tmp_path / "ws.py"
    ws.write_text(WORKSPACE)
    return {
        **os.environ,
        "NEMORUN_TUI_HOME": str(home),
        "NEMORUN_TUI_WORKSPACE": str(ws),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def tree(home: Path) -> list[tuple[str, int]]:
    """Every file in the store with its size (to prove "store untouched")."""
    if not home.exists():
        return []
    return sorted(
        (str(p.relative_to(home)), p.stat().st_size)
        for p in home.rglob("*")
        if p.is_file() and not p.name.startswith("index.sqlite")
    )


def only_exp(env: dict[str, str]) -> dict[str, object]:
    rows = json.loads(cli(env, "ls", "--json").stdout)
    assert len(rows) == 1
    return rows[0]


def test_run_script_prints_output_and_succeeds(env: dict[str, str]) -> None:
    result = cli(env, "run", "--script", "echo hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "SUCCEEDED" in result.stderr
    row = only_exp(env)
    assert row["state"] == "SUCCEEDED" and row["jobs"] == 1 and row["backends"] == ["local"]


def test_failing_script_exits_one_and_records_exit_code(env: dict[str, str]) -> None:
    result = cli(env, "run", "--script", "echo bad >&2; exit 3")
    assert result.returncode == 1
    status = json.loads(cli(env, "status", "script", "--json").stdout)
    (job,) = status["jobs"]
    assert (status["state"], job["state"], job["exit_code"]) == ("FAILED", "FAILED", 3)
    logs = cli(env, "logs", status["id"], "--stderr")
    assert logs.stdout == "bad\n"


def test_run_recipe_with_overrides_then_relaunch_records_parent(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    result = cli(env, "run", "train", "trainer.max_steps=7", f"out={out}", "--name", "exp1")
    assert result.returncode == 0, result.stderr
    assert "fit 7 0.1" in result.stdout
    assert json.loads(out.read_text())["max_steps"] == 7
    relaunch = cli(env, "relaunch", "exp1", "trainer.lr=0.5")
    assert relaunch.returncode == 0, relaunch.stderr
    assert "fit 7 0.5" in relaunch.stdout
    rows = json.loads(cli(env, "ls", "--json").stdout)
    child, parent = rows  # newest first
    assert child["parent"] == parent["id"] and parent["parent"] is None
    assert json.loads(out.read_text())["lr"] == 0.5


def test_partial_exception_fails_with_traceback_in_stderr_log(env: dict[str, str]) -> None:
    result = cli(env, "run", "crash")
    assert result.returncode == 1
    exp = only_exp(env)
    err = cli(env, "logs", str(exp["id"]), "--stderr").stdout
    assert "RuntimeError: exploded on purpose" in err


def test_values_with_shell_metacharacters_reach_the_job_verbatim(
    env: dict[str, str], tmp_path: Path
) -> None:
    nasty = 'it\'s "quoted" $(touch /tmp/pwned) `id`; rm -rf nothing\nsecond line'
    out = tmp_path / "nasty.json"
    env = {**env, "NRT_TEST_ENV": nasty}
    result = cli(env, "run", "train", f"out={out}", f"note={json.dumps(nasty)}")
    assert result.returncode == 0, result.stderr
    got = json.loads(out.read_text())
    assert got["note"] == nasty
    assert got["env"] == nasty


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "trian"], "did you mean `train`"),
        (["run", "train", "trainer.max_stepz=3"], "did you mean `max_steps`"),
        (["run", "train", "trainer.max_steps=ten"], "max_steps"),
        (["run", "train", "trainer.lr=[1,"], "trainer.lr"),
        (["--workspace", "/nonexistent/ws.py", "run", "train"], "not found"),
        (["status", "no-such-experiment"], "no experiment matches"),
        (["run"], "name a recipe"),
        (["run", "--executor", "nosuch", "--script", "true"], "no executor profile `nosuch`"),
    ],
)
def test_bad_input_is_one_line_exit_two_store_untouched(
    env: dict[str, str], args: list[str], message: str
) -> None:
    cli(env, "run", "--script", "true")  # something already in the store
    home = Path(env["NEMORUN_TUI_HOME"])
    before = tree(home)
    result = cli(env, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nemorun-tui: error:")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert tree(home) == before


def test_workspace_that_raises_on_import_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad_ws.py"
    bad.write_text("x = 1\nraise ZeroDivisionError('nope')\n")
    result = cli(env, "--workspace", str(bad), "run", "train")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "ZeroDivisionError" in result.stderr
    assert tree(Path(env["NEMORUN_TUI_HOME"])) == []


def test_corrupt_manifest_is_reported_and_listing_survives(env: dict[str, str]) -> None:
    cli(env, "run", "--script", "true", "--name", "good")
    cli(env, "run", "--script", "true", "--name", "bad")
    rows = json.loads(cli(env, "ls", "--json").stdout)
    bad_id = next(r["id"] for r in rows if r["title"] == "bad")
    rendered = cli(env, "ls").stdout  # rendered by the store, kept in the index
    assert cli(env, "ls").stdout == rendered  # served from the index without the store
    manifest = Path(env["NEMORUN_TUI_HOME"]) / "experiments" / bad_id / "experiment.json"
    manifest.write_text(manifest.read_text()[:40])  # within the same second
    listing = cli(env, "ls")
    assert listing.returncode == 0
    assert "DAMAGED" in listing.stdout and "good" in listing.stdout
    status = cli(env, "status", bad_id)
    assert status.returncode == 2
    assert "damaged" in status.stderr and len(status.stderr.strip().splitlines()) == 1


def test_detach_then_status_logs_follow_and_cancel(env: dict[str, str]) -> None:
    result = cli(env, "run", "sleeper", "--detach")
    assert result.returncode == 0, result.stderr
    exp_id = only_exp(env)["id"]
    assert result.stdout == f"{exp_id}\n"  # scriptable: `id=$(nemorun-tui run ... --detach)`
    deadline = time.time() + 20
    while time.time() < deadline:
        status = json.loads(cli(env, "status", str(exp_id), "--json").stdout)
        if status["state"] == "RUNNING":
            break
        time.sleep(0.1)
    assert status["state"] == "RUNNING"
    follower = subprocess.Popen(
        [*CLI, "logs", str(exp_id), "-f"], env=env, stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    cancel = cli(env, "cancel", str(exp_id))
    assert cancel.returncode == 0 and "cancel requested" in cancel.stderr
    out, _ = follower.communicate(timeout=30)
    assert out == "started\n"  # follow ended when the job ended, with everything it printed
    final = cli(env, "status", str(exp_id), "--json")
    assert final.returncode == 1
    assert json.loads(final.stdout)["state"] == "CANCELLED"


def test_ctrl_c_cancels_the_running_experiment(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [*CLI, "run", "sleeper"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        rows = json.loads(cli(env, "ls", "--json").stdout or "[]")
        if rows and rows[0]["state"] == "RUNNING":
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "cancelling" in err
    assert only_exp(env)["state"] == "CANCELLED"


def test_ls_json_shape_is_stable(env: dict[str, str]) -> None:
    cli(env, "run", "--script", "true", "--name", "shape")
    row = only_exp(env)
    assert set(row) == {
        "archived",
        "note",
        "id",
        "title",
        "created_at",
        "ended_at",
        "state",
        "parent",
        "tags",
        "backends",
        "executors",
        "jobs",
        "damaged",
    }
    assert (row["backends"], row["executors"]) == (["local"], ["local"])


def test_ls_names_the_executor_profile_a_run_used(env: dict[str, str]) -> None:
    config = Path(env["XDG_CONFIG_HOME"]) / "nemorun-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[executors.quick]\nbackend = "local"\n')
    cli(env, "run", "--script", "true", "--executor", "quick")
    assert only_exp(env)["executors"] == ["local/quick"]
    assert "local/quick" in cli(env, "ls").stdout


def test_secret_env_is_passed_but_never_stored(env: dict[str, str], tmp_path: Path) -> None:
    config = Path(env["XDG_CONFIG_HOME"]) / "nemorun-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        '[executors.sec]\nbackend = "local"\nsecret_env = ["NRT_SECRET"]\n'
        'env_vars = { PLAIN = "visible" }\n'
    )
    secret = "s3cr3t-value-never-stored"
    env = {**env, "NRT_SECRET": secret}
    check = f'[ "${{#NRT_SECRET}}" = {len(secret)} ] && echo "$PLAIN"'
    result = cli(env, "run", "--executor", "sec", "--script", check)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "visible\n"
    for path in Path(env["NEMORUN_TUI_HOME"]).rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    without = {k: v for k, v in env.items() if k != "NRT_SECRET"}
    missing = cli(without, "run", "--executor", "sec", "--script", "true")
    assert missing.returncode == 2 and "NRT_SECRET" in missing.stderr


def test_help_lists_every_command() -> None:
    result = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "ls", "status", "logs", "cancel", "relaunch"):
        assert command in result.stdout
    assert "exit codes" in result.stdout


def test_home_and_workspace_work_before_or_after_the_command(
    env: dict[str, str], tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere"
    ws = env["NEMORUN_TUI_WORKSPACE"]
    plain = {k: v for k, v in env.items() if k not in ("NEMORUN_TUI_WORKSPACE",)}
    after = cli(
        plain, "run", "train", "trainer.max_steps=2", "--workspace", ws, "--home", str(other)
    )
    assert after.returncode == 0, after.stderr
    before = cli(plain, "--home", str(other), "ls", "--json")
    assert [r["title"] for r in json.loads(before.stdout)] == ["train"]
    assert (
        json.loads(cli(plain, "ls", "--json", "--home", str(other)).stdout)[0]["title"] == "train"
    )
    assert not (Path(env["NEMORUN_TUI_HOME"]) / "experiments").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["ls", "--json"],
        ["--home", "/h", "ls", "--limit", "3"],
        ["--home=/h", "status", "abc", "--no-refresh"],
        ["run", "train", "a.b=1", "--workspace", "ws.py", "--detach"],
        ["--workspace", "ws.py", "relaunch", "x", "lr=2", "--repackage"],
        ["logs", "e", "j", "-f", "--stderr"],
        ["rebuild-index"],
        [],
    ],
)
def test_a_command_alone_parses_like_the_full_command_line(argv: list[str]) -> None:
    """The fast path builds only the named command's parser; the result must not differ."""
    from nemorun_tui.cli import build_parser, command_in

    only = command_in(argv)
    assert only == next(
        (a for a in argv if a in ("ls", "status", "run", "relaunch", "logs", "rebuild-index")), None
    )
    assert build_parser(only=only).parse_args(argv) == build_parser().parse_args(argv)


def test_flags_and_unknown_commands_get_the_full_parser() -> None:
    from nemorun_tui.cli import command_in

    assert command_in(["--help"]) is None
    assert command_in(["--version", "ls"]) is None
    assert command_in(["lss"]) is None  # the full parser names the valid choices
    assert command_in(["--home", "ls", "status", "x"]) == "status"  # `ls` was --home's value
