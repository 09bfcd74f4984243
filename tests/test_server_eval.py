"""The server's evaluation (pooled full-modality set as published, ours per client, each tier's
sensors on the pooled set, per-class F1) against direct model calls and a NumPy confusion matrix,
and what one round writes to the log (per-class F1, per-tier analytic vs emulated round time)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from relief_mpi.config import DataConfig, DeviceConfig, RunConfig, StrategyConfig
from relief_mpi.data.protocol import paper_data_config
from relief_mpi.evaluation import evaluate
from relief_mpi.log.hdf5 import read_log
from relief_mpi.run import run_inprocess
from relief_mpi.run_setup import build_setup
from tests.data.layouts import write_mhealth


def _cfg(root, strategy: str, rounds: int = 1) -> RunConfig:
    data = paper_data_config(DataConfig(dataset="mhealth", data_dir=str(root)))
    return RunConfig(rounds=rounds, seed=3, data=data, device=DeviceConfig(fleet="paper"),
                     strategy=StrategyConfig(name=strategy, lr=1e-3, local_epochs=1))


def _f1_by_confusion(y: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """Independent per-class F1 (NaN: class in neither y nor p) from a confusion matrix."""
    cm = np.zeros((n, n))
    np.add.at(cm, (y, p), 1)
    tp, row, col = np.diag(cm), cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(row + col > 0, 2 * tp / (row + col), np.nan)


def _direct(model, spec, x: np.ndarray, keep: frozenset[int], zero_fill: bool) -> np.ndarray:
    """The model's labels with only the modalities in `keep`, called directly."""
    x = torch.from_numpy(x.copy())
    inputs = []
    for m, mod in enumerate(spec.modalities):
        if m in keep:
            inputs.append(x[:, list(mod.channels), :])
        elif zero_fill:
            inputs.append(torch.zeros_like(x[:, list(mod.channels), :]))
        else:
            inputs.append(None)
    with torch.no_grad():
        return model(inputs).argmax(1).numpy()


@pytest.fixture(scope="module")
def mhealth(tmp_path_factory):
    root = tmp_path_factory.mktemp("mh")
    write_mhealth(root, (1, 2, 3))
    return root


@pytest.mark.parametrize("strategy", ["fedavg", "relief-ucb"])  # zero-filled sensors / absent encoders skipped
def test_evaluation_matches_direct_calls(mhealth, strategy):
    setup = build_setup(_cfg(mhealth, strategy), 3)
    model = setup.make_model()
    torch.manual_seed(1)
    with torch.no_grad():  # a model that predicts more than one class
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.eval()
    data, spec = setup.data, setup.data.spec
    n = len(spec.classes)
    zf = setup.strategy.zero_fill
    every = frozenset(range(len(spec.modalities)))
    ev = evaluate(setup, model)

    pooled = data.pooled_test
    p_all = _direct(model, spec, pooled.x, every, zf)
    pc = _f1_by_confusion(pooled.y, p_all, n)
    assert ev.class_f1 == pytest.approx(pc, nan_ok=True)
    assert ev.macro_f1 == pytest.approx(np.nan_to_num(pc).mean())  # the authors': every class, absent = 0
    assert ev.pooled_accuracy == pytest.approx(np.mean(p_all == pooled.y))

    # ours: each client's own (zeroed) test windows with its own sensors
    ys, ps = [], []
    for k, ws in enumerate(data.clients_test):
        ys.append(ws.y)
        ps.append(_direct(model, spec, ws.x, every if zf else setup.client_modalities(k), zf))
    y, p = np.concatenate(ys), np.concatenate(ps)
    own = _f1_by_confusion(y, p, n)
    assert ev.own_macro_f1 == pytest.approx(np.nanmean(own))
    assert ev.own_accuracy == pytest.approx(np.mean(y == p))

    # each tier's sensors on the pooled set; the tiers of the paper fleet on 3 subjects: one each
    assert sorted(ev.tier_pooled_f1) == ["acc_gyro", "acc_only", "full"]
    for k, d in enumerate(setup.devices):
        keep = setup.client_modalities(k)
        x = pooled.x.copy()
        drop = [c for m, mod in enumerate(spec.modalities) if m not in keep for c in mod.channels]
        x[:, drop, :] = 0.0
        pt = _direct(model, spec, x, every if zf else keep, zf)
        assert ev.tier_pooled_f1[d.tier] == pytest.approx(np.nan_to_num(_f1_by_confusion(pooled.y, pt, n)).mean())
    assert ev.tier_pooled_f1["full"] == pytest.approx(ev.pooled_macro_f1)


