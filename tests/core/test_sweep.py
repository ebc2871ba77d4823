"""Sweep expansion (core.sweep): value syntax, grid and zip, job names, and the guarantee
that a bad point refuses the whole sweep before anything is written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.config import Partial
from core.engine import Engine
from core.engine.executors import LocalExecutor
from core.engine.sweep_plan import SWEEP_TAG, task_sweep_plan
from core.store import Store
from core.sweep import (
    MAX_POINTS,
    SweepError,
    expand,
    params_from_mapping,
    parse_param,
    split_values,
)


@dataclasses.dataclass
class Opt:
    lr: float = 0.1
    name: str = "adam"


def fit(opt: Opt, seed: int = 0, tag: str = "") -> None:
    print(f"{opt.lr} {opt.name} {seed} {tag}")


def task() -> Partial:
    from core.config import Config

    return Partial(fit, opt=Config(Opt))


# -- value syntax ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "values"),
    [
        ("1,2,3", ["1", "2", "3"]),
        (" 1 , 2 ", ["1", "2"]),
        ("5", ["5"]),
        ("range(0,3)", ["0", "1", "2"]),
        ("range(1,10,3)", ["1", "4", "7"]),
        ("range(3)", ["0", "1", "2"]),
        ("range(5,0,-2)", ["5", "3", "1"]),
        ("range(0,0.35,0.1)", ["0.0", "0.1", "0.2", "0.3"]),
        ("choice(adam,sgd)", ["adam", "sgd"]),
        ("choice('a,b',c)", ["'a,b'", "c"]),
        ("'x,y'", ["'x,y'"]),
        ('"x,y",z', ['"x,y"', "z"]),
        (r"a\,b,c", ["a,b", "c"]),
        ("[1,2],[3]", ["[1,2]", "[3]"]),
        ("{'a': 1, 'b': 2},{}", ["{'a': 1, 'b': 2}", "{}"]),
        ("'range(0,3)'", ["'range(0,3)'"]),
    ],
)
def test_split_values(raw: str, values: list[str]) -> None:
    assert split_values(raw) == values


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("range(0,0)", "empty"),
        ("range(0,5,0)", "zero"),
        ("range(a,5)", "numbers"),
        ("range()", "1 to 3"),
        ("range(0,100000000)", "at most"),
        ("choice()", "needs values"),
        ("1,,2", "empty value"),
        ("'open,2", "unterminated"),
    ],
)
def test_bad_values_are_one_line_errors(raw: str, message: str) -> None:
    with pytest.raises(SweepError, match=message) as info:
        split_values(raw)
    assert "\n" not in str(info.value)


# -- grid and zip ---------------------------------------------------------------------------
def test_grid_is_the_cartesian_product_first_key_slowest() -> None:
    points = expand([parse_param("opt.lr=1,2"), parse_param("seed=a,b,c"), parse_param("k=7")])
    assert [p.overrides for p in points] == [
        ("opt.lr=1", "seed=a", "k=7"),
        ("opt.lr=1", "seed=b", "k=7"),
        ("opt.lr=1", "seed=c", "k=7"),
        ("opt.lr=2", "seed=a", "k=7"),
        ("opt.lr=2", "seed=b", "k=7"),
        ("opt.lr=2", "seed=c", "k=7"),
    ]
    # Names come from the varying values only (k is the same everywhere).
    assert [p.name for p in points][:2] == ["lr=1,seed=a", "lr=1,seed=b"]
    assert points[4].values == {"opt.lr": "2", "seed": "b"}
    assert [p.index for p in points] == list(range(6))


def test_zip_pairs_values_and_broadcasts_constants() -> None:
    params = [parse_param("a=1,2,3"), parse_param("b=x,y,z"), parse_param("c=k")]
    points = expand(params, "zip")
    assert [p.overrides for p in points] == [
        ("a=1", "b=x", "c=k"),
        ("a=2", "b=y", "c=k"),
        ("a=3", "b=z", "c=k"),
    ]
    with pytest.raises(SweepError, match="equally long"):
        expand([parse_param("a=1,2"), parse_param("b=x,y,z")], "zip")


def test_quoted_comma_stays_one_value_and_names_show_it_unquoted() -> None:
    points = expand([parse_param("tag='a,b',c")])
    assert [p.overrides for p in points] == [("tag='a,b'",), ("tag=c",)]
    assert [p.name for p in points] == ["tag=a,b", "tag=c"]


def test_names_are_usable_folders_unique_and_short() -> None:
    points = expand([parse_param("tag='x/y','a|b',1,1,'" + "z" * 300 + "'")])
    names = [p.name for p in points]
    assert names[:2] == ["tag=x_y", "tag=a_b"]
    assert len(set(names)) == len(names)  # the duplicate 1 got a suffix
    assert all(len(n.encode()) <= 110 and "/" not in n and "|" not in n for n in names)
    # Two keys ending in the same field keep their full paths apart.
    both = expand([parse_param("a.lr=1,2"), parse_param("b.lr=3,4")])
    assert both[0].name == "a.lr=1,b.lr=3"


def test_too_many_points_refused_before_any_is_made() -> None:
    side = int(MAX_POINTS**0.5) + 1
    with pytest.raises(SweepError, match="points"):
        expand([parse_param(f"a=range({side})"), parse_param(f"b=range({side})")])


def test_a_key_swept_twice_is_refused() -> None:
    with pytest.raises(SweepError, match="twice"):
        expand([parse_param("a=1,2"), parse_param("a=3")])


def test_python_values_become_literals() -> None:
    params = params_from_mapping({"opt.name": ["a,b", "c"], "seed": range(2), "opt.lr": 0.5})
    points = expand(params)
    assert points[0].overrides == ("opt.name='a,b'", "seed=0", "opt.lr=0.5")
    assert len(points) == 4


# -- validation before writing -------------------------------------------------------------
def test_every_point_is_checked_and_a_bad_one_writes_nothing(tmp_path: Path) -> None:
    params = [parse_param("opt.lr=0.1,0.2,oops"), parse_param("seed=1,2")]
    with pytest.raises(SweepError, match=r"point 4 \(lr=oops,seed=1\).*expects float"):
        task_sweep_plan(task(), params, LocalExecutor(), title="s")
    with pytest.raises(SweepError, match="nosuch"):
        task_sweep_plan(task(), [parse_param("opt.nosuch=1,2")], LocalExecutor(), title="s")
    assert not (tmp_path / "home").exists()


def test_plan_has_one_job_per_point_with_its_values(tmp_path: Path) -> None:
    params = [parse_param("opt.lr=0.1,0.2"), parse_param("opt.name=x,y")]
    plan = task_sweep_plan(task(), params, LocalExecutor(), title="s", throttle=3)
    assert [j.name for j in plan.jobs] == ["lr=0.1,name=x", "lr=0.1,name=y", "lr=0.2,name=x",
                                           "lr=0.2,name=y"]  # fmt: skip
    assert SWEEP_TAG in plan.tags and plan.array_throttle == 3
    assert plan.jobs[3].task.opt.lr == 0.2 and plan.jobs[3].task.opt.name == "y"
    assert plan.jobs[3].point is not None
    assert plan.jobs[3].point["values"] == {"opt.lr": "0.2", "opt.name": "y"}
    record = Engine(Store(tmp_path / "home")).record(plan)
    engine = Engine(Store(tmp_path / "home"))
    from core.engine.sweep_plan import stored_point

    assert stored_point(engine, record.id, "lr=0.2,name=y")["index"] == 3  # type: ignore[index]


def test_run_sweep_launches_every_point_locally(tmp_path: Path) -> None:
    import nemorun_tui as run

    exp = run.sweep(
        task(),
        {"seed": "range(0,3)", "tag": ["a,b"]},
        LocalExecutor(),
        title="api-sweep",
        home=tmp_path / "home",
    )
    record = exp.record
    assert [j.name for j in record.jobs] == ["seed=0", "seed=1", "seed=2"]
    assert record.state.value == "SUCCEEDED"
    assert record.tags == [SWEEP_TAG]
    assert exp.logs("seed=2") == "0.1 adam 2 a,b\n"
