"""core.overrides: parsing, type checks before writing, factories, one-line errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import fiddle as fdl
import pytest

from core.config import Config, Partial, Script
from core.overrides import OverrideError, apply_overrides, parse_override, parse_value


class Precision(enum.Enum):
    BF16 = "bf16"
    FP32 = "fp32"


@dataclass
class Trainer:
    max_steps: int = 20
    precision: Precision = Precision.BF16
    ckpt: str | None = None
    devices: list[int] = field(default_factory=lambda: [0])


@dataclass
class Optimizer:
    lr: float = 3e-4
    name: Literal["adamw", "sgd"] = "adamw"


@dataclass
class Layer:
    size: int = 1


@dataclass(frozen=True)
class Schedule:
    warmup: int = 10


def train(
    trainer: Trainer,
    optimizer: Optimizer,
    tags: list[str] | None = None,
    seed: int = 0,
    mode: str = "fast",
    layers: list[Layer] | None = None,
    shape: tuple[int, int] = (1, 1),
    extra: dict[str, int] | None = None,
    schedule: Schedule = Schedule(),
    verbose: bool = False,
    sizes: list[int] = [1, 2],  # noqa: B006 - a mutable default overrides must not touch
    anything=None,
) -> None:
    del trainer, optimizer, tags, seed, mode, layers, shape, extra, schedule, verbose, sizes
    del anything


def small_trainer() -> Config:
    return Config(Trainer, max_steps=5)


FACTORIES = {"small_trainer": small_trainer, "sgd": lambda: Config(Optimizer, name="sgd")}


def base() -> Partial:
    return Partial(
        train,
        trainer=Config(Trainer),
        optimizer=Config(Optimizer),
        layers=[Config(Layer), Config(Layer, size=2)],
    )


def apply(*overrides: str) -> Any:
    return apply_overrides(base(), overrides, factories=FACTORIES)


def error(*overrides: str) -> str:
    with pytest.raises(OverrideError) as info:
        apply(*overrides)
    text = str(info.value)
    assert "\n" not in text
    return text


# -- parsing ------------------------------------------------------------------------------


def test_parse_override_splits_only_at_the_first_operator() -> None:
    assert parse_override("trainer.max_steps=10") == parse_override(" trainer.max_steps =10")
    parsed = parse_override("arg='a=b c'")
    assert (parsed.path, parsed.op, parsed.raw_value) == (("arg",), "=", "'a=b c'")
    assert parse_override("opt.lr*=2").op == "*="
    assert parse_override("layers.0.size-=1").path == ("layers", "0", "size")


@pytest.mark.parametrize(
    ("text", "message"),
    [("trainer.max_steps", "expected `path=value`"), ("bad-key=1", "not a dotted field path")],
)
def test_parse_override_rejects_malformed_text(text: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message):
        parse_override(text)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("10", 10),
        ("3e-4", 3e-4),
        ("None", None),
        ("True", True),
        ("fast", "fast"),
        ('"hello world"', "hello world"),
        ("'a=b c'", "a=b c"),
        ("[a, b]", ["a", "b"]),
        ("[1, 'x, y', [c]]", [1, "x, y", ["c"]]),
        ("(1, 2)", (1, 2)),
        ("(1,)", (1,)),
        ("{a: 1, 'b c': [x]}", {"a": 1, "b c": ["x"]}),
        ("{url: s3://bucket/x}", {"url": "s3://bucket/x"}),
        ("[]", []),
        ("", ""),
        ("/data/train.jsonl", "/data/train.jsonl"),
    ],
)
def test_parse_value_reads_literals_and_bare_words(raw: str, value: object) -> None:
    assert parse_value(raw) == value
    assert type(parse_value(raw)) is type(value)


@pytest.mark.parametrize("raw", ["[a, b", "'open", "[a,,b]", "{a: 1", "[1] x"])
def test_parse_value_rejects_unbalanced_input(raw: str) -> None:
    with pytest.raises(OverrideError, match="cannot parse value"):
        parse_value(raw)


# -- assignment and type checks -----------------------------------------------------------


def test_overrides_return_a_new_task_and_leave_the_original_untouched() -> None:
    original = base()
    changed = apply_overrides(original, ["trainer.max_steps=10", "seed=3"])
    assert changed.trainer.max_steps == 10
    assert changed.seed == 3
    assert "max_steps" not in original.trainer.__arguments__
    assert "seed" not in original.__arguments__


def test_nested_values_are_checked_and_coerced() -> None:
    task = apply("optimizer.lr=1", "tags=[a, b]", "trainer.ckpt=None", "shape=[2, 3]")
    assert task.optimizer.lr == 1.0 and isinstance(task.optimizer.lr, float)
    assert task.tags == ["a", "b"]
    assert task.trainer.ckpt is None
    assert task.shape == (2, 3)


def test_quoted_strings_keep_spaces_and_equals_signs() -> None:
    task = apply("mode='a=b c'", 'trainer.ckpt="/ckpt/run 1"')
    assert task.mode == "a=b c"
    assert task.trainer.ckpt == "/ckpt/run 1"


def test_bare_number_for_a_string_field_keeps_its_text() -> None:
    assert apply("mode=1.10").mode == "1.10"


def test_enum_by_member_name_in_any_case() -> None:
    assert apply("trainer.precision=fp32").trainer.precision is Precision.FP32
    assert apply("trainer.precision=BF16").trainer.precision is Precision.BF16


def test_unknown_field_names_the_class_and_suggests_the_closest() -> None:
    assert error("trainer.max_stepz=10") == (
        "`Trainer` has no field `max_stepz`; did you mean `max_steps`?"
    )


def test_unknown_field_without_close_match_lists_fields() -> None:
    message = error("optimizer.zzz=1")
    assert message.startswith("`Optimizer` has no field `zzz` (fields: lr, name)")


def test_unknown_top_level_field_names_the_function() -> None:
    assert error("sed=1") == "`train` has no field `sed`; did you mean `seed`?"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=ten", "`trainer.max_steps` expects int, got str 'ten'"),
        ("trainer.max_steps=1.5", "`trainer.max_steps` expects int, got float 1.5"),
        ("seed=True", "`seed` expects int, got bool True"),
        ("trainer.max_steps=None", "only Optional fields accept None"),
        ("mode=None", "`mode` expects str, got None"),
        ("trainer.precision=fp8", "expects Precision, got str 'fp8' (choose from BF16, FP32)"),
        ("optimizer.name=adam", "expects one of 'adamw', 'sgd', got str 'adam'"),
        ("trainer.devices=[0, x]", "`trainer.devices.1` expects int, got str 'x'"),
        ("shape=[1, 2, 3]", "2 items needed"),
        ("extra={a: x}", "`extra.a` expects int, got str 'x'"),
        ("verbose=maybe", "`verbose` expects bool, got str 'maybe'"),
    ],
)
def test_wrong_types_are_rejected_with_the_path(override: str, message: str) -> None:
    assert message in error(override)


def test_unparsable_value_names_the_field() -> None:
    assert error("tags=[a, b").startswith("cannot parse value for `tags`: missing `]`")


def test_failed_override_writes_nothing() -> None:
    original = base()
    with pytest.raises(OverrideError):
        apply_overrides(original, ["seed=1", "trainer.max_steps=oops"])
    assert "seed" not in original.__arguments__


def test_factory_name_assigns_its_config() -> None:
    task = apply("trainer=small_trainer", "trainer.max_steps*=3", "optimizer=sgd")
    assert fdl.get_callable(task.trainer) is Trainer
    assert task.trainer.max_steps == 15
    assert task.optimizer.name == "sgd"


def test_factory_name_is_a_plain_string_where_a_string_is_expected() -> None:
    assert apply("mode=small_trainer").mode == "small_trainer"


def test_misspelt_factory_suggests_the_factory() -> None:
    assert error("trainer=smal_trainer") == (
        "`trainer` expects Trainer, got str 'smal_trainer'; did you mean factory `small_trainer`?"
    )


def test_config_of_the_wrong_class_is_rejected() -> None:
    assert error("trainer=sgd") == "`trainer` expects Trainer, got Config[Optimizer]"


def test_unannotated_field_accepts_values_and_factories() -> None:
    assert apply("anything=[1, x]").anything == [1, "x"]
    assert fdl.get_callable(apply("anything=small_trainer").anything) is Trainer


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer.lr*=2", 6e-4),
        ("trainer.max_steps+=5", 25),
        ("trainer.max_steps-=5", 15),
        ("trainer.max_steps/=4", 5),
        ("optimizer.lr/=2", 1.5e-4),
    ],
)
def test_arithmetic_updates_start_from_the_current_or_default_value(
    override: str, expected: float
) -> None:
    path, _ = override.split("=", 1)
    owner, name = path.rstrip("*+-/").split(".")
    value = getattr(getattr(apply(override), owner), name)
    assert value == pytest.approx(expected)
    assert type(value) is type(expected)


def test_arithmetic_that_breaks_the_type_is_rejected() -> None:
    assert "expects int, got float 30.0" in error("trainer.max_steps*=1.5")
    assert "needs numbers" in error("mode*=2")


def test_plus_equals_extends_lists() -> None:
    assert apply("tags=[a]", "tags+=[b, c]").tags == ["a", "b", "c"]


def test_list_index_paths_reach_configs_in_lists() -> None:
    task = apply("layers.1.size=3", "layers.0.size+=1")
    assert [layer.size for layer in task.layers] == [2, 3]
    assert "index 5 is out of range" in error("layers.5.size=1")


def test_signature_defaults_are_copied_not_mutated() -> None:
    task = apply("schedule.warmup=99", "sizes.0=9")
    assert task.schedule == Schedule(warmup=99)
    assert task.sizes == [9, 2]
    assert train.__defaults__ is not None
    assert Schedule() in train.__defaults__
    assert [1, 2] in train.__defaults__


def test_unset_required_parent_is_explained() -> None:
    task = Partial(train)
    with pytest.raises(OverrideError, match="`trainer` is not set; assign it first"):
        apply_overrides(task, ["trainer.max_steps=1"])


def test_dict_paths_add_keys() -> None:
    assert apply("extra={a: 1}", "extra.b=2").extra == {"a": 1, "b": 2}


# -- scripts ------------------------------------------------------------------------------


def test_script_fields_args_and_env_are_typed() -> None:
    script = Script(inline="echo", args=["1"])
    changed = apply_overrides(script, ["args=[--n, 3]", "env.TOKEN_COUNT=10", "env.NAME=x y"])
    assert changed.args == ["--n", "3"]
    assert changed.env == {"TOKEN_COUNT": "10", "NAME": "x y"}
    assert script.args == ["1"] and script.env == {}


def test_script_path_replaces_inline_and_back() -> None:
    script = apply_overrides(Script(inline="echo"), ["path=run.sh"])
    assert (script.path, script.inline) == ("run.sh", None)
    script = apply_overrides(script, ["inline='echo hi'"])
    assert (script.path, script.inline) == (None, "echo hi")


def test_script_bad_values_are_rejected() -> None:
    with pytest.raises(OverrideError, match="`m` expects bool"):
        apply_overrides(Script(inline="echo"), ["m=sometimes"])
    with pytest.raises(OverrideError, match="`Script` has no field `argz`; did you mean `args`"):
        apply_overrides(Script(inline="echo"), ["argz=[]"])
    with pytest.raises(OverrideError, match="entrypoint='python'"):
        apply_overrides(Script(path="pkg.mod"), ["m=True"])


def test_factory_that_raises_is_reported_in_one_line() -> None:
    def broken() -> Config:
        raise RuntimeError("no GPUs")

    with pytest.raises(OverrideError, match="factory `broken` .* RuntimeError: no GPUs"):
        apply_overrides(base(), ["trainer=broken"], factories={"broken": broken})


def test_non_task_is_rejected() -> None:
    with pytest.raises(TypeError):
        apply_overrides(42, ["a=1"])  # type: ignore[arg-type]


def test_float_fields_accept_inf_and_nan_words() -> None:
    assert apply("optimizer.lr=inf").optimizer.lr == float("inf")


def test_failing_workspace_factory_is_reported_once(tmp_path: Path) -> None:
    from core.recipes import load_workspace

    ws_file = tmp_path / "ws.py"
    ws_file.write_text(
        "from core.recipes import factory\n\n@factory\ndef bad():\n    raise OSError('disk')\n"
    )
    ws = load_workspace(str(ws_file))
    with pytest.raises(OverrideError) as info:
        apply_overrides(base(), ["trainer=bad"], factories=ws.factories)
    assert str(info.value) == "factory `bad` failed: OSError: disk (line 5) (for `trainer`)"
