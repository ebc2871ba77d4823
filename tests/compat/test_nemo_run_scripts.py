"""NeMo Run scripts whose only change is their import line run on our engine.

The scripts in tests/fixtures/nemo_run_scripts are written against NeMo Run 0.11.1's API
(``import nemo_run as run``; experiment_script.py was run with NeMo Run itself when it was
written, and is again here when a NeMo Run venv exists). The test changes that one line to
``import nemorun_tui as run`` and runs them with our interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "nemo_run_scripts"
#: NeMo Run itself, for the optional side-by-side check: opt-in (a venv on this machine, not
#: something CI installs; its own timing under load is not ours to test).
NEMO_PYTHON = Path(os.environ.get("NRT_NEMO_RUN_PYTHON", "/nonexistent/nemo-run-python"))
CLI = [sys.executable, "-m", "nemorun_tui.cli"]


def ported(name: str, dest: Path) -> Path:
    original = (SCRIPTS / name).read_text()
    text = original.replace("import nemo_run as run\n", "import nemorun_tui as run\n", 1)
    changed = [
        (a, b) for a, b in zip(original.splitlines(), text.splitlines(), strict=True) if a != b
    ]
    assert changed == [("import nemo_run as run", "import nemorun_tui as run")]
    path = dest / name
    path.write_text(text)
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NEMORUN_TUI_HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NEMORUN_TUI_CONFIG": str(tmp_path / "none.toml"),
    }


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )


def test_experiment_script_runs_with_only_its_import_changed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    script = ported("experiment_script.py", tmp_path)
    out = run([sys.executable, str(script)], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "STATUS {'train': 'SUCCEEDED', 'echo': 'SUCCEEDED'}" in out.stdout
    train = run([*CLI, "logs", "nemo-style", "train"], env, tmp_path).stdout
    assert train.splitlines() == [f"step {i} lr=0.01 name=sgd" for i in range(3)]
    # The plugin's setup changed that job's executor, and only that job's.
    echo = run([*CLI, "logs", "nemo-style", "echo"], env, tmp_path).stdout
    assert echo == "env=plugin-was-here\n"
    if NEMO_PYTHON.exists():  # the same script under NeMo Run itself says the same
        nemo_env = {
            **env,
            "NEMORUN_HOME": str(tmp_path / "nemo-home"),
            "PATH": f"{NEMO_PYTHON.parent}:{env['PATH']}",
        }
        nemo_env["COLUMNS"] = "200"  # its rich console must not wrap our one line
        theirs = run([str(NEMO_PYTHON), str(SCRIPTS / "experiment_script.py")], nemo_env, tmp_path)
        said = theirs.stdout + theirs.stderr
        assert theirs.returncode == 0, said[-2000:]
        assert "STATUS {'train': 'SUCCEEDED', 'echo': 'SUCCEEDED'}" in said, said[-2000:]


def test_entrypoint_script_overrides_files_and_to_yaml(tmp_path: Path, env: dict[str, str]) -> None:
    script = ported("entrypoint_script.py", tmp_path)
    (tmp_path / "more.yaml").write_text("optim:\n  name: from-yaml\nnote: 'a, b'\n")
    (tmp_path / "more.toml").write_text("steps = 1\n[optim]\nlr = 0.25\n")
    (tmp_path / "more.json").write_text('{"note": "from json"}')

    out = run([sys.executable, str(script), "steps=3", "optim=fast_optim"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    got = run([*CLI, "logs", "train"], env, tmp_path).stdout.splitlines()
    assert got == [f"step {i} lr=0.5 name=fast note=" for i in range(3)]

    out = run([sys.executable, str(script), "@more.toml", "@more.yaml", "steps=2"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    got = run([*CLI, "logs", "train"], env, tmp_path).stdout.splitlines()
    assert got == [f"step {i} lr=0.25 name=from-yaml note=a, b" for i in range(2)]  # later wins

    shown = run([sys.executable, str(script), "@more.json", "--to-yaml"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "note: from json" in shown.stdout and "_target_:" in shown.stdout
    listed = run([*CLI, "ls", "--json"], env, tmp_path).stdout
    assert listed.count('"title": "train"') == 2  # --to-yaml ran nothing

    bad = run([sys.executable, str(script), "steps=many"], env, tmp_path)
    assert bad.returncode == 2 and "expects int" in bad.stderr
    # The entry point is also a recipe of its file.
    recipe = run([*CLI, "--workspace", str(script), "run", "-q", "train", "steps=1"], env, tmp_path)
    assert recipe.returncode == 0, recipe.stderr


def test_logs_regex_and_status_return_dict(tmp_path: Path) -> None:
    import nemorun_tui as run_api

    with run_api.Experiment("api", home=tmp_path / "home") as exp:
        exp.add(run_api.Script(inline="echo keep 1; echo drop; echo keep 2"), name="s")
        exp.run()
    assert exp.logs("s", regex=r"^keep") == "keep 1\nkeep 2\n"
    info = exp.status(return_dict=True)["s"]
    assert str(info["status"]) == "SUCCEEDED" and info["executor"] == "local"
    assert Path(info["local_dir"]).is_dir()