def test_round_log_holds_class_f1_and_tier_times(mhealth, tmp_path):
    out = tmp_path / "r.h5"
    run_inprocess(_cfg(mhealth, "relief", rounds=2), 3, out)
    log = read_log(out)
    n_classes = len(log.class_names)
    assert log.class_names == [str(c) for c in log.class_names] and n_classes == 12
    assert log.class_f1.shape == (2, n_classes)
    # the headline is the pooled set, its macro-F1 the mean of the logged per-class F1 (absent = 0)
    assert log.rounds["macro_f1"] == pytest.approx(np.nan_to_num(log.class_f1).mean(axis=1))
    assert log.rounds["pooled_macro_f1"] == pytest.approx(log.rounds["macro_f1"])
    assert np.all(np.isfinite(log.rounds["own_macro_f1"]))
    tiers = np.array([p["tier"] for p in log.profiles])
    c = log.clients
    span = c["download_s"] + c["busy_s"] + c["upload_s"]
    for j, t in enumerate(log.tier_names):
        assert log.tier_arrays["time_s"][:, j] == pytest.approx(span[:, tiers == t].max(axis=1))
        assert log.tier_arrays["analytic_time_s"][:, j] == pytest.approx(
            c["analytic_time_s"][:, tiers == t].max(axis=1))
    # the round's analytic time is the slowest tier's
    assert log.rounds["analytic_time_s"] == pytest.approx(log.tier_arrays["analytic_time_s"].max(axis=1))
    assert log.tier_arrays["pooled_f1"].shape == (2, len(log.tier_names))


def test_dirichlet_run_has_no_pooled_metrics(mhealth, tmp_path):
    cfg = RunConfig(rounds=1, strategy=StrategyConfig(name="fedavg", lr=1e-3, local_epochs=1),
                    data=DataConfig(dataset="mhealth", data_dir=str(mhealth), window_s=1.0))  # ours, Dirichlet
    out = tmp_path / "d.h5"
    run_inprocess(cfg, 3, out)
    r = read_log(out).rounds
    assert math.isnan(r["pooled_macro_f1"][0])
    assert r["macro_f1"][0] == pytest.approx(r["own_macro_f1"][0])  # no pooled set: the headline is ours


def test_real_clock_logs_measured_next_to_analytic_per_tier(mhealth, tmp_path):
    from relief_mpi.log.report import tier_times

    cfg = _cfg(mhealth, "fedavg")
    cfg = dataclasses.replace(cfg, device=dataclasses.replace(cfg.device, clock="real"))
    out = tmp_path / "real.h5"
    run_inprocess(cfg, 3, out)
    log = read_log(out)
    c = log.clients
    measured = c["download_s"] + c["busy_s"] + c["upload_s"]  # slept and timed by each client
    tiers = np.array([p["tier"] for p in log.profiles])
    for j, t in enumerate(log.tier_names):
        assert log.tier_arrays["time_s"][0, j] == pytest.approx(measured[0, tiers == t].max())
    # the links are slept for as long as the profile says, so a measured time is at least its transfers
    assert np.all(log.tier_arrays["time_s"] >= (c["download_s"] + c["upload_s"]).min())
    lines = tier_times(log)
    assert "measured" in lines[1]
    row = next(line for line in lines if line.startswith("acc_only"))
    j = log.tier_names.index("acc_only")
    ana, meas = log.tier_arrays["analytic_time_s"][0, j], log.tier_arrays["time_s"][0, j]
    assert f"{100 * (ana - meas) / meas:+.1f}%" in row  # the analytic model's error, as a number
