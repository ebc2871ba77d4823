"""The CLI as a daily driver: options anywhere, run management, filters, logs, recipes.

Real subprocesses on a real store (the local backend), like tests/cli/test_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "nemorun_tui.cli"]

WORKSPACE = textwrap.dedent(
    """
    import dataclasses, json, os, pathlib
    from core.config import Config, Partial, Script
    from core.recipes import factory, recipe

    @dataclasses.dataclass
    class Data:
        path: pathlib.Path = pathlib.Path("/data/train")
        extra: dict = dataclasses.field(default_factory=dict)

    @dataclasses.dataclass
    class Trainer:
        max_steps: int = 3

    def fit(trainer: Trainer, data: Data, tags: list[str] | None = None, out: str = "") -> None:
        if out:
            with open(out, "w") as fh:
                json.dump({"max_steps": trainer.max_steps, "path": str(data.path),
                           "extra": data.extra, "tags": tags, "cwd": os.getcwd()}, fh)
        print(f"fit {trainer.max_steps}")

    @factory(help="a tiny trainer")
    def tiny_trainer() -> Config:
        return Config(Trainer, max_steps=1)

    @recipe(help="train a model")
    def train() -> Partial:
        return Partial(fit, trainer=Config(Trainer), data=Config(Data))

    @recipe
    def probe() -> Script:
        return Script(inline="echo probe=$NRT_PROBE")

    @recipe
    def sleeper() -> Script:
        return Script(inline="echo started; sleep 30")
    """
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    ws = tmp_path / "ws.py"
    ws.write_text(WORKSPACE)
    return {
        **os.environ,
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "NEMORUN_TUI_WORKSPACE": str(ws),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def cli(
    env: dict[str, str], *args: str, timeout: float = 60, stdin: str | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=stdin,
        **kw,  # type: ignore[call-overload]
    )


def rows(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    result = cli(env, "ls", "--json", *args)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def launched(env: dict[str, str], *args: str) -> str:
    """Run to the end; the experiment id."""
    result = cli(env, "run", *args, "--detach")
    assert result.returncode == 0, result.stderr
    exp_id = result.stdout.strip()
    status = cli(env, "status", exp_id, "--watch", "--interval", "0.2", timeout=60)
    assert status.returncode in (0, 1), status.stderr
    return exp_id


# -- options and overrides in any order ---------------------------------------------------
def test_options_between_overrides(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = cli(
        env,
        "run",
        "train",
        "--executor",
        "local",
        "trainer.max_steps=5",
        "-q",
        "--name",
        "mixed",
        f"out={out}",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["max_steps"] == 5
    assert result.stderr == ""  # -q after an override still counts
    assert [r["title"] for r in rows(env)] == ["mixed"]


def test_detach_between_overrides_prints_only_the_id(env: dict[str, str]) -> None:
    result = cli(env, "run", "train", "trainer.max_steps=2", "--detach", "data.extra={}")
    assert result.returncode == 0, result.stderr
    exp_id = result.stdout.strip()
    assert result.stdout == exp_id + "\n"
    assert [r["id"] for r in rows(env)] == [exp_id]


def test_relaunch_exp_then_detach_then_override(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    parent = launched(env, "train", f"out={out}")
    result = cli(env, "relaunch", parent, "--detach", "trainer.max_steps=9")
    assert result.returncode == 0, result.stderr
    child = result.stdout.strip()
    cli(env, "status", child, "--watch", "--interval", "0.2")
    assert json.loads(out.read_text())["max_steps"] == 9
    assert {r["id"]: r["parent"] for r in rows(env)}[child] == parent


def test_executor_settings_per_launch_in_run_and_relaunch(env: dict[str, str]) -> None:
    """``executor.<field>=value`` sets this launch's executor (the app's spelling too)."""
    exp_id = launched(env, "probe", "executor.env.NRT_PROBE=first")
    assert "probe=first" in cli(env, "logs", exp_id).stdout
    result = cli(env, "relaunch", exp_id, "executor.env_vars.NRT_PROBE=second", "--detach")
    assert result.returncode == 0, result.stderr
    child = result.stdout.strip()
    cli(env, "status", child, "--watch", "--interval", "0.2")
    assert "probe=second" in cli(env, "logs", child).stdout
    status = json.loads(cli(env, "status", child, "--json").stdout)
    assert "executor.env_vars.NRT_PROBE=second" in status["overrides"]

    bad = cli(env, "run", "probe", "executor.nodez=2")
    assert bad.returncode == 2
    assert "nodes" in bad.stderr and "Traceback" not in bad.stderr
    assert len(rows(env)) == 2  # the refused launch wrote nothing


def test_a_usage_error_prints_the_subcommands_usage(env: dict[str, str]) -> None:
    result = cli(env, "run", "train", "--bogus", "a=1")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: nemorun-tui run ")
    assert "unrecognized arguments: --bogus" in result.stderr
    relaunch = cli(env, "relaunch")
    assert relaunch.returncode == 2 and "usage: nemorun-tui relaunch" in relaunch.stderr


# -- clear errors -------------------------------------------------------------------------
def test_home_that_is_a_file_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for args in (["--home", str(afile), "ls"], ["ls", "--home", str(afile / "sub")]):
        result = cli(env, *args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "not a directory" in result.stderr and "Traceback" not in result.stderr
    assert afile.read_text() == "x"


def test_ls_limit_zero_never_says_the_store_is_empty(env: dict[str, str]) -> None:
    launched(env, "--script", "true")
    result = cli(env, "ls", "--limit", "0")
    assert "no experiments yet" not in result.stderr
    assert result.returncode == 2  # refused: 0 rows would look like an empty store


# -- run management -----------------------------------------------------------------------
def test_tag_note_at_launch_and_after(env: dict[str, str]) -> None:
    exp = launched(env, "--script", "true", "--tag", "sweep", "--note", "first try", "--tag", "a,b")
    (row,) = rows(env)
    assert row["tags"] == ["sweep", "a", "b"] and row["note"] == "first try"
    assert cli(env, "tag", exp, "lr", "b").returncode == 0
    assert rows(env)[0]["tags"] == ["sweep", "a", "b", "lr"]
    assert cli(env, "tag", exp, "--remove", "a", "sweep").returncode == 0
    assert rows(env)[0]["tags"] == ["b", "lr"]
    assert cli(env, "note", exp, "second thoughts").returncode == 0
    status = cli(env, "status", exp).stdout
    assert "tags: b, lr" in status and "note: second thoughts" in status
    bad = cli(env, "tag", exp, "has space")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert rows(env)[0]["tags"] == ["b", "lr"]


def test_a_bad_tag_at_launch_launches_nothing(env: dict[str, str]) -> None:
    result = cli(env, "run", "--script", "true", "--tag", "\x1b[31m")
    assert result.returncode == 2 and "control" in result.stderr
    assert rows(env) == []


def test_archive_hides_from_default_listing(env: dict[str, str]) -> None:
    kept = launched(env, "--script", "true", "--name", "kept")
    gone = launched(env, "--script", "true", "--name", "gone")
    table = cli(env, "ls").stdout
    assert "gone" in table  # before: listed (and the rendering is cached)
    assert cli(env, "archive", gone).returncode == 0
    assert [r["id"] for r in rows(env)] == [kept]
    assert "gone" not in cli(env, "ls").stdout
    assert [r["id"] for r in rows(env, "--archived")] == [gone]
    assert {r["id"] for r in rows(env, "--all")} == {kept, gone}
    assert [r["id"] for r in rows(env, "--all", "--limit", "1")] == [gone]  # the newest
    assert [r["id"] for r in rows(env, "--limit", "5")] == [kept]
    cli(env, "archive", kept)
    empty = cli(env, "ls")
    assert empty.stdout == "" and "archived" in empty.stderr
    assert "no experiments yet" not in empty.stderr
    assert cli(env, "archive", "--undo", gone, kept).returncode == 0
    assert {r["id"] for r in rows(env)} == {kept, gone}


def test_rm_asks_refuses_live_and_deletes_with_yes(env: dict[str, str]) -> None:
    done = launched(env, "--script", "true", "--name", "done")
    home = Path(env["NEMORUN_TUI_HOME"])
    # No terminal to ask on: refused, nothing deleted.
    refused = cli(env, "rm", done, stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert (home / "experiments" / done).is_dir()
    # A typo among the references: nothing deleted either.
    typo = cli(env, "rm", done, "no-such-exp", "--yes")
    assert typo.returncode == 2 and (home / "experiments" / done).is_dir()
    live = cli(env, "run", "sleeper", "--detach")
    live_id = live.stdout.strip()
    try:
        result = cli(env, "rm", live_id, "--yes")
        assert result.returncode == 2 and "live" in result.stderr
        assert (home / "experiments" / live_id).is_dir()
    finally:
        cli(env, "cancel", live_id)
    deleted = cli(env, "rm", "--yes", done)
    assert deleted.returncode == 0, deleted.stderr
    assert not (home / "experiments" / done).exists()
    assert [r["id"] for r in rows(env, "--all")] == [live_id]
    assert done not in cli(env, "ls").stdout


def test_rm_confirmation_on_a_terminal(env: dict[str, str]) -> None:
    import pty

    done = launched(env, "--script", "true", "--name", "ask-me")
    home = Path(env["NEMORUN_TUI_HOME"])

    def answer(text: bytes) -> tuple[int, bytes]:
        primary, secondary = pty.openpty()
        proc = subprocess.Popen(
            [*CLI, "rm", done],
            env=env,
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(secondary)
        os.write(primary, text)
        _, err = proc.communicate(timeout=60)
        os.close(primary)
        return proc.returncode, err

    code, err = answer(b"n\n")
    assert code == 1 and b"nothing deleted" in err and b"ask-me" in err
    assert (home / "experiments" / done).is_dir()
    code, err = answer(b"y\n")
    assert code == 0, err
    assert not (home / "experiments" / done).exists()


# -- ls filters ---------------------------------------------------------------------------
def test_ls_filters(env: dict[str, str]) -> None:
    ok = launched(env, "--script", "true", "--name", "Alpha run", "--tag", "sweep")
    bad = launched(env, "--script", "exit 3", "--name", "beta", "--tag", "sweep", "--tag", "x")
    assert [r["id"] for r in rows(env, "--state", "failed")] == [bad]
    assert {r["id"] for r in rows(env, "--state", "FAILED,succeeded")} == {ok, bad}
    assert [r["id"] for r in rows(env, "--title", "alpha")] == [ok]
    assert {r["id"] for r in rows(env, "--tag", "sweep")} == {ok, bad}
    assert [r["id"] for r in rows(env, "--tag", "sweep", "--tag", "x")] == [bad]
    assert {r["id"] for r in rows(env, "--since", "1h")} == {ok, bad}
    assert rows(env, "--since", "2999-01-01") == []
    none = cli(env, "ls", "--title", "gamma")
    assert none.stdout == "" and "no experiments match (2 in the store)" in none.stderr
    table = cli(env, "ls", "--tag", "x").stdout
    assert "beta" in table and "[sweep,x]" in table and "Alpha" not in table
    for args, message in (
        (["--state", "runing"], "unknown state"),
        (["--since", "yesterday"], "--since takes"),
    ):
        result = cli(env, "ls", *args)
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


# -- logs and status ----------------------------------------------------------------------
def _two_job_experiment(env: dict[str, str]) -> str:
    code = textwrap.dedent(
        """
        import nemorun_tui as run
        with run.Experiment("pair") as exp:
            exp.add(run.Script(inline="echo a1; echo a2"), name="first")
            exp.add(run.Script(inline="echo b1 >&2; printf b2"), name="second")
            exp.run(stream=False)
        print(exp.id)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_logs_of_several_jobs_are_prefixed(env: dict[str, str]) -> None:
    exp = _two_job_experiment(env)
    out = cli(env, "logs", exp)
    assert out.returncode == 0, out.stderr
    # A last line without a newline gets one, so prefixes never run together.
    assert out.stdout == "[first ] a1\n[first ] a2\n[second] b2\n"
    err = cli(env, "logs", exp, "--stderr")
    assert err.stdout == "[second] b1\n"  # first wrote nothing on stderr
    assert cli(env, "logs", exp, "--job", "first").stdout == "a1\na2\n"
    assert cli(env, "logs", exp, "second").stdout == "b2"  # one job: byte for byte
    followed = cli(env, "logs", exp, "-f")
    assert sorted(followed.stdout.splitlines()) == ["[first ] a1", "[first ] a2", "[second] b2"]
    unknown = cli(env, "logs", exp, "--job", "third")
    assert unknown.returncode == 2 and "first, second" in unknown.stderr


