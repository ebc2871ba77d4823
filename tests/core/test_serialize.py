"""core.serialize: exact JSON round trip, fiddle-free build, render, flatten and diff."""

from __future__ import annotations

import enum
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fiddle as fdl
import pytest

from core.config import Config, Partial, Script
from core.serialize import (
    Change,
    SerializeError,
    build_task,
    diff,
    dump_task,
    dumps,
    flatten,
    format_diff,
    import_ref,
    load_task,
    loads,
    render,
)

REPO = Path(__file__).resolve().parents[2]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0


@dataclass
class Model:
    width: int = 8
    color: Color = Color.RED


def make_pair(left: Any, right: Any) -> tuple[Any, Any]:
    return (left, right)


def varargs(*items: Any) -> tuple[Any, ...]:
    return items


def collect(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def rich_task() -> Partial:
    shared = Config(Model, width=16)
    return Partial(
        collect,
        model=shared,
        again=shared,
        pair=Config(make_pair, left=Config(Model), right=[1, 2.5, None]),
        color=Color.BLUE,
        point=Point(1, 2),
        shape=(3, 4),
        mapping={"b": [True, "x"], "a": {"nested": 1}},
        fn=make_pair,
        cls=Model,
        where=pathlib.Path("/data/set"),
        big=float("inf"),
    )


def test_round_trip_is_exact_and_builds_equal_results() -> None:
    task = rich_task()
    data = dump_task(task)
    json.dumps(data)  # must be JSON-able as is
    again = load_task(data)
    assert dump_task(again) == data
    assert fdl.build(again)() == fdl.build(task)()
    assert type(again) is Partial
    assert type(again.model) is Config


def test_text_round_trip_is_stable_and_sorted() -> None:
    text = dumps(rich_task())
    assert dumps(loads(text)) == text
    data = json.loads(text)
    assert data["schema_version"] == 1
    assert list(data) == sorted(data)
    assert text.endswith("\n")


def test_argument_order_does_not_change_the_document() -> None:
    first = Config(make_pair, left=1, right=2)
    second = Config(make_pair, right=2, left=1)
    assert dumps(first) == dumps(second)


def test_shared_configs_stay_shared_after_load_and_in_build_task() -> None:
    data = dump_task(rich_task())
    loaded = load_task(data)
    assert loaded.model is loaded.again
    built = fdl.build(loaded)()
    assert built["model"] is built["again"]
    direct = build_task(data)()
    assert direct["model"] is direct["again"]
    assert direct["model"] == Model(width=16)


def test_shared_reference_may_precede_its_definition() -> None:
    data = dump_task(rich_task())
    args = data["task"]["args"]
    args["again"], args["model"] = args["model"], args["again"]  # ref first, then definition
    built = build_task(data)()
    assert built["model"] is built["again"]


def test_build_task_matches_fiddle_build() -> None:
    task = Config(make_pair, left=Config(Model, color=Color.BLUE), right=(1, [Point(2)]))
    assert build_task(dump_task(task)) == fdl.build(task)
    partial = build_task(dump_task(rich_task()))
    assert partial() == fdl.build(rich_task())()
    assert math.isinf(partial()["big"])


def test_scripts_round_trip_and_build_to_scripts() -> None:
    script = Script(path="run.sh", args=["a", "b c"], env={"Z": "1", "A": "2"})
    data = dump_task(script)
    assert data["kind"] == "script"
    assert load_task(data) == script
    assert build_task(data) == script


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (lambda: 1, "define it at module level"),
        (object(), "cannot store a value of type object"),
        ({1: "x"}, "dict keys must be strings"),
    ],
)
def test_unsupported_values_fail_with_the_argument_path(value: object, message: str) -> None:
    with pytest.raises(SerializeError, match=message):
        dump_task(Config(collect, bad=value))


def test_positional_varargs_are_refused() -> None:
    with pytest.raises(SerializeError, match="positional"):
        dump_task(Config(varargs, 1, 2))


def test_schema_version_is_checked() -> None:
    data = dump_task(Config(Model))
    data["schema_version"] = 2
    with pytest.raises(SerializeError, match="schema_version 2"):
        load_task(data)
    with pytest.raises(SerializeError, match="not valid JSON"):
        loads("{")


def test_import_ref_reports_missing_names_in_one_line() -> None:
    assert import_ref("os.path", "join") is os.path.join
    with pytest.raises(SerializeError, match="has no attribute `nope`"):
        import_ref("os", "nope")
    with pytest.raises(SerializeError, match="cannot import `no_such_mod_xyz`"):
        import_ref("no_such_mod_xyz", "x")


WORKSPACE = textwrap.dedent(
    """
    import enum, sys
    from dataclasses import dataclass
    from core import config as nr
    from core.recipes import recipe

    class Mode(enum.Enum):
        FAST = 1
        SLOW = 2

    @dataclass
    class Knobs:
        steps: int = 1
        mode: Mode = Mode.FAST

    def run(knobs, label="x"):
        return f"{label}:{knobs.steps}:{knobs.mode.name}:{type(knobs).__module__}"

    @recipe
    def job():
        return nr.Partial(run, knobs=nr.Config(Knobs, steps=7, mode=Mode.SLOW), label="hi")
    """
)


