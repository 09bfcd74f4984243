"""Options shared by train, bench and pretrain, and their mapping onto the frozen config."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import click

from relief_mpi.config import (
    ADAM_STRATEGIES,
    B_MODES,
    CLOCKS,
    COST_MODELS,
    DATASETS,
    MODELS,
    MODES,
    PRETRAIN_OPTIMIZERS,
    STRATEGIES,
    T_STAR_BRACKETS,
    DataConfig,
    DeviceConfig,
    ModelConfig,
    RunConfig,
    StrategyConfig,
)
from relief_mpi.errors import ReliefError


def _deadline(ctx: click.Context, param: click.Parameter, value: str) -> str:
    del ctx, param
    if value in ("auto", "none"):
        return value
    try:
        if float(value) <= 0:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r}: use auto, none or a number of seconds > 0") from None
    return value


POS_INT = click.IntRange(min=1)
POS_FLOAT = click.FloatRange(min=0, min_open=True)

COMMON: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--rounds", type=POS_INT, default=20, show_default=True, help="Federated rounds."),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                 help="Seed for data, partition, model init and local batch order (same seed, same numbers)."),
    click.option("--dataset", type=click.Choice(DATASETS), default="synthetic", show_default=True,
                 help="synthetic (built in, no download), spar (real smartwatch data), mhealth, pamap2."),
    click.option("--data-dir", type=click.Path(file_okay=True, dir_okay=True), default=None,
                 help="Folder (or zip) with the dataset's original files; not needed for synthetic."),
    click.option("--modality-by", type=click.Choice(["type", "position"]), default="type", show_default=True,
                 help="Group channels into modalities by sensor type (acc, gyro, ...) or body position."),
    click.option("--alpha", type=click.FloatRange(0, 1e6, min_open=True), default=1.0, show_default=True,
                 help="Dirichlet label-skew concentration across clients (smaller = more skew)."),
    click.option("--downsample", type=POS_INT, default=1, show_default=True,
                 help="Keep every k-th sample (e.g. 2 turns PAMAP2's 100 Hz into 50 Hz)."),
    click.option("--window-s", type=click.FloatRange(0, 600, min_open=True), default=2.56, show_default=True,
                 help="Window length, seconds (0..600)."),
    click.option("--strategy", type=click.Choice(STRATEGIES), default="fedavg", show_default=True,
                 help="Published presets (the authors' RELIEF, design.md section 0; Adam, --local-epochs): "
                      "relief (= relief-fast: T*-elastic budgets, divergence-greedy groups, cohort aggregation), "
                      "relief-acc (no budget), fedavg (whole model, zero-filled sensors, 1/N weights), "
                      "cohort-fedavg, ablation-v2 (FedAvg weights, no mandatory A), ablation-v3 (v2 with random "
                      "groups), b-uniform, b-freeze, b-block. Our own (SGD, --local-steps, sample weights): "
                      "relief-ucb (our first design: UCB allocation under a FLOP deadline), relief-ucb-cohort, "
                      "relief-ucb-random, fedavg-sgd, fedprox, heterofl (--model small). Ours on the published "
                      "recipe (Adam, --local-epochs): fedavg-fair (sample weights; a client never updates the "
                      "groups or BatchNorm statistics of a sensor it lacks), skip-absent (fedavg-fair, absent "
                      "encoders not run), fedavg-deadline (fedavg-fair under RELIEF's budget as fewer steps), "
                      "fixed-order (RELIEF's budget, groups least recently trained first)."),
    click.option("--model", "model_name", type=click.Choice(MODELS), default="paper", show_default=True,
                 help="paper: the authors' Conv-BN encoders (64, 128), rank-rho factored fusion, head 128-64-C; "
                      "small: our first version's smaller CNN (needed by heterofl and --groups-per-modality)."),
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
                 help="Published presets: local epochs over the client's windows per round."),
    click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True,
                 help="Local batch size (1..4096; a client with fewer windows uses them all)."),
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
                      "communication time T_o); contains-overhead: our correction, [T_o + 0.5 min tau, "
                      "T_o + 2 max tau max|G_n|] (docs/design.md)."),
    click.option("--cost-model", type=click.Choice(COST_MODELS), default="published", show_default=True,
                 help="Analytic cost model behind T* and the budgets (docs/design.md). published: a round "
                      "computes |S_n| x the mean group time and downloads the whole model; flops (ours): the "
                      "measured FLOPs of what the round runs (forward of every encoder run, backward of what "
                      "trains) and only the groups the client needs downloaded."),
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
                      "three tiers (high: all sensors, mid, low: accelerometer only). See `relief-mpi fleet show`."),
    click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False), default=None,
                 help="Extra device profile folder (*.toml) on top of the shipped ones."),
    click.option("--clock", type=click.Choice(CLOCKS), default="virtual", show_default=True,
                 help="virtual: emulated times computed, no sleeping (fast); real: clients sleep so each "
                      "step and transfer lasts as long as on the emulated device."),
    click.option("--eval-every", type=POS_INT, default=1, show_default=True,
                 help="Evaluate the global model every K rounds (and after the last)."),
]


_DATA_NAMES = ("--dataset", "--data-dir", "--modality-by", "--alpha", "--window-s", "--downsample")
_MODEL_NAMES = ("--model", "--rho", "--b-mode")
_PRETRAIN_NAMES = ("--pretrain-epochs", "--pretrain-lr", "--pretrain-optimizer")


def _add_common(cmd: click.Command, names: tuple[str, ...]) -> click.Command:
    for opt in COMMON:
        param = opt(click.Command("probe")).params[0]
        if param.opts[0] in names:
            cmd.params.append(param)
    return cmd


def DATA_OPTIONS(cmd: click.Command) -> click.Command:  # noqa: N802 - used like a decorator
    """Add the data options of COMMON (the same definitions train uses) to a command."""
    return _add_common(cmd, _DATA_NAMES)


def MODEL_OPTIONS(cmd: click.Command) -> click.Command:  # noqa: N802 - used like a decorator
    """Add the model-shape options of COMMON (--model, --rho, --b-mode) to a command."""
    return _add_common(cmd, _MODEL_NAMES)


def PRETRAIN_OPTIONS(cmd: click.Command) -> click.Command:  # noqa: N802 - used like a decorator
    """Add the LoRA base's training options of COMMON (--pretrain-epochs, -lr, -optimizer) to a command."""
    return _add_common(cmd, _PRETRAIN_NAMES)


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    from relief_mpi.cli.config import config_option

    for opt in reversed(COMMON):
        f = opt(f)
    return config_option(f)