def test_status_watch_prints_until_the_end(env: dict[str, str]) -> None:
    result = cli(env, "run", "--script", "sleep 1; echo done", "--detach")
    exp = result.stdout.strip()
    started = time.monotonic()
    watched = cli(env, "status", exp, "--watch", "--interval", "0.2")
    assert watched.returncode == 0, watched.stderr
    assert time.monotonic() - started < 30
    blocks = watched.stdout.split("-- ")[1:]
    assert blocks and "SUCCEEDED" in blocks[-1]
    assert len(blocks) >= 2  # at least one state before the end, then the end
    bad = cli(env, "status", exp, "--watch", "--interval", "0")
    assert bad.returncode == 2 and "--interval" in bad.stderr


# -- recipes and typed fields ---------------------------------------------------------------
def test_recipes_lists_factories_and_shows_fields(env: dict[str, str]) -> None:
    listing = cli(env, "recipes")
    assert listing.returncode == 0, listing.stderr
    assert "train" in listing.stdout and "factories" in listing.stdout
    assert "tiny_trainer" in listing.stdout and "a tiny trainer" in listing.stdout
    kinds = {r["name"]: r["kind"] for r in json.loads(cli(env, "recipes", "--json").stdout)}
    assert kinds["tiny_trainer"] == "factory" and kinds["train"] == "recipe"
    shown = cli(env, "recipes", "train")
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()[2:] if line.strip()}
    assert "int" in lines["trainer.max_steps"] and "3" in lines["trainer.max_steps"]
    assert "Path('/data/train')" in lines["data.path"] and "Path" in lines["data.path"]
    assert "{}" in lines["data.extra"] and "<factory>" not in shown.stdout
    assert "list[str] | None" in lines["tags"]
    fields = {
        f["path"]: f for f in json.loads(cli(env, "recipes", "train", "--json").stdout)["fields"]
    }
    assert fields["data.extra"]["value"] == "{}" and fields["data.extra"]["explicit"] is False
    unknown = cli(env, "recipes", "trian")
    assert unknown.returncode == 2 and "did you mean `train`" in unknown.stderr
    factory = cli(env, "recipes", "tiny_trainr")
    assert factory.returncode == 2 and "(factories: tiny_trainer)" in factory.stderr
    assert "the factory `tiny_trainer`?" in factory.stderr
    shown = cli(env, "recipes", "tiny_trainer")
    assert shown.returncode == 0 and "max_steps" in shown.stdout and "1" in shown.stdout


