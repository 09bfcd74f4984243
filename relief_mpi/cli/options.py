"""Options shared by train, bench and pretrain, and their mapping onto the frozen config."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import click
from click.core import ParameterSource

from relief_mpi.cli.settings import config_option, setting_key, with_settings
from relief_mpi.config import (
    B_MODES,
    CLOCKS,
    COST_MODELS,
    DATASETS,
    DEVICES,
    MODELS,
    MODES,
    PRETRAIN_OPTIMIZERS,
    T_STAR_BRACKETS,
    DataConfig,
    DeviceConfig,
    ModelConfig,
    RunConfig,
    StrategyConfig,
)
from relief_mpi.data.protocol import PARTITIONS, PROTOCOLS, SPLITS, paper_data_config
from relief_mpi.errors import ReliefError
from relief_mpi.strategy import catalogue

__all__ = [
    "COMMON", "DATA_OPTIONS", "MODEL_OPTIONS", "PAPER_RUN_DEFAULTS", "PARAM_KEYS", "POS_INT", "PRETRAIN_OPTIONS",
    "Widths", "build_config", "common_options", "data_config", "given_options", "rounds_option", "total_rounds",
    "with_protocol_defaults"
]


def _deadline(ctx: click.Context, param: click.Parameter, value: str) -> str:
    del ctx, param
    if value in ("auto", "none"):
        return value
    try:
        if not 0 < float(value) < math.inf:  # NaN and inf are no deadline: refused like --round-timeout's
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r}: use auto, none or a finite number of seconds > 0") from None
    return value


class Widths(click.ParamType):
    """Comma-separated positive ints ("64,128"), or a list of them from a config file."""

    name = "W1,W2,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        try:
            widths = tuple(int(str(v).strip()) for v in items)
        except ValueError:
            self.fail(f"{value!r}: give comma-separated integers, e.g. 64,128", param, ctx)
        if not 1 <= len(widths) <= 8 or not all(1 <= w <= 1024 for w in widths):
            self.fail(f"{value!r}: 1 to 8 stage widths, each in 1..1024", param, ctx)
        return widths


POS_INT = click.IntRange(min=1)

COMMON: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--rounds", type=POS_INT, default=20, show_default=True,
                 help="Federated rounds. --protocol paper: the published R, the rounds after the seeding "
                      "round 0, so R + 1 run in all (200 unless given, as published)."),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                 help="Seed for data, partition, model init and local batch order (same seed, same numbers)."),
    click.option("--dataset", type=click.Choice(DATASETS), default="synthetic", show_default=True,
                 help="Which dataset: synthetic (built in, no download needed), spar (real smartwatch data), "
                      "mhealth or pamap2 (the UCI files, in --data-dir)."),
    click.option("--data-dir", type=click.Path(file_okay=True, dir_okay=True), default=None,
                 help="Folder (or zip) with the dataset's original files; not needed for synthetic."),
    click.option("--modality-by", type=click.Choice(["type", "position"]), default="type", show_default=True,
                 help="Group channels into modalities by sensor type (acc, gyro, ...) or body position."),
    click.option("--alpha", type=click.FloatRange(0, 1e6, min_open=True), default=1.0, show_default=True,
                 help="Dirichlet label-skew concentration across clients (smaller = more skew); "
                      "--partition dirichlet only."),
    click.option("--downsample", type=POS_INT, default=1, show_default=True,
                 help="Keep one sample in K, e.g. 2 turns PAMAP2's 100 Hz into 50 Hz: protocol ours averages "
                      "each block of K, protocol paper keeps every K-th sample as the authors did (its default: "
                      "2 for PAMAP2, else 1)."),
    click.option("--window-s", type=click.FloatRange(0, 600, min_open=True), default=2.56, show_default=True,
                 help="Window length in seconds (0..600), windows overlapping by half; --protocol paper uses "
                      "256-sample windows with stride 50 instead."),
    click.option("--protocol", type=click.Choice(PROTOCOLS), default="ours", show_default=True,
                 help="Data protocol. ours: --window-s windows inside one label run, z-score from training "
                      "windows only, Dirichlet shards, time split. paper: the authors' (docs/data.md): PAMAP2 "
                      "subjects 101-108 at 50 Hz, NaNs forward-filled, per-subject z-score, 256-sample windows, "
                      "stride 50, majority labels, --partition subject --split paper, and unless given "
                      "--fleet paper --rounds 200 (the published R: rounds 0..200) --local-epochs 5 "
                      "--batch-size 32."),
    click.option("--partition", type=click.Choice(PARTITIONS), default=None,
                 help="Who holds which windows. dirichlet: label-skewed shards (--alpha) over the run's clients; "
                      "subject: one client per subject in sorted order (the run needs as many clients as "
                      "training subjects; `relief-mpi data info` says how many). Default: dirichlet, subject "
                      "under --protocol paper."),
    click.option("--split", type=click.Choice(SPLITS), default=None,
                 help="Test set. time: the last 20% of every label run of every recording (leak-free); paper: a "
                      "random 20% of each subject's windows, pooled, drawn as the authors' code draws it (one "
                      "generator, subject after subject: the same seed gives their test windows; it leaks: with "
                      "overlapping windows the test set holds neighbours of training windows); paper-streams: "
                      "the same share drawn from one stream per subject (ours); file: --split-file's; subject: "
                      "whole held-out subjects (--test-subjects), who are not clients. All but time need "
                      "--partition subject. Default: time, paper under --protocol paper."),
    click.option("--split-file", type=click.Path(dir_okay=False), default=None,
                 help="Take the test windows from FILE: a run log (its /split group) or a JSON file (format in "
                      "docs/data.md, 'Split files'); implies --split file and --partition subject."),
    click.option("--test-subjects", type=click.IntRange(1, 1000), default=None,
                 help="--split subject: how many subjects to hold out (a seeded choice); default about 20% of "
                      "them, at least 1."),
    click.option("--strategy", type=click.Choice(catalogue.names()), default="fedavg", show_default=True,
                 help=catalogue.strategy_help()),
    click.option("--model", "model_name", type=click.Choice(MODELS), default="paper", show_default=True,
                 help="paper: the authors' Conv-BN encoders (64, 128), rank-rho factored fusion, head 128-64-C; "
                      "small: our first version's smaller CNN (needed by heterofl and --groups-per-modality)."),
    click.option("--encoder-channels", type=Widths(), default="64,128", show_default=True,
                 help="Paper model: output channels of each conv stage of every encoder (the authors' 64,128; "
                      "one E.<modality>.<stage> group per stage). Narrow encoders (e.g. 8,16) make quick smoke "
                      "runs and tests; the cost model follows the model."),
    click.option("--rho", type=click.IntRange(1, 128), default=8, show_default=True,
                 help="Rank of the paper model's factored fusion (A_m: rho x 128)."),
    click.option("--b-mode", type=click.Choice(B_MODES), default="shared", show_default=True,
                 help="Paper model: one shared fusion B, or one B per modality (block; implied by b-block)."),
    click.option("--mode", type=click.Choice(MODES), default="cnn", show_default=True,
                 help="cnn: train all parameters; lora: frozen pretrained base, LoRA on the fusion (and, paper "
                      "model, the head)."),
    click.option("--base", type=click.Path(dir_okay=False), default=None,
                 help="LoRA base checkpoint from `relief-mpi pretrain`; default: pretrain on the server split."),
    # the LoRA base's own training: never the clients' --lr
    click.option("--pretrain-epochs", type=click.IntRange(1, 1000), default=10, show_default=True,
                 help="LoRA base: passes over the server split."),
    click.option("--pretrain-lr", type=click.FloatRange(0, 10, min_open=True), default=1e-3, show_default=True,
                 help="LoRA base: learning rate of its own optimizer (not the clients' --lr). The run stops "
                      "before round 1 if the base is not finite or its loss on the server split did not drop."),
    click.option("--pretrain-optimizer", type=click.Choice(PRETRAIN_OPTIMIZERS), default="adam", show_default=True,
                 help="LoRA base: adam, or sgd with momentum 0.9."),
    click.option("--groups-per-modality", type=POS_INT, default=1, show_default=True,
                 help="Split each modality block into G sub-blocks for finer budgets."),
    click.option("--local-steps", type=click.IntRange(1, 100_000), default=10, show_default=True,
                 help="Our variants: local SGD steps per round (a deadline may cut them)."),
    click.option("--local-epochs", type=click.IntRange(1, 1000), default=5, show_default=True,
                 help="Published presets: local epochs over the client's windows per round (--protocol paper: "
                      "5 unless given)."),
    click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True,
                 help="Local batch size (1..4096; a client with fewer windows uses them all; --protocol paper: "
                      "32 unless given)."),
    click.option("--lr", type=click.FloatRange(0, 10, min_open=True), default=None,
                 help="Local learning rate in (0, 10]; default 1e-3 (Adam) for published presets and the "
                      "controls on their recipe (fedavg-fair, skip-absent, fedavg-deadline, fixed-order), "
                      "0.05 (SGD) for our other variants. Never used to pretrain a LoRA base (--pretrain-lr)."),
    click.option("--lam", type=click.FloatRange(0, 1), default=None,
                 help="Published T* interpolation: T* = (1 - lam) T_a + lam T_f; default the preset's "
                      "(1; relief-acc and the fedavg presets are lam 0)."),
    click.option("--gamma", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.9,
                 show_default=True, help="Published divergence smoothing: d_bar <- gamma d + (1 - gamma) d_bar."),
    click.option("--t-star-bracket", type=click.Choice(T_STAR_BRACKETS), default="published", show_default=True,
                 help="published: bisect T* on [0.5 min tau, 2 max tau] as the authors do (never contains the "
                      "communication time T_o, 4 steps); contains-overhead: our correction, [T_o + 0.5 min tau, "
                      "T_o + 2 max tau max|G_n|], 4 steps; widened: the authors' search with its hi_mult and "
                      "iters raised, [0.5 min tau, 1000 max tau], 30 steps: it holds T_o and converges on the "
                      "smallest T that fits (docs/design.md)."),
    click.option("--cost-model", type=click.Choice(COST_MODELS), default="published", show_default=True,
                 help="Analytic cost model behind T*, the budgets and the logged analytic figures "
                      "(docs/design.md). published: a round computes |S_n| x the mean group time and downloads "
                      "the whole model; flops (ours): the measured FLOPs of what the round runs (forward of every "
                      "encoder run, backward of what trains) and only the groups the client needs downloaded."),
    click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
                 help="Local SGD momentum (reset every round)."),
    click.option("--mu", type=click.FloatRange(min=0), default=0.01, show_default=True,
                 help="FedProx proximal weight (fedprox only)."),
    click.option("--deadline", default="auto", show_default=True, callback=_deadline,
                 help="Round deadline in emulated seconds; auto = the median client's time to train all its "
                      "blocks; none = no deadline (relief strategies only)."),
    click.option("--beta", type=click.FloatRange(min=0), default=0.5, show_default=True,
                 help="UCB exploration weight of the RELIEF allocator."),
    click.option("--fleet", type=click.Path(dir_okay=False), default=None,
                 help="Fleet file (TOML) mapping client ranks to device profiles; `paper`: the authors' device "
                      "types (full / acc_gyro / acc_only, published proportions, in client order); default: "
                      "three tiers (high: all sensors, mid, low: accelerometer only); `paper` under --protocol "
                      "paper unless given. See `relief-mpi fleet show`."),
    click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False), default=None,
                 help="Extra device profile folder (*.toml) on top of the shipped ones."),
    click.option("--clock", type=click.Choice(CLOCKS), default="virtual", show_default=True,
                 help="virtual: emulated times computed, no sleeping (fast); real: clients sleep so each "
                      "step and transfer lasts as long as on the emulated device."),
    click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                 help="Where ranks train: auto = a profile's `device`, else CUDA where the rank's torch sees a "
                      "GPU (client ranks of a host spread over its visible GPUs), else the CPU; cuda = fail "
                      "(exit 2) where none is seen. docs/devices.md#gpu."),
    click.option("--eval-every", type=POS_INT, default=1, show_default=True,
                 help="Evaluate the global model every K rounds (and after the last)."),
]


_DATA_NAMES = ("--dataset", "--data-dir", "--modality-by", "--alpha", "--window-s", "--downsample", "--protocol",
               "--partition", "--split", "--split-file", "--test-subjects")
_MODEL_NAMES = ("--model", "--rho", "--b-mode", "--encoder-channels")
_PRETRAIN_NAMES = ("--pretrain-epochs", "--pretrain-lr", "--pretrain-optimizer")


def _add_common(cmd: click.Command, names: tuple[str, ...]) -> click.Command:
    for opt in COMMON:
        probe = click.Command("probe")
        opt(probe)  # click's option decorator appends its parameter to a Command's params
        param = probe.params[0]
        if param.opts[0] in names:
            cmd.params.append(param)
    return cmd


def DATA_OPTIONS(cmd: click.Command) -> click.Command:  # noqa: N802 - used like a decorator
    """Add the data options of COMMON (the same definitions train uses) to a command."""
    return _add_common(cmd, _DATA_NAMES)


def MODEL_OPTIONS(cmd: click.Command) -> click.Command:  # noqa: N802 - used like a decorator
    """Add the model-shape options of COMMON (--model, --rho, --b-mode, --encoder-channels) to a command."""
    return _add_common(cmd, _MODEL_NAMES)


def PRETRAIN_OPTIONS(cmd: click.Command) -> click.Command:  # noqa: N802 - used like a decorator
    """Add the LoRA base's training options of COMMON (--pretrain-epochs, -lr, -optimizer) to a command."""
    return _add_common(cmd, _PRETRAIN_NAMES)


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(COMMON):
        f = opt(f)
    return config_option(f)


