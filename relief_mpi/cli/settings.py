"""Run configuration files: `--config run.toml` for train and bench.

A config file sets options by their long names (`rounds = 2`, `local-epochs = 1`, `model = "paper"`)
as click defaults, so every value goes through the same checks as on the command line and a flag
given on the command line overrides the file. RunConfig settings that have no option go in
tables named after their section (`[data]`, `[model]`, `[strategy]`, `[device]`) with their
field names. `relief-mpi config show` (cli/config.py) writes a log's configuration back in that form.

Below the commands on purpose: options.py and the commands import it, it imports none of them
(a command registers itself with register_command).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from relief_mpi.cli.strict import check_option_value
from relief_mpi.cli.strict import check_tables as check_table_values
from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["ALIASES", "SECTIONS", "check_tables", "config_option", "load_config_file", "long_names",
           "option_settings", "register_command", "setting_key", "with_settings"]

# Option parameters whose RunConfig field has another name.
ALIASES = {"strategy": "strategy.name", "model_name": "model.model"}
_COMMANDS: list[click.Command] = []

SECTIONS = ("data", "model", "strategy", "device")


def long_names(cmd: click.Command) -> dict[str, str]:
    """Option long name (without --) -> parameter name, for every option of a command."""
    out = {}
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.hidden and p.name not in ("config", "help"):
            longs = [o for o in p.opts if o.startswith("--")]
            if longs:
                out[max(longs, key=len)[2:]] = p.name
    return out


def register_command(cmd: click.Command) -> None:
    """A command that takes --config (train, bench): its options are known to the others' files."""
    if cmd not in _COMMANDS:
        _COMMANDS.append(cmd)


def _other_commands_keys(cmd: click.Command) -> set[str]:
    keys: set[str] = set()
    for other in _COMMANDS:
        if other is not cmd:
            keys |= set(long_names(other))
    return keys


def setting_key(param: str) -> str | None:
    """The dotted RunConfig key an option's parameter sets (None: it sets none): the field of that
    name in RunConfig or one of its sections, or an alias (--strategy names strategy.name)."""
    if param in ALIASES:
        return ALIASES[param]
    cfg = RunConfig()
    top = {f.name for f in dataclasses.fields(cfg)} - set(SECTIONS)
    if param in top:
        return param
    for section in SECTIONS:
        if param in {f.name for f in dataclasses.fields(getattr(cfg, section))}:
            return f"{section}.{param}"
    return None


def option_settings() -> set[str]:
    """Dotted RunConfig keys that an option of a --config command sets (the rest can only come from
    a file's tables)."""
    keys = {setting_key(p.name) for cmd in _COMMANDS for p in cmd.params if p.name}
    return {k for k in keys if k is not None}


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
    names = long_names(ctx.command)
    elsewhere = _other_commands_keys(ctx.command)
    params = {p.name: p for p in ctx.command.params if p.name}
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
            check_option_value(params[names[name]], v, str(path))  # the flag's kind: no silent coercion
            defaults[names[name]] = v
        elif name not in elsewhere:  # another command's option (train's --out in a bench file) is skipped
            raise click.BadParameter(f"{path}: unknown option {key!r} (`relief-mpi {ctx.info_name} --help` lists "
                                     "them)")
    check_tables(tables, str(path))
    check_table_values(tables, str(path))  # each setting's type and range (cli/strict.py)
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
