"""core.config: Script argv building and validation, task kinds, lazy fiddle."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Script, task_kind

REPO = Path(__file__).resolve().parents[2]


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_inline_bash_args_arrive_as_positional_parameters_unmangled() -> None:
    script = Script(inline='printf "%s|%s|%s" "$1" "$2" "$#"', args=["a b", "c;d $(x)"])
    argv = script.argv("/unused/python")
    assert argv[:2] == ["bash", "-c"]
    assert _run(argv) == "a b|c;d $(x)|2"


def test_python_inline_uses_the_given_interpreter_and_passes_args() -> None:
    script = Script(
        inline="import sys; print(sys.argv[1:])", args=["x", "y z"], entrypoint="python"
    )
    argv = script.argv(sys.executable)
    assert argv[0] == sys.executable
    assert _run(argv).strip() == "['x', 'y z']"


def test_python_path_and_module_forms() -> None:
    assert Script(path="train.py", entrypoint="python", args=["--n", "1"]).argv("/v/bin/py") == [
        "/v/bin/py",
        "train.py",
        "--n",
        "1",
    ]
    assert Script(path="pkg.mod", entrypoint="python", m=True).argv("/v/bin/py") == [
        "/v/bin/py",
        "-m",
        "pkg.mod",
    ]
    assert Script(path="run.sh", args=["1"]).argv("/v/bin/py") == ["bash", "run.sh", "1"]


def test_python_script_without_interpreter_is_refused() -> None:
    with pytest.raises(ValueError, match="interpreter"):
        Script(path="x.py", entrypoint="python").argv("")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"path": "a.sh", "inline": "echo"}, "exactly one"),
        ({"inline": "print(1)", "m": True, "entrypoint": "python"}, "needs `path`"),
        ({"path": "pkg.mod", "m": True}, "entrypoint='python'"),
        ({"inline": "echo", "entrypoint": ""}, "entrypoint"),
        ({"inline": "echo", "args": [object()]}, r"args\[0\]"),
    ],
)
def test_invalid_scripts_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Script(**kwargs)  # type: ignore[arg-type]


def test_numeric_args_and_env_values_become_text() -> None:
    script = Script(inline="true", args=["--steps", 3], env={"N": 2})  # type: ignore[list-item,dict-item]
    assert script.args == ["--steps", "3"]
    assert script.env == {"N": "2"}


def test_task_kind_names_each_kind_and_rejects_other_values() -> None:
    from core.config import Config, Partial

    assert task_kind(Script(inline="true")) == "script"
    assert task_kind(Config(dict, a=1)) == "config"
    assert task_kind(Partial(dict, a=1)) == "partial"
    with pytest.raises(TypeError, match="got int"):
        task_kind(3)


def test_config_and_partial_are_fiddle_types_that_pickle() -> None:
    import fiddle as fdl

    from core.config import Config, Partial

    cfg = Config(dict, a=1)
    assert isinstance(cfg, fdl.Config)
    assert isinstance(Partial(dict), fdl.Partial)
    assert Config.__module__ == "core.config"
    again = pickle.loads(pickle.dumps(cfg))
    assert type(again) is Config
    assert fdl.build(again) == {"a": 1}


def test_importing_config_script_does_not_import_fiddle() -> None:
    code = (
        "import sys\n"
        "import core.config, core.serialize, core.overrides, core.recipes, core.runner\n"
        "from core.config import Script, task_kind\n"
        "task_kind(Script(inline='true'))\n"
        "assert 'fiddle' not in sys.modules, 'fiddle imported too early'\n"
        "assert 'libcst' not in sys.modules\n"
        "from core.config import Config\n"
        "assert 'fiddle' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_unknown_attribute_is_an_attribute_error() -> None:
    import core.config

    with pytest.raises(AttributeError, match="Nope"):
        _ = core.config.Nope
