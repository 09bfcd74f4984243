"""The lr search's validation split: hand-computed carve, and a view that never touches the test set."""

from __future__ import annotations

import dataclasses

import numpy as np

from relief_mpi.config import DataConfig, DeviceConfig, RunConfig, StrategyConfig
from relief_mpi.data.base import WindowSet
from relief_mpi.data.protocol import paper_data_config
from relief_mpi.run_setup import build_setup
from relief_mpi.validation import carve
from tests.data.layouts import write_mhealth


def test_carve_takes_each_labels_last_windows_and_drops_overlapping_ones():
    # one recording, window length 25: class 0 at starts 0..90, class 1 at 100..190 (step 10)
    start = np.arange(0, 200, 10)
    y = (start >= 100).astype(np.int64)
    ws = WindowSet(np.zeros((20, 1, 25), np.float32), y, np.zeros(20, np.int64), np.zeros(20, np.int64), start)
    tr, va = carve(ws, 0.2, 25)
    assert start[va].tolist() == [80, 90, 180, 190]  # the last 20% (2 of 10) of each label
    # a training window survives only 25 samples away from every validation start:
    # 60, 70 (near 80), 100, 110 (near 90) and 160, 170 (near 180) go
    assert start[tr].tolist() == [0, 10, 20, 30, 40, 50, 120, 130, 140, 150]


def test_validation_view_replaces_the_test_sets_and_never_reads_them(tmp_path):
    write_mhealth(tmp_path, (1, 2, 3))
    data = paper_data_config(DataConfig(dataset="mhealth", data_dir=str(tmp_path)))
    cfg = RunConfig(rounds=1, data=data, device=DeviceConfig(fleet="paper"), strategy=StrategyConfig(lr=1e-3))
    plain = build_setup(cfg, 3).data
    val = build_setup(dataclasses.replace(cfg, data=dataclasses.replace(data, validation=0.2)), 3).data
    length = plain.window_len

    def spans(ws: WindowSet) -> set[tuple[int, int]]:
        return set(zip(ws.rec.tolist(), ws.start.tolist(), strict=True))

    test = set().union(*(spans(ws) for ws in plain.clients_test))
    assert val.fingerprint != plain.fingerprint
    for k in range(3):
        tr, va = val.clients_train[k], val.clients_test[k]
        assert len(va) > 0 and len(tr) > 0
        assert spans(va) <= spans(plain.clients_train[k])  # carved from the training windows
        assert not (spans(va) | spans(tr)) & test  # the reported test windows are never used
        for rec, s in spans(va):  # no validation window shares a sample with a training window
            assert all(r != rec or abs(s - t) >= length for r, t in spans(tr))
        np.testing.assert_array_equal(va.x, plain.clients_train[k].take(
            np.flatnonzero(np.isin(plain.clients_train[k].start, va.start)
                           & np.isin(plain.clients_train[k].rec, va.rec))).x)  # own sensors, zeroed as trained
    pooled = val.pooled_test
    assert spans(pooled) == set().union(*(spans(ws) for ws in val.clients_test))
    acc_only = next(k for k, s in enumerate(val.modality_sets) if s == ("acc",))
    mine = np.isin(pooled.subject, val.client_subjects[acc_only])
    mag = list(next(m for m in val.spec.modalities if m.name == "mag").channels)
    assert np.abs(val.clients_test[acc_only].x[:, mag]).sum() == 0  # the client's own view lacks mag
    assert np.abs(pooled.x[mine][:, mag]).sum() > 0  # the pooled view has every sensor
