"""Run configuration files: `--config run.toml` (train, bench) and `relief-mpi config show RUN.h5`.

A config file sets options by their long names (`rounds = 2`, `local-epochs = 1`, `model = "paper"`)
as click defaults, so every value goes through the same checks as on the command line and a flag
given on the command line overrides the file. RunConfig settings that have no option go in
tables named after their section (`[data]`, `[model]`, `[strategy]`, `[device]`) with their
field names. `config show` writes a log's configuration back in that form: the options that
differ from what the defaults give, then those tables, so `train --config` repeats the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import click

from relief_mpi.config import RunConfig, flatten
from relief_mpi.errors import ReliefError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SECTIONS = ("data", "model", "strategy", "device")


def _long_names(cmd: click.Command) -> dict[str, str]:
    """Option long name (without --) -> parameter name, for every option of a command."""
    out = {}
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.hidden and p.name not in ("config", "help"):
            longs = [o for o in p.opts if o.startswith("--")]
            if longs:
                out[max(longs, key=len)[2:]] = p.name
    return out


def _other_commands_keys(cmd: click.Command) -> set[str]:
    from relief_mpi.cli import bench, train

    keys: set[str] = set()
    for other in (train.train, bench.command):
        if other is not cmd:
            keys |= set(_long_names(other))
    return keys


def option_settings() -> set[str]:
    """Dotted RunConfig keys that an option sets (the rest can only come from a file's tables)."""
    from relief_mpi.cli.options import PARAM_KEYS

    return set(PARAM_KEYS.values())


def load_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, dict[str, Any]]:
    """Eager --config callback: the file's options become this command's defaults; returns its
    tables (settings without an option) for build_config."""
    del param
    if not value:
        return {}
    path = Path(value).expanduser()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise click.BadParameter(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{path}: not valid TOML ({e})") from None
    assert ctx.command is not None
    names = _long_names(ctx.command)
    elsewhere = _other_commands_keys(ctx.command)
    defaults: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, v in doc.items():
        if isinstance(v, dict):
            if key not in SECTIONS:
                raise click.BadParameter(f"{path}: unknown table [{key}] (tables: {', '.join(SECTIONS)})")
            tables[key] = v
            continue
        name = key.replace("_", "-")
        if name in names:
            defaults[names[name]] = v
        elif name not in elsewhere:  # another command's option (train's --out in a bench file) is skipped
            raise click.BadParameter(f"{path}: unknown option {key!r} (`relief-mpi {ctx.info_name} --help` lists "
                                     "them)")
    check_tables(tables, str(path))
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return tables


def check_tables(tables: dict[str, dict[str, Any]], where: str) -> None:
    """Tables may only hold RunConfig fields that no option sets."""
    by_option = option_settings()
    for section, values in tables.items():
        cls = type(getattr(RunConfig(), section))
        fields = {f.name for f in dataclasses.fields(cls)}
        for k in values:
            if k not in fields:
                raise ReliefError(f"{where}: [{section}] has no setting {k!r}")
            if f"{section}.{k}" in by_option:
                raise ReliefError(f"{where}: [{section}] {k} has a command-line option; set it as an option at the "
                                  "top of the file")


def with_settings(cfg: RunConfig, tables: dict[str, dict[str, Any]] | None) -> RunConfig:
    """cfg with a config file's table settings applied."""
    if not tables:
        return cfg
    parts = {}
    for section, values in tables.items():
        vals = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        parts[section] = dataclasses.replace(getattr(cfg, section), **vals)
    return dataclasses.replace(cfg, **parts)


def config_option(f: Any) -> Any:
    return click.option("--config", "config", type=click.Path(dir_okay=False), default=None, is_eager=True,
                        expose_value=True, callback=load_config_file,
                        help="TOML file of options by their long names (rounds = 2, local-epochs = 1, ...); "
                             "options given on the command line override it. `relief-mpi config show RUN.h5` "
                             "writes a run's file.")(f)


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
    from relief_mpi.cli.options import PARAM_KEYS, build_config
    from relief_mpi.cli.train import train

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
        for p in diff[:1]:  # one at a time: an option can change what the defaults of others give
            chosen[p] = target[PARAM_KEYS[p]]
        if not diff:
            for k in extra:
                section, field = k.split(".", 1)
                tables.setdefault(section, {})[field] = target[k]
    raise ReliefError("this log's configuration cannot be written as options")


def render(saved: dict[str, Any], clients: int | None, source: str) -> str:
    """The TOML text of a run's configuration."""
    from relief_mpi.cli.train import train

    chosen, tables = options_for(saved)
    long = {v: k for k, v in _long_names(train).items()}
    lines = [f"# relief-mpi run configuration from {source}",
             "# relief-mpi train --config THIS.toml repeats the run; options on the command line override it.",
             "# Options not listed have their default value (relief-mpi train --help)."]
    for name in ("strategy", "rounds", "seed"):  # the run's identity first, always written
        chosen.setdefault(name, flatten(saved)[{"strategy": "strategy.name"}.get(name, name)])
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