def test_workspace_file_task_is_rebuilt_in_another_process(tmp_path: Path) -> None:
    from core.recipes import load_workspace

    ws_file = tmp_path / "my ws.py"
    ws_file.write_text(WORKSPACE)
    task = load_workspace(str(ws_file)).get("job").make()
    text = dumps(task)
    data = json.loads(text)
    (module,) = data["modules"]
    assert data["modules"][module] == str(ws_file)
    assert module.startswith("nemorun_workspace_my_ws_")
    task_file = tmp_path / "task.json"
    task_file.write_text(text)
    code = textwrap.dedent(
        f"""
        import json, sys
        from core.serialize import build_task, dumps, loads
        text = open({str(task_file)!r}).read()
        print(build_task(json.loads(text))())
        print("fiddle" in sys.modules)
        print(dumps(loads(text)) == text)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout.split()
    assert out == [f"hi:7:SLOW:{module}", "False", "True"]


# -- display --------------------------------------------------------------------------------


def test_render_is_readable_and_deterministic() -> None:
    task = Partial(collect, model=Config(Model, width=16), tags=["a"])
    assert render(task) == "partial(collect, model=Model(width=16), tags=['a'])"
    wide = render(rich_task(), width=60)
    assert wide.splitlines()[0] == "partial(collect,"
    assert "  model=Model(width=16)," in wide.splitlines()
    assert wide.endswith("\n)")
    assert all(len(line) <= 60 for line in wide.splitlines() if "mapping" not in line)
    assert render(load_task(dump_task(rich_task())), width=60) == wide


def test_render_orders_arguments_by_signature() -> None:
    assert render(Config(make_pair, right=2, left=1)) == "make_pair(left=1, right=2)"


def test_render_script() -> None:
    text = render(Script(inline="echo hi", args=["1"], entrypoint="sh"))
    assert text == "Script(inline='echo hi', args=['1'], entrypoint='sh')"


def test_flatten_gives_dotted_paths_with_callables() -> None:
    flat = flatten(Partial(collect, model=Config(Model, width=16), env={"A": "1"}, tags=["x"]))
    assert flat == {
        "__fn__": "partial(collect)",
        "env.A": "'1'",
        "model.__fn__": "Model",
        "model.width": "16",
        "tags": "['x']",
    }


def test_flatten_can_include_signature_defaults() -> None:
    flat = flatten(Config(Model, width=16), include_defaults=True)
    assert flat["width"] == "16"
    assert flat["color"] == "Color.RED"
    assert flatten(Config(Point), include_defaults=True)["x"] == "<required>"


def test_flatten_expands_lists_of_configs_in_numeric_order() -> None:
    layers = [Config(Model, width=i) for i in range(12)]
    keys = [k for k in flatten(Config(collect, layers=layers)) if k.endswith(".width")]
    assert keys[:3] == ["layers.0.width", "layers.1.width", "layers.2.width"]
    assert keys[-1] == "layers.11.width"


def test_diff_lists_changed_added_and_removed_paths_sorted() -> None:
    parent = Partial(collect, model=Config(Model, width=8), seed=1, old=True)
    child = Partial(collect, model=Config(Model, width=16, color=Color.BLUE), seed=1, lr=0.1)
    changes = diff(parent, child)
    assert changes == [
        Change("lr", None, "0.1"),
        Change("model.color", None, "Color.BLUE"),
        Change("model.width", "8", "16"),
        Change("old", "True", None),
    ]
    assert format_diff(changes).splitlines() == [
        "lr: (unset) → 0.1",
        "model.color: (unset) → Color.BLUE",
        "model.width: 8 → 16",
        "old: True → (unset)",
    ]
    assert diff(parent, parent) == []
    assert format_diff([]) == "no changes"


def test_diff_shows_a_swapped_callable() -> None:
    changes = diff(Config(collect, m=Config(Model)), Config(collect, m=Config(make_pair)))
    assert Change("m.__fn__", "Model", "make_pair") in changes


def test_functions_of_a_launch_script_run_in_a_job_without_rerunning_its_main(
    tmp_path: Path,
) -> None:
    script = tmp_path / "launch.py"
    task_file = tmp_path / "task.json"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from core import config as nr
            from core.serialize import dumps, loads

            def where(tag):
                print(tag, __name__ != "__main__")

            if __name__ == "__main__":
                print("main block ran")
                text = dumps(nr.Partial(where, tag="job"))
                assert loads(text).__fn_or_cls__ is where  # same process: no second import
                open({str(task_file)!r}, "w").write(text)
            """
        )
    )
    launch = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=REPO)
    assert launch.returncode == 0, launch.stderr
    assert launch.stdout == "main block ran\n"
    job = subprocess.run(
        [sys.executable, "-m", "core.runner", str(task_file)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert job.returncode == 0, job.stderr
    assert job.stdout == "job True\n"


def test_interactive_functions_cannot_be_referenced() -> None:
    code = (
        "from core import config as nr\n"
        "from core.serialize import dumps, SerializeError\n"
        "def f(): pass\n"
        "try:\n"
        "    dumps(nr.Partial(f))\n"
        "except SerializeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.startswith("functions defined interactively (no script file)")