def test_bad_factory_name_lists_the_known_ones(env: dict[str, str]) -> None:
    result = cli(env, "run", "train", "trainer=nothing_like_it", "--dryrun")
    assert result.returncode == 2
    assert "factories: probe, sleeper, tiny_trainer, train" in result.stderr


def test_path_fields_take_strings_and_their_display(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    for value in ("/data/val", "Path('/data/val')"):
        result = cli(env, "run", "train", f"data.path={value}", f"out={out}", "-q")
        assert result.returncode == 0, result.stderr
        assert json.loads(out.read_text())["path"] == "/data/val"


def test_default_factory_fields_take_overrides(env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = cli(env, "run", "train", "data.extra.a=1", f"out={out}", "-q")
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["extra"] == {"a": 1}
    bad = cli(env, "run", "train", "data.extra.a.b=1")
    assert bad.returncode == 2 and "_HAS_DEFAULT_FACTORY" not in bad.stderr


def test_comma_list_hints_brackets(env: dict[str, str]) -> None:
    result = cli(env, "run", "train", "tags=a,b")
    assert result.returncode == 2
    assert "write `tags=[a,b]`" in result.stderr


# -- dry run --------------------------------------------------------------------------------
def test_dryrun_shows_the_call_packaging_and_redacted_env(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config" / "nemorun-tui"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(
        '[executors.withenv]\nbackend = "local"\nenv_vars = { MODE = "fast" }\n'
        'secret_env = ["HF_TOKEN"]\n'
    )
    env = {**env, "HF_TOKEN": "hf_s3cr3t"}
    result = cli(env, "run", "train", "trainer.max_steps=7", "--executor", "withenv", "--dryrun")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "calls: " in text and ".fit(...)" in text
    assert "trainer.max_steps" in text and "= 7" in text
    assert "data.path" in text and "Path('/data/train')  (default)" in text
    assert "packaging: none" in text
    assert "MODE=fast" in text and "HF_TOKEN=***" in text and "hf_s3cr3t" not in text
    assert rows(env) == []


# -- relaunch workdir -----------------------------------------------------------------------
def test_relaunch_runs_in_the_parents_workdir(env: dict[str, str], tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    out = tmp_path / "out.json"
    run = cli(env, "run", "train", f"out={out}", "-q", cwd=first)
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["cwd"] == str(first)
    parent = rows(env)[0]["id"]
    again = cli(env, "relaunch", str(parent), cwd=second)
    assert again.returncode == 0, again.stderr
    assert json.loads(out.read_text())["cwd"] == str(first)
    assert f"workdir: {first} (the parent's)" in again.stderr
    moved = cli(env, "relaunch", str(parent), "--workdir", str(second), cwd=first)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(out.read_text())["cwd"] == str(second)
    assert f"workdir: {first} → {second}" in moved.stderr


def test_relaunch_when_the_parents_workdir_is_gone(env: dict[str, str], tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    assert cli(env, "run", "--script", "pwd", "-q", cwd=gone).returncode == 0
    parent = str(rows(env)[0]["id"])
    gone.rmdir()
    result = cli(env, "relaunch", parent, cwd=tmp_path)
    assert result.returncode == 2 and "--workdir" in result.stderr
    assert len(rows(env)) == 1  # nothing recorded
    moved = cli(env, "relaunch", parent, "--workdir", str(tmp_path), cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == f"{tmp_path}\n"