# What --protocol paper sets on the run (design.md section 0) for every option the user did not give.
PAPER_RUN_DEFAULTS: dict[str, Any] = {"fleet": "paper", "rounds": 200, "local_epochs": 5, "batch_size": 32}
_GIVEN_SOURCES = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.DEFAULT_MAP)


def given_options(kw: dict[str, Any], given: Iterable[str] | None = None) -> set[str]:
    """The option names (kw keys) the user set: `given` when passed; else, inside a click command,
    those whose value came from the command line, the environment or a default map (a config
    file); outside click every key of kw counts as set."""
    if given is not None:
        return set(given)
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set(kw)
    return {k for k in kw if ctx.get_parameter_source(k) in _GIVEN_SOURCES}


def with_protocol_defaults(kw: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """kw with --protocol paper's run-level defaults (PAPER_RUN_DEFAULTS) where the user gave nothing."""
    if kw.get("protocol") != "paper":
        return kw
    return {**kw, **{k: v for k, v in PAPER_RUN_DEFAULTS.items() if k not in given}}


def data_config(kw: dict[str, Any], given: set[str]) -> DataConfig:
    """The DataConfig of the data options: --protocol paper fills in what the authors' protocol
    fixes (data.protocol.paper_data_config) unless the user gave that option; combinations that
    make no sense are one-line errors."""
    paper = kw.get("protocol", "ours") == "paper"
    partition = kw.get("partition") or ("subject" if paper or kw.get("split_file") else "dirichlet")
    split_file = kw.get("split_file") or ""
    if split_file and kw.get("split") not in (None, "file"):
        raise ReliefError(f"--split-file gives the split: drop --split {kw['split']} (or use --split file)")
    if kw.get("split") == "file" and not split_file:
        raise ReliefError("--split file needs --split-file FILE")
    split = "file" if split_file else kw.get("split") or ("paper" if paper and partition == "subject"
                                                          else "time")
    if partition == "dirichlet" and split != "time":
        raise ReliefError(f"--split {split} needs --partition subject (the Dirichlet partition cuts every label run "
                          "on time: --split time)")
    if kw.get("test_subjects") is not None and split != "subject":
        raise ReliefError(f"--test-subjects only applies to --split subject (the split is {split})")
    if partition == "subject" and "alpha" in given:
        raise ReliefError("--alpha sets the Dirichlet label skew; --partition subject has none (one client per "
                          "subject)")
    if paper and "window_s" in given:
        raise ReliefError("--window-s does not apply under --protocol paper (its windows are 256 samples, stride 50)")
    cfg = DataConfig(dataset=kw["dataset"], data_dir=kw.get("data_dir"), modality_by=kw["modality_by"],
                     alpha=kw["alpha"], window_s=kw["window_s"], downsample=kw.get("downsample", 1))
    if paper:
        cfg = replace(paper_data_config(cfg), **{k: kw[k] for k in ("modality_by", "downsample") if k in given})
    # --rng authors repeats their arithmetic too: their float32 z-score (data/preprocess.authors_zscore)
    zdtype = "float32" if paper and kw.get("rng") == "authors" else "float64"
    return replace(cfg, partition=partition, split=split, split_file=split_file,
                   test_subjects=kw.get("test_subjects") or 0, zscore_dtype=zdtype)


def build_config(kw: dict[str, Any], given: Iterable[str] | None = None) -> RunConfig:
    """The frozen RunConfig for the parsed options (raises ReliefError on inconsistent ones).
    Ranges are checked where options are parsed (click ranges, said in --help); NaN passes a
    click range, so finite-ness is checked here once. `given` names the options the user set
    (default: from the click context, see given_options): --protocol paper's defaults apply to the
    others, so a caller that sets a value itself (e.g. a bench budget's rounds) adds it to `given`."""
    given = given_options(kw, given)
    kw = with_protocol_defaults(kw, given)
    for key in ("lr", "alpha", "window_s", "mu", "beta", "lam", "gamma", "momentum", "pretrain_lr"):
        v = kw.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            raise ReliefError(f"--{key.replace('_', '-')} {v}: must be a finite number")
    if kw["dataset"] != "synthetic" and kw.get("data_dir") is None:
        raise ReliefError(f"--dataset {kw['dataset']} needs --data-dir (the folder with its original files)")
    if kw["mode"] != "lora" and kw.get("base"):
        raise ReliefError("--base is only used with --mode lora")
    data = data_config(kw, given)
    if kw["mode"] == "lora" and not kw.get("base") and data.server_fraction == 0:
        raise ReliefError("--protocol paper keeps no server split (every training window belongs to a client), so "
                          "there is nothing to pretrain a LoRA base on: give `train --mode lora` a --base made by "
                          "`relief-mpi pretrain` under --protocol ours")
    if kw.get("fleet") == "paper" and data.modality_by != "type":
        raise ReliefError("--fleet paper gives devices sensor types (acc, gyro, ...): use --modality-by type")
    model_name = kw.get("model_name", "paper")
    entry = catalogue.entry(kw["strategy"])
    b_mode = entry.b_mode or kw.get("b_mode", "shared")
    lr = kw.get("lr")
    if lr is None:
        lr = entry.default_lr
    cfg = with_settings(RunConfig(
        rounds=total_rounds(kw["rounds"], data), seed=kw["seed"], rng=kw.get("rng") or "ours",
        eval_every=kw["eval_every"],
        checkpoint_every=kw.get("checkpoint_every", 0) or 0,
        data=data,
        model=ModelConfig(mode=kw["mode"], base=kw.get("base"), groups_per_modality=kw["groups_per_modality"],
                          model=model_name, rho=kw.get("rho", 8), b_mode=b_mode,
                          encoder_channels=tuple(kw.get("encoder_channels") or (64, 128)),
                          pretrain_epochs=kw.get("pretrain_epochs", 10), pretrain_lr=kw.get("pretrain_lr", 1e-3),
                          pretrain_optimizer=kw.get("pretrain_optimizer", "adam")),
        strategy=StrategyConfig(name=kw["strategy"], local_steps=kw["local_steps"], batch_size=kw["batch_size"],
                                lr=lr, momentum=kw["momentum"], mu=kw["mu"], deadline=kw["deadline"],
                                beta=kw["beta"], local_epochs=kw.get("local_epochs", 5), lam=kw.get("lam"),
                                gamma=kw.get("gamma", 0.9), t_star_bracket=kw.get("t_star_bracket", "published"),
                                cost_model=kw.get("cost_model", "published")),
        device=DeviceConfig(fleet=kw.get("fleet"), profiles_dir=kw.get("profiles_dir"), clock=kw["clock"],
                            device=kw.get("device", "auto")),
    ), kw.get("config"))  # a --config file's settings without an option (cli/config.py)
    entry.check(cfg)
    return cfg


def total_rounds(rounds: int, data: DataConfig) -> int:
    """The rounds a run makes for --rounds: under --protocol paper R is the published R, the rounds
    after the seeding round 0, so R + 1 in all (the authors' range(1, R + 1) after round 0)."""
    return rounds + 1 if data.protocol == "paper" else rounds


def rounds_option(cfg: dict[str, Any]) -> int:
    """The --rounds that gives a RunConfig dict's `rounds` (total_rounds inverted)."""
    return int(cfg["rounds"]) - (1 if cfg.get("data", {}).get("protocol") == "paper" else 0)


def _param_keys() -> dict[str, str]:
    probe = click.Command("probe")
    for opt in COMMON:
        opt(probe)  # click's option decorator appends its parameter to a Command's params
    names = [p.name for p in probe.params if p.name] + ["checkpoint_every", "rng"]
    return {n: k for n in names if (k := setting_key(n)) is not None}


# CLI parameter -> dotted RunConfig key (names what a resumed run would change), from the option and
# field names (cli/settings.setting_key): a new option named like its config field needs no entry.
PARAM_KEYS: dict[str, str] = _param_keys()
