"""core.engine.preview: a dry run says what will run, as data a front end can re-render."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.config import Config, Partial, Script
from core.engine import Engine, Plan
from core.engine.executors import LocalExecutor
from core.overrides import apply_overrides
from core.packaging import GitArchivePackager
from core.serialize import StoredTask
from core.store import Store


@dataclass
class Trainer:
    max_steps: int = 3
    lr: float = 0.1


def fit(trainer: Trainer, note: str = "") -> None:
    del trainer, note


def plan_of(task: object, executor: LocalExecutor | None = None, **kw: object) -> Plan:
    plan = Plan(title="p", **kw)  # type: ignore[arg-type]
    plan.add(task, executor or LocalExecutor(profile_name="local"), name="job")
    return plan


def test_a_partial_shows_the_function_and_its_config_tree(tmp_path: Path) -> None:
    engine = Engine(Store(tmp_path))
    task = Partial(fit, trainer=Config(Trainer, max_steps=7))
    (preview,) = engine.preview(plan_of(task, workdir=str(tmp_path)))
    assert preview.kind == "partial"
    assert preview.function.endswith("test_preview.fit")
    assert preview.fields["trainer.max_steps"] == "7"
    assert preview.fields["trainer.lr"] == "0.1"
    assert "trainer.max_steps" in preview.explicit and "trainer.lr" not in preview.explicit
    text = preview.text()
    assert "calls: " in text and "trainer.max_steps = 7" in text.replace("  ", " ")
    assert "0.1  (default)" in text
    assert f"workdir: {tmp_path}" in text
    assert "packaging: none" in text
    assert list(Store(tmp_path).list()) == []  # nothing recorded


def test_the_preview_follows_an_edit(tmp_path: Path) -> None:
    """What the app relies on: apply the edit, preview again, the new value shows."""
    engine = Engine(Store(tmp_path))
    task = Partial(fit, trainer=Config(Trainer))
    before = engine.preview(plan_of(task))[0].fields["trainer.lr"]
    edited = apply_overrides(task, ["trainer.lr=0.5"])
    after = engine.preview(plan_of(edited))[0]
    assert (before, after.fields["trainer.lr"]) == ("0.1", "0.5")
    assert "trainer.lr" in after.explicit


def test_a_stored_task_previews_without_its_code(tmp_path: Path) -> None:
    """The app's plans hold stored documents: the preview reads their view."""
    engine = Engine(Store(tmp_path))
    stored = StoredTask.of(Partial(fit, trainer=Config(Trainer, lr=0.2)))
    (preview,) = engine.preview(plan_of(stored))
    assert preview.fields["trainer.lr"] == "0.2" and preview.fields["trainer.max_steps"] == "3"
    assert preview.function.endswith(".fit")


def test_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    engine = Engine(Store(tmp_path))
    profile = LocalExecutor(
        profile_name="local",
        env_vars={"MODE": "fast", "WANDB_API_KEY": "plain-but-secret"},
        secret_env={"HF_TOKEN": "hf_value"},
    )
    script = Script(inline="echo $MODE", env={"DB_PASSWORD": "pw", "LEVEL": "3"})
    (preview,) = engine.preview(plan_of(script, profile))
    assert preview.env == {
        "MODE": "fast",
        "WANDB_API_KEY": "***",
        "HF_TOKEN": "***",
        "DB_PASSWORD": "***",
        "LEVEL": "3",
    }
    text = preview.text() + repr(preview.to_dict())
    for secret in ("plain-but-secret", "hf_value", "pw'"):
        assert secret not in text
    assert preview.command.startswith("bash -c")


def test_packaging_is_described_and_preflight_warns(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@t"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "a.py"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "c"], cwd=repo, check=True)
    (repo / "a.py").write_text("x = 2\n")  # uncommitted: the launch would warn
    engine = Engine(Store(tmp_path / "home"))
    profile = LocalExecutor(profile_name="p", packager=GitArchivePackager(basepath=str(repo)))
    plan = plan_of(Partial(fit, trainer=Config(Trainer)), profile)
    (quick,) = engine.preview(plan)
    assert quick.packaging.startswith("GitArchivePackager(") and quick.warnings == ()
    assert f"basepath={str(repo)!r}" in quick.packaging
    (checked,) = engine.preview(plan, preflight=True)
    assert checked.warnings and "a.py" in " ".join(checked.warnings)


def test_dependencies_and_to_dict(tmp_path: Path) -> None:
    engine = Engine(Store(tmp_path))
    plan = Plan(title="two", sequential=True)
    profile = LocalExecutor(profile_name="local")
    plan.add(Script(inline="true"), profile, name="a")
    plan.add(Script(inline="true"), profile, name="b")
    first, second = engine.preview(plan)
    assert (first.dependencies, second.dependencies) == ((), ("a",))
    data = second.to_dict()
    assert data["dependencies"] == ["a"] and data["kind"] == "script"
    assert "after: a" in second.text()
