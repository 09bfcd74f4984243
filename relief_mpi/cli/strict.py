"""Strict checks of a config file's values: the same rules as the flags, and no silent coercion.

A value from `--config` goes to click as the option's default and through the option's own type
and range, as on the command line; but click converts what it is given (int(2.5) = 2, int(True) =
1, float([1, 2]) a traceback), so a TOML value must first have the option's kind: an integer for an
integer option (never a bool), a number for a float option, a string for a choice or path, a bool
for a flag. Settings without an option (the file's `[data]`, `[model]`, `[strategy]` tables) have
no click type: they are checked here against the RunConfig field's type and a range, so a value no
flag could give (`lora_rank = -1`, `heterofl_widths = [0, -1]`) is refused in one line too.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import click

from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError

# Options whose callback parses a string but that a file may give as a number (`deadline = 30`).
_NUMBER_OR_WORD = ("deadline", "round_timeout")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def check_option_value(param: click.Parameter, value: object, where: str) -> None:
    """Refuse a file's value for option `param` whose TOML kind the option does not take."""
    name = f"{where}: {param.opts[-1] if param.opts else param.name}"
    t = param.type
    if isinstance(param, click.Option) and param.is_flag:
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(t, click.types.IntParamType):  # IntRange too
        ok, want = _is_int(value), "an integer"
    elif isinstance(t, click.types.FloatParamType):  # FloatRange too
        ok, want = _is_number(value), "a number"
    elif param.name in _NUMBER_OR_WORD:
        ok, want = _is_number(value) or isinstance(value, str), "a number or a word"
    elif t.name == "W1,W2,...":  # cli.options.Widths: a list of integers or "64,128"
        ok = isinstance(value, str) or (isinstance(value, list) and all(_is_int(x) for x in value))
        want = "a list of integers"
    else:
        ok, want = isinstance(value, str), "a string"
    if not ok:
        raise ReliefError(f"{name} = {value!r}: must be {want}, not {_kind(value)}")


# Ranges of the settings without an option: (low, high, low open, high open); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "data.overlap": (0.0, 1.0, False, True),
    "data.test_fraction": (0.0, 1.0, True, True),
    "data.server_fraction": (0.0, 1.0, False, True),
    "data.validation": (0.0, 1.0, False, True),
    "data.window": (0, 1_000_000, False, False),
    "data.stride": (0, 1_000_000, False, False),
    "model.feature_dim": (1, 4096, False, False),
    "model.fusion_dim": (1, 4096, False, False),
    "model.hidden_channels": (1, 4096, False, False),
    "model.lora_rank": (1, 4096, False, False),
    "model.lora_alpha": (0.0, 1e6, True, False),
    "strategy.heterofl_widths": (0.0, 1.0, True, False),
}


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def _in_range(x: float, rule: tuple[float | None, float | None, bool, bool]) -> bool:
    lo, hi, lo_open, hi_open = rule
    if not math.isfinite(x):
        return False
    if lo is not None and (x < lo or (lo_open and x == lo)):
        return False
    return not (hi is not None and (x > hi or (hi_open and x == hi)))


def check_table_value(section: str, key: str, value: object, where: str) -> None:
    """Refuse a `[section] key = value` whose kind is not the RunConfig field's, or out of range."""
    cls = type(getattr(RunConfig(), section))
    hints = typing.get_type_hints(cls)
    field_type = hints[key]
    name = f"{where}: [{section}] {key} = {value!r}"
    args = typing.get_args(field_type)
    optional = type(None) in args
    if optional and value is None:
        return
    base: Any = next((a for a in args if a is not type(None)), field_type) if optional else field_type
    origin = typing.get_origin(base)
    rule = _RANGES.get(f"{section}.{key}")
    if origin is tuple:
        item = typing.get_args(base)[0]
        check = _is_int if item is int else _is_number
        if not isinstance(value, list) or not value or not all(check(x) for x in value):
            raise ReliefError(f"{name}: must be a non-empty list of {'integers' if item is int else 'numbers'}")
        bad = [x for x in value if rule is not None and not _in_range(float(x), rule)]
        if bad:
            assert rule is not None
            raise ReliefError(f"{name}: each must be in {_range_text(*rule)}")
        return
    if base is bool:
        ok, want = isinstance(value, bool), "true or false"
    elif base is int:
        ok, want = _is_int(value), "an integer"
    elif base is float:
        ok, want = _is_number(value), "a number"
    else:
        ok, want = isinstance(value, str), "a string"
    if not ok:
        raise ReliefError(f"{name}: must be {want}, not {_kind(value)}")
    if rule is not None and isinstance(value, (int, float)) and not _in_range(float(value), rule):
        raise ReliefError(f"{name}: must be in {_range_text(*rule)}")


def check_tables(tables: dict[str, dict[str, Any]], where: str) -> None:
    """Every table value of a config file, by check_table_value (fields are known to exist)."""
    for section, values in tables.items():
        fields = {f.name for f in dataclasses.fields(type(getattr(RunConfig(), section)))}
        for k, v in values.items():
            if k in fields:
                check_table_value(section, k, v, where)
