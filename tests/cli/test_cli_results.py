"""``metrics``, ``artifacts``, ``fetch``, ``diff`` and the cause in ``status --json``, end to
end: real local jobs that write into ``NEMORUN_JOB_DIR``, read back by the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "nemorun_tui.cli"]

WORKSPACE = textwrap.dedent(
    """
    import dataclasses, json, os
    from core.config import Config, Partial
    from core.recipes import recipe

    @dataclasses.dataclass
    class Trainer:
        max_steps: int = 3
        lr: float = 0.1

    def fit(trainer: Trainer, resume_from: str = "") -> None:
        out = os.environ["NEMORUN_JOB_DIR"]
        with open(os.path.join(out, "metrics.jsonl"), "w") as fh:
            for step in range(trainer.max_steps):
                loss = 1.0 / (step + 1) / trainer.lr
                fh.write(json.dumps({"step": step, "loss": loss}) + "\\n")
                print(f"step {step} ppl {loss * 2}", flush=True)
        os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
        with open(os.path.join(out, "checkpoints", "last.ckpt"), "wb") as fh:
            fh.write(bytes(range(256)) * 40)
        with open(os.path.join(out, "env.json"), "w") as fh:
            json.dump({k: v for k, v in os.environ.items() if k.startswith("NEMORUN_")}, fh)

    def boom() -> None:
        raise ValueError("bad batch size 0")

    @recipe
    def train() -> Partial:
        return Partial(fit, trainer=Config(Trainer))

    @recipe
    def crash() -> Partial:
        return Partial(boom)
    """
)

CONFIG = """
[recipes.train]
metrics_regex = 'step (?P<step>\\d+) ppl (?P<ppl>[0-9.e+-]+)'
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    ws = tmp_path / "ws.py"
    ws.write_text(WORKSPACE)
    config = tmp_path / "config" / "nemorun-tui"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(CONFIG)
    return {
        **os.environ,
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "NEMORUN_TUI_WORKSPACE": str(ws),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def launch(env: dict[str, str], *args: str) -> str:
    done = cli(env, "run", *args, "-q")
    ls = json.loads(cli(env, "ls", "--json").stdout)
    assert ls, done.stderr
    return str(ls[0]["id"])


def test_metrics_artifacts_fetch_and_the_job_env(env: dict[str, str], tmp_path: Path) -> None:
    exp = launch(env, "train", "trainer.max_steps=4")
    out = cli(env, "metrics", exp, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["jobs"]["train"]["metrics"]
    assert data["loss"]["points"] == 4 and data["loss"]["step"] == 3
    assert data["loss"]["last"] == pytest.approx(1.0 / 4 / 0.1)
    assert data["ppl"]["source"] == "stdout" and data["ppl"]["last"] == pytest.approx(5.0)
    series = json.loads(cli(env, "metrics", exp, "--name", "loss", "--json").stdout)
    assert [p["step"] for p in series["jobs"]["train"]["points"]] == [0, 1, 2, 3]
    missing = cli(env, "metrics", exp, "--name", "nope")
    assert missing.returncode == 1 and "known: loss, ppl" in missing.stderr

    listing = json.loads(cli(env, "artifacts", exp, "--json").stdout)["jobs"]["train"]
    by_path = {a["path"]: a for a in listing["artifacts"]}
    assert set(by_path) == {"checkpoints", "checkpoints/last.ckpt", "env.json", "metrics.jsonl"}
    ckpt = by_path["checkpoints/last.ckpt"]
    payload = bytes(range(256)) * 40
    assert ckpt["checkpoint"] and ckpt["sha256"] == hashlib.sha256(payload).hexdigest()
    job_env = json.loads((Path(listing["job_dir"]) / "env.json").read_text())
    assert job_env["NEMORUN_EXPERIMENT_ID"] == exp and job_env["NEMORUN_JOB_NAME"] == "train"
    assert job_env["NEMORUN_JOB_DIR"] == listing["job_dir"] and job_env["NEMORUN_RUN_TAG"]
    stored = Path(env["NEMORUN_TUI_HOME"]) / "experiments" / exp / "jobs" / "train"
    assert json.loads((stored / "artifacts.json").read_text())["artifacts"] == listing["artifacts"]

    dest = tmp_path / "fetched"
    dest.mkdir()
    got = cli(env, "fetch", exp, "checkpoints/last.ckpt", str(dest))
    assert got.returncode == 0, got.stderr
    assert (dest / "last.ckpt").read_bytes() == payload
    assert "verified" in got.stderr and "fetch " in got.stderr
    assert got.stdout.strip() == str(dest / "last.ckpt")
    outside = cli(env, "fetch", exp, "../../../../etc/passwd", str(dest))
    assert outside.returncode == 1 and not (dest / "passwd").exists()


def test_diff_shows_only_what_differs(env: dict[str, str]) -> None:
    a = launch(env, "train", "trainer.max_steps=2")
    b = launch(env, "train", "trainer.max_steps=3", "trainer.lr=0.2")
    out = cli(env, "diff", a, b, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    config = {row["path"]: row["values"] for row in data["config"]}
    assert config == {"trainer.max_steps": ["2", "3"], "trainer.lr": ["0.1", "0.2"]}
    assert data["overrides"] == [["trainer.max_steps=2"], ["trainer.max_steps=3", "trainer.lr=0.2"]]
    assert data["executors"] == []  # same profile: nothing to show
    metrics = {row["path"]: row["values"] for row in data["metrics"]}
    assert metrics["loss"] == ["5", "1.66667"]
    text = cli(env, "diff", a, b).stdout
    assert "trainer.max_steps" in text and "executor: no differences" in text
    assert cli(env, "diff", a).returncode == 2


def test_status_json_carries_the_failure_cause(env: dict[str, str]) -> None:
    exp = launch(env, "crash")
    out = cli(env, "status", exp, "--json")
    assert out.returncode == 1
    job = json.loads(out.stdout)["jobs"][0]
    cause = job["cause"]
    assert cause["kind"] == "python-exception" and cause["stream"] == "stderr"
    assert cause["exception"]["type"] == "ValueError"
    assert cause["exception"]["message"] == "bad batch size 0"
    assert cause["exception"]["file"].endswith("ws.py")
    assert any("ValueError: bad batch size 0" in line["text"] for line in cause["lines"])
    ok = launch(env, "train")
    assert json.loads(cli(env, "status", ok, "--json").stdout)["jobs"][0]["cause"] is None


def test_run_says_why_it_failed_and_records_artifacts_at_the_end(env: dict[str, str]) -> None:
    done = cli(env, "run", "crash")
    assert done.returncode == 1
    assert "crash: ValueError: bad batch size 0 at " in done.stderr
    assert "(see logs --stderr)" in done.stderr
    exp = json.loads(cli(env, "ls", "--json").stdout)[0]["id"]
    stored = Path(env["NEMORUN_TUI_HOME"]) / "experiments" / exp / "jobs" / "crash"
    assert json.loads((stored / "cause.json").read_text())["cause"]["kind"] == "python-exception"
    ok = cli(env, "run", "train", "-q")
    assert ok.returncode == 0
    exp = json.loads(cli(env, "ls", "--json").stdout)[0]["id"]
    listing = json.loads(
        (
            Path(env["NEMORUN_TUI_HOME"])
            / "experiments"
            / exp
            / "jobs"
            / "train"
            / "artifacts.json"
        ).read_text()
    )
    assert listing["final"] is True
    assert "checkpoints/last.ckpt" in [a["path"] for a in listing["artifacts"]]
