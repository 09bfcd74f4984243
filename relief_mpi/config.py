"""Frozen run configuration: everything that decides a run's numbers, serialisable as JSON.

The CLI builds one RunConfig, every rank builds the same one from the same argv, and the log
stores it as JSON so a run can be compared, resumed or reproduced.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "BMode", "B_MODES", "CLOCKS", "COST_MODELS", "Clock", "CostModelName", "DATASETS", "DataConfig",
    "DEVICES", "Device", "DeviceConfig", "MODELS", "MODES", "Mode", "ModelConfig", "ModelName",
    "PRETRAIN_OPTIMIZERS", "PretrainOptimizer", "RNG_STREAMS", "RngStream", "RunConfig", "StrategyConfig",
    "TStarBracket", "T_STAR_BRACKETS", "flatten"
]


# Strategy names, recipes and checks: relief_mpi/strategy/catalogue.py.
Mode = Literal["cnn", "lora"]
ModelName = Literal["paper", "small"]
BMode = Literal["shared", "block"]
TStarBracket = Literal["published", "contains-overhead", "widened"]
CostModelName = Literal["published", "flops"]
PretrainOptimizer = Literal["adam", "sgd"]
Clock = Literal["virtual", "real"]
RngStream = Literal["ours", "authors"]  # a client's batch order and dropout (relief_mpi/rng.py)
Device = Literal["auto", "cpu", "cuda"]
MODELS: tuple[ModelName, ...] = get_args(ModelName)
B_MODES: tuple[BMode, ...] = get_args(BMode)
T_STAR_BRACKETS: tuple[TStarBracket, ...] = get_args(TStarBracket)
COST_MODELS: tuple[CostModelName, ...] = get_args(CostModelName)
PRETRAIN_OPTIMIZERS: tuple[PretrainOptimizer, ...] = get_args(PretrainOptimizer)
DATASETS = ("synthetic", "spar", "mhealth", "pamap2")
MODES: tuple[Mode, ...] = get_args(Mode)
CLOCKS: tuple[Clock, ...] = get_args(Clock)
RNG_STREAMS: tuple[RngStream, ...] = get_args(RngStream)
DEVICES: tuple[Device, ...] = get_args(Device)  # where ranks train (device/gpu.py)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"
    data_dir: str | None = None
    modality_by: str = "type"  # "type" or "position"
    window_s: float = 2.56
    overlap: float = 0.5
    test_fraction: float = 0.2
    alpha: float = 1.0  # Dirichlet label-skew concentration
    server_fraction: float = 0.1  # share of training windows kept on the server (LoRA pretraining)
    downsample: int = 1
    protocol: str = "ours"  # "ours" (train-only normalisation) or "paper" (the authors' preprocessing)
    partition: str = "dirichlet"  # "dirichlet" (label skew over n clients) or "subject" (one client per subject)
    split: str = "time"  # "time" (last part of each label run), "paper" / "paper-streams" / "file" (random
    # windows: the authors' draw, one stream per subject, a split file's) or "subject" (data/split.py)
    split_file: str = ""  # split=file: a run log or JSON naming each subject's test windows
    window: int = 0  # window length in samples; 0 = from window_s
    stride: int = 0  # window stride in samples; 0 = from overlap
    test_subjects: int = 0  # split=subject: subjects held out; 0 = ~20% of them, at least 1
    # protocol paper's per-subject z-score: "float64" moments (ours) or "float32" (the authors' zscore,
    # set by --rng authors so that run repeats theirs to the last bit; data/preprocess.py)
    zscore_dtype: str = "float64"
    validation: float = 0.0  # > 0: this share of each client's training windows replaces the test sets
    # (relief_mpi/validation.py), so the bench's --lr-grid never chooses on the test set it reports


@dataclass(frozen=True)
class ModelConfig:
    mode: Mode = "cnn"
    model: ModelName = "paper"  # paper: the authors' Conv-BN encoders, factored fusion; small: ours, first version
    rho: int = 8  # paper model: rank of the factored fusion
    b_mode: BMode = "shared"  # paper model: one shared B, or one B per modality ("block")
    encoder_channels: tuple[int, ...] = (64, 128)  # paper model: conv stage widths (the published 64, 128)
    feature_dim: int = 64
    hidden_channels: int = 32
    fusion_dim: int = 128
    lora_rank: int = 8
    lora_alpha: float = 16.0
    groups_per_modality: int = 1
    base: str | None = None  # LoRA base checkpoint; None = pretrain on the server split at start
    pretrain_epochs: int = 10
    pretrain_lr: float = 1e-3  # the base's own optimizer settings, never the clients' --lr
    pretrain_optimizer: PretrainOptimizer = "adam"  # "adam" | "sgd" (momentum 0.9)


@dataclass(frozen=True)
class StrategyConfig:
    """Every strategy's knobs in one flat record: the form every log stores (so old logs load and a
    fixed-seed log's JSON stays the same). Each algorithm's own set is its catalogue entry's params
    dataclass (strategy/catalogue.py, Entry.params_of); a new parameter is a field here and there,
    same name and default (tests/strategy/test_catalogue.py checks they agree)."""

    name: str = "fedavg"
    local_steps: int = 10
    batch_size: int = 32
    lr: float = 1e-3  # the CLI picks 1e-3 for published presets (Adam), 0.05 for our SGD variants
    momentum: float = 0.0
    mu: float = 0.01  # FedProx proximal weight
    deadline: str = "auto"  # "auto", "none" or seconds
    beta: float = 0.5  # UCB exploration weight
    heterofl_widths: tuple[float, ...] = (1.0, 0.5, 0.25)  # per tier, fastest tier first
    local_epochs: int = 5  # published presets: E epochs over the client's windows per round
    lam: float | None = None  # published T* interpolation (None = the preset's: 1, or 0 for relief-acc/fedavg)
    gamma: float = 0.9  # published divergence smoothing: d_bar <- gamma d + (1 - gamma) d_bar
    t_star_bracket: TStarBracket = "published"  # or "contains-overhead" (our correction) or "widened" (the
    # authors' search with hi_mult 1000, 30 steps); docs/design.md
    cost_model: CostModelName = "published"  # or "flops": FLOPs of the groups a round runs, needed groups downloaded


@dataclass(frozen=True)
class DeviceConfig:
    fleet: str | None = None  # fleet file; None = the default three-tier fleet
    profiles_dir: str | None = None
    clock: Clock = "virtual"
    device: Device = "auto"  # --device: auto (CUDA where a rank sees a GPU, else CPU), cpu or cuda


@dataclass(frozen=True)
class RunConfig:
    rounds: int = 20
    seed: int = 0
    rng: RngStream = "ours"  # local batch order and dropout: ours or authors (relief_mpi/rng.py)
    eval_every: int = 1
    checkpoint_every: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        sub = {"data": DataConfig, "model": ModelConfig, "strategy": StrategyConfig, "device": DeviceConfig}
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in sub:
                if k == "data" and v.get("split") == "paper" and "split_file" not in v:
                    v = {**v, "split": "paper-streams"}  # a log from before issue 23: its split=paper drew this
                fields = {f.name for f in dataclasses.fields(sub[k])}
                vals = {kk: (tuple(vv) if isinstance(vv, list) else vv) for kk, vv in v.items() if kk in fields}
                kw[k] = sub[k](**vals)
            elif k in {f.name for f in dataclasses.fields(cls)}:
                kw[k] = v
        return cls(**kw)

    @classmethod
    def from_json(cls, s: str) -> RunConfig:
        return cls.from_dict(json.loads(s))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested config dict to dotted keys (used to name differing keys)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out