def build_config(kw: dict[str, Any]) -> RunConfig:
    """The frozen RunConfig for the parsed options (raises ReliefError on inconsistent ones).
    Ranges are checked where options are parsed (click ranges, said in --help); NaN passes a
    click range, so finite-ness is checked here once."""
    for key in ("lr", "alpha", "window_s", "mu", "beta", "lam", "gamma", "momentum", "pretrain_lr"):
        v = kw.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            raise ReliefError(f"--{key.replace('_', '-')} {v}: must be a finite number")
    if kw["dataset"] != "synthetic" and kw.get("data_dir") is None:
        raise ReliefError(f"--dataset {kw['dataset']} needs --data-dir (the folder with its original files)")
    if kw["mode"] != "lora" and kw.get("base"):
        raise ReliefError("--base is only used with --mode lora")
    model_name = kw.get("model_name", "paper")
    b_mode = "block" if kw["strategy"] == "b-block" else kw.get("b_mode", "shared")
    if kw["strategy"] == "heterofl" and model_name != "small":
        raise ReliefError("--strategy heterofl scales the small model's layer widths: add --model small")
    lr = kw.get("lr")
    if lr is None:
        lr = 1e-3 if kw["strategy"] in ADAM_STRATEGIES else 0.05
    from relief_mpi.cli.config import with_settings

    return with_settings(RunConfig(
        rounds=kw["rounds"], seed=kw["seed"], eval_every=kw["eval_every"],
        checkpoint_every=kw.get("checkpoint_every", 0) or 0,
        data=DataConfig(dataset=kw["dataset"], data_dir=kw.get("data_dir"), modality_by=kw["modality_by"],
                        alpha=kw["alpha"], window_s=kw["window_s"], downsample=kw.get("downsample", 1)),
        model=ModelConfig(mode=kw["mode"], base=kw.get("base"), groups_per_modality=kw["groups_per_modality"],
                          model=model_name, rho=kw.get("rho", 8), b_mode=b_mode,
                          pretrain_epochs=kw.get("pretrain_epochs", 10), pretrain_lr=kw.get("pretrain_lr", 1e-3),
                          pretrain_optimizer=kw.get("pretrain_optimizer", "adam")),
        strategy=StrategyConfig(name=kw["strategy"], local_steps=kw["local_steps"], batch_size=kw["batch_size"],
                                lr=lr, momentum=kw["momentum"], mu=kw["mu"], deadline=kw["deadline"],
                                beta=kw["beta"], local_epochs=kw.get("local_epochs", 5), lam=kw.get("lam"),
                                gamma=kw.get("gamma", 0.9), t_star_bracket=kw.get("t_star_bracket", "published"),
                                cost_model=kw.get("cost_model", "published")),
        device=DeviceConfig(fleet=kw.get("fleet"), profiles_dir=kw.get("profiles_dir"), clock=kw["clock"]),
    ), kw.get("config"))  # a --config file's settings without an option (cli/config.py)


# CLI parameter -> dotted RunConfig key (used to name what a resumed run would change).
PARAM_KEYS = {
    "rounds": "rounds", "seed": "seed", "eval_every": "eval_every", "checkpoint_every": "checkpoint_every",
    "dataset": "data.dataset", "data_dir": "data.data_dir", "modality_by": "data.modality_by", "alpha": "data.alpha",
    "window_s": "data.window_s", "downsample": "data.downsample", "mode": "model.mode", "base": "model.base",
    "groups_per_modality": "model.groups_per_modality", "strategy": "strategy.name",
    "model_name": "model.model", "rho": "model.rho", "b_mode": "model.b_mode", "local_epochs": "strategy.local_epochs",
    "lam": "strategy.lam", "gamma": "strategy.gamma", "t_star_bracket": "strategy.t_star_bracket",
    "cost_model": "strategy.cost_model", "pretrain_epochs": "model.pretrain_epochs",
    "pretrain_lr": "model.pretrain_lr", "pretrain_optimizer": "model.pretrain_optimizer",
    "local_steps": "strategy.local_steps", "batch_size": "strategy.batch_size", "lr": "strategy.lr",
    "momentum": "strategy.momentum", "mu": "strategy.mu", "deadline": "strategy.deadline", "beta": "strategy.beta",
    "fleet": "device.fleet", "profiles_dir": "device.profiles_dir", "clock": "device.clock",
}


def check_strategy_names(names: list[str]) -> None:
    bad = [n for n in names if n not in STRATEGIES]
    if bad:
        raise ReliefError(f"unknown strategy {bad[0]!r}; choose from {', '.join(STRATEGIES)}")
