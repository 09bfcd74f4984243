"""Hand-made round logs for the bench tests, written with the real RoundLogWriter."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig, RunConfig, StrategyConfig
from relief_mpi.data.protocol import paper_data_config
from relief_mpi.log.hdf5 import CLIENT_METRICS, RoundLogWriter, RoundRecord

TIERS = ("high", "low")


def write_log(path: Path, strategy: str, seed: int, f1: Sequence[float], *, rare: Sequence[float] | None = None,
              round_s: float = 10.0, wall_s: float = 1.0, energy: float = 5.0, bytes_up: float = 1e6,
              bytes_down: float = 2e6, lr: float = 0.05, compute: Sequence[float] = (0.1, 0.3)) -> Path:
    """A 2-client log: round r has macro-F1 f1[r-1] (NaN = not evaluated), fixed per-round time,
    energy and bytes, so every expected number is simple arithmetic."""
    cfg = RunConfig(rounds=len(f1), seed=seed, strategy=StrategyConfig(name=strategy, lr=lr))
    profiles = [{"client": k, "rank": k + 1, "tier": TIERS[k], "profile": f"p{k}", "modalities": ["acc"]}
                for k in range(2)]
    attrs = {"config": cfg.to_json(), "strategy": strategy, "dataset": "synthetic",
             "profiles": json.dumps(profiles), "rare_modality": "ecg", "clock": "virtual"}
    w = RoundLogWriter(path, attrs, 2, ["shared", "acc"], list(TIERS))
    rare = rare if rare is not None else f1
    for i, v in enumerate(f1):
        clients = {name: np.zeros(2) for name in CLIENT_METRICS}
        clients["energy_j"] = np.array([energy * 0.75, energy * 0.25])
        clients["compute_wall_s"] = np.array(compute, float)
        row = {"round": i + 1, "wall_time_s": wall_s, "wall_elapsed_s": wall_s * (i + 1),
               "virtual_time_s": round_s, "virtual_elapsed_s": round_s * (i + 1), "accuracy": v,
               "macro_f1": v, "rare_f1": rare[i], "bytes_up": bytes_up, "bytes_down": bytes_down,
               "energy_j": energy, "rejected": 0}
        w.append(RoundRecord(row, clients, np.zeros(2), np.ones((2, 2), np.uint8), np.array([v, v])))
    w.close()
    return path


PAPER_TIERS = ("full", "acc_only")
CLASSES = ("a", "b", "c")


def write_paper_log(path: Path, strategy: str, seed: int, f1: Sequence[float], final_class_f1: Sequence[float], *,
                    analytic_s: float = 2.0, analytic_j: float = 10.0, mb_up: float = 2.0,
                    trained: Sequence[float] | None = None, tier_pooled: Sequence[float] = (0.5, 0.5),
                    round_s: float = 1.0, energy: float = 5.0) -> Path:
    """A 2-client log of the paper's protocol: round r has pooled macro-F1 f1[r-1], fixed analytic
    round time / energy / MB up, per-class F1 `final_class_f1` in every round (3 classes) and final
    per-tier pooled F1 `tier_pooled`, so every expected number is simple arithmetic."""
    data = paper_data_config(DataConfig(dataset="mhealth", data_dir="unused"))
    cfg = RunConfig(rounds=len(f1), seed=seed, data=data, strategy=StrategyConfig(name=strategy, lr=1e-3))
    profiles = [{"client": k, "rank": k + 1, "tier": PAPER_TIERS[k], "profile": f"p{k}", "modalities": ["acc"]}
                for k in range(2)]
    attrs = {"config": cfg.to_json(), "strategy": strategy, "dataset": "mhealth", "profiles": json.dumps(profiles),
             "rare_modality": "mag", "clock": "virtual", "classes": json.dumps(list(CLASSES))}
    w = RoundLogWriter(path, attrs, 2, ["A.acc", "B"], list(PAPER_TIERS))
    trained = trained if trained is not None else [100.0] * len(f1)
    for i, v in enumerate(f1):
        clients = {name: np.zeros(2) for name in CLIENT_METRICS}
        clients["n_groups"] = np.array([2.0, 1.0])
        row = {"round": i + 1, "wall_time_s": 1.0, "wall_elapsed_s": i + 1.0, "virtual_time_s": round_s,
               "virtual_elapsed_s": round_s * (i + 1), "accuracy": v, "macro_f1": v, "rare_f1": v,
               "own_macro_f1": v - 0.1, "pooled_macro_f1": v, "energy_j": energy, "bytes_up": 1e6,
               "analytic_time_s": analytic_s, "analytic_elapsed_s": analytic_s * (i + 1),
               "analytic_energy_j": analytic_j, "analytic_energy_cum_j": analytic_j * (i + 1),
               "analytic_mb_up": mb_up, "trained_pct": trained[i], "rejected": 0}
        last = i == len(f1) - 1
        w.append(RoundRecord(row, clients, np.zeros(2), np.ones((2, 2), np.uint8), np.array([v, v]),
                             class_f1=np.asarray(final_class_f1, float),
                             tier_pooled_f1=np.asarray(tier_pooled if last else (v, v), float)))
    w.close()
    return path
