"""`relief-mpi config show RUN.h5`: a run's configuration as a file for `--config` (cli/settings.py reads them).

A config file sets options by their long names (`rounds = 2`, `local-epochs = 1`, `model = "paper"`)
as click defaults, so every value goes through the same checks as on the command line and a flag
given on the command line overrides the file. RunConfig settings that have no option go in
tables named after their section (`[data]`, `[model]`, `[strategy]`, `[device]`) with their
field names. `config show` writes a log's configuration back in that form: the options that
differ from what the defaults give, then those tables, so `train --config` repeats the run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from relief_mpi.cli.options import PARAM_KEYS, build_config, rounds_option
from relief_mpi.cli.settings import long_names, option_settings, with_settings
from relief_mpi.cli.train import train
from relief_mpi.config import flatten
from relief_mpi.errors import ReliefError

__all__ = ["command", "options_for", "render", "show"]

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string


def options_for(saved: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The options (parameter name -> value) and table settings that rebuild `saved` (a RunConfig
    dict) through build_config: only options whose value differs from what the rest gives."""
    defaults = {p.name: p.default for p in train.params if p.name}
    target = flatten(saved)
    chosen: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for _ in range(len(PARAM_KEYS) + 1):
        got = flatten(with_settings(build_config({**defaults, **chosen}, given=set(chosen)), tables).to_dict())
        diff = [p for p, key in PARAM_KEYS.items() if p not in chosen and got.get(key) != target.get(key)
                and target.get(key) is not None]
        extra = [k for k in target if k not in option_settings() and got.get(k) != target.get(k)]
        if not diff and not extra:
            return chosen, tables
        diff.sort(key=lambda p: p != "split_file")  # a split file implies --split file and --partition subject
        for p in diff[:1]:  # one at a time: an option can change what the defaults of others give
            chosen[p] = rounds_option(saved) if p == "rounds" else target[PARAM_KEYS[p]]
        if not diff:
            for k in extra:
                section, field = k.split(".", 1)
                tables.setdefault(section, {})[field] = target[k]
    raise ReliefError("this log's configuration cannot be written as options")


def render(saved: dict[str, Any], clients: int | None, source: str) -> str:
    """The TOML text of a run's configuration."""
    chosen, tables = options_for(saved)
    long = {v: k for k, v in long_names(train).items()}
    lines = [f"# relief-mpi run configuration from {source}",
             "# relief-mpi train --config THIS.toml repeats the run; options on the command line override it.",
             "# Options not listed have their default value (relief-mpi train --help)."]
    for name in ("strategy", "rounds", "seed"):  # the run's identity first, always written
        chosen.setdefault(name, rounds_option(saved) if name == "rounds" else
                          flatten(saved)[{"strategy": "strategy.name"}.get(name, name)])
    for name, v in chosen.items():
        lines.append(f"{long.get(name, name.replace('_', '-'))} = {_toml_value(v)}")
    if clients is not None:
        lines.append(f"clients = {clients}  # with --transport inprocess (under MPI: mpirun -n {clients + 1})")
    for section, values in tables.items():
        lines += ["", f"[{section}]  # settings without a command-line option"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@click.group("config")
def command() -> None:
    """Run configuration files (TOML) for `train --config` and `bench --config`."""


@command.command("show")
@click.argument("log", type=click.Path(dir_okay=False))
def show(log: str) -> None:
    """Print the configuration of the run that wrote LOG as a TOML file for `train --config`:

    \b
    relief-mpi config show runs/r.h5 > run.toml
    relief-mpi train --config run.toml --out again.h5      # the same run again
    """
    from relief_mpi.log.check import not_a_log, saved_config
    from relief_mpi.log.hdf5 import read_log

    path = Path(log)
    if not path.exists():
        raise ReliefError(f"{path}: no such file")
    run = read_log(path)  # a damaged or foreign file is one line (log.check.LogReadError)
    saved_config(path, run.attrs["config"])  # a garbled config is one line
    saved = json.loads(run.attrs["config"])
    try:
        world = int(run.attrs.get("world_size", 0))
    except (TypeError, ValueError):
        raise not_a_log(path, f"its world_size attribute is {run.attrs.get('world_size')!r}") from None
    try:
        text = render(saved, world - 1 if world > 1 else None, str(path))
    except ReliefError:
        raise
    except Exception as e:  # noqa: BLE001 - values no option accepts: the log's config is garbled
        raise not_a_log(path, f"its config cannot be written as options ({type(e).__name__}: {e})") from None
    click.echo(text, nl=False)
