"""The paper's preprocessing on small files in the exact MHEALTH and PAMAP2 layouts, checked
against numbers worked out by hand (window starts and majority labels) and an independent
NumPy recomputation (decimation, forward-fill, per-subject z-score); the device type of every
sorted subject; the splits."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.protocol import device_modalities, paper_data_config, paper_device_types
from relief_mpi.data.registry import build_federated, load_raw
from relief_mpi.device.fleet import paper_fleet
from relief_mpi.device.profiles import load_profiles
from tests.data.layouts import pamap2_table, pamap2_text, write_mhealth

# MHEALTH, 50 Hz, label column: null 0 for 150 rows, activity 2 for 300, null for 250, activity 7 for 300.
MH = [0] * 150 + [2] * 300 + [0] * 250 + [7] * 300  # 1000 rows
# Windows of 256 samples start at 0, 50, ..., 700 (the last start <= 1000 - 256 = 744). By hand:
#   start   0: 150 null + 106 of act 2  -> null: dropped
#   start  50: 100 null + 156 of act 2  -> act 2 (class 1); 100: 50 + 206 -> class 1
#   start 150..200: only act 2; 250: 200 act 2 + 56 null; 300: 150 act 2 + 106 null -> class 1
#   start 350: 100 act 2 + 156 null; 400: 50 + 206 null; 450: 250 null + 6 of act 7 -> dropped
#   start 500: 200 null + 56 act 7; 550: 150 null + 106 act 7 -> dropped
#   start 600: 100 null + 156 act 7; 650: 50 + 206; 700: only act 7 -> act 7 (class 6)
MH_WINDOWS = [(50, 1), (100, 1), (150, 1), (200, 1), (250, 1), (300, 1), (600, 6), (650, 6), (700, 6)]

# PAMAP2, 100 Hz: transient (id 0) 300 rows, walking (id 4) 800, computer work (id 10, an optional
# activity: dropped like a transient) 500, rope jumping (id 24) 400. Every second row is kept: at
# 50 Hz that is 150 transient, 400 walking, 250 optional, 200 rope jumping (1000 samples).
PA = [0] * 300 + [4] * 800 + [10] * 500 + [24] * 400  # 2000 rows
#   start   0: 150 transient + 106 walking -> dropped; 50: 100 + 156 walking -> walking (class 3)
#   start 100..250: walking; 300: 250 walking + 6 optional; 350: 200 + 56; 400: 150 + 106 -> class 3
#   start 450: 100 walking + 156 optional; 500: 50 + 206; 550: 250 optional + 6 rope; 600: 200 + 56;
#   650: 150 optional + 106 rope -> dropped
#   start 700: 100 optional + 156 rope jumping -> rope jumping (class 11)
PA_WINDOWS = [(s, 3) for s in range(50, 401, 50)] + [(700, 11)]
ANKLE_GAP = (500, 700)  # 100 Hz rows where the whole ankle IMU is NaN (2 s: ours drops it, the paper fills it)


def ffill_then_zscore(x: np.ndarray) -> np.ndarray:
    """The reference: per column, NaNs take the last valid value (leading ones the first valid
    value), then (x - mean) / (std + 1e-6) over the whole column (population std)."""
    x = np.array(x, np.float64)
    for j in range(x.shape[1]):
        col = x[:, j]
        valid = np.flatnonzero(~np.isnan(col))
        last = col[valid[0]]
        for i in range(len(col)):
            if np.isnan(col[i]):
                col[i] = last
            else:
                last = col[i]
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6)


def windows_of(fd, subject: int) -> list[tuple[int, int]]:
    """(start, class) of every window of `subject`, training and test together, sorted."""
    sets = [*fd.clients_train, fd.pooled_test]
    return sorted((int(s), int(y)) for ws in sets for s, y, j in zip(ws.start, ws.y, ws.subject, strict=True)
                  if j == subject)


def test_mhealth_paper_windows_labels_and_zscore(tmp_path: Path) -> None:
    tables = write_mhealth(tmp_path, subjects=(1, 2), labels=MH)
    cfg = paper_data_config(DataConfig(dataset="mhealth", data_dir=str(tmp_path)))
    assert (cfg.window, cfg.stride, cfg.partition, cfg.split, cfg.downsample) == \
        (256, 50, "subject", "paper", 1)
    fd = build_federated(cfg, 0, [("acc", "gyro", "mag", "ecg"), ("acc",)], load_raw(cfg, 0))
    assert fd.client_subjects == (1, 2) and fd.window_len == 256
    for k, s in enumerate((1, 2)):
        assert windows_of(fd, s) == MH_WINDOWS
        # the paper split: round(0.2 * 9) = 2 random windows of each subject go to the pooled test set
        assert len(fd.clients_train[k]) == 7 and int((fd.pooled_test.subject == s).sum()) == 2
        ref = ffill_then_zscore(tables[s][:, :23])  # z-score over the whole recording, null rows included
        for ws in (fd.clients_train[k], fd.pooled_test):
            mine = ws.subject == s
            want = np.stack([ref[a:a + 256].T for a in ws.start[mine]])
            got = ws.x[mine]
            if ws is fd.clients_train[k] and k == 1:  # an acc_only client: every other channel is zero
                acc = [0, 1, 2, 5, 6, 7, 14, 15, 16]
                assert not np.delete(got, acc, axis=1).any()
                got, want = got[:, acc], want[:, acc]
            np.testing.assert_allclose(got, want, atol=2e-5)
    # the pooled test set keeps every modality, also of the acc_only client's subject
    assert np.abs(fd.pooled_test.x[fd.pooled_test.subject == 2][:, 3:5]).sum() > 0


def test_pamap2_paper_decimation_ffill_and_subjects(tmp_path: Path) -> None:
    d = tmp_path / "PAMAP2_Dataset" / "Protocol"
    d.mkdir(parents=True)
    tables = {}
    for s in (101, 102, 109):
        t = pamap2_table(s, PA)  # heart rate every 11th row, NaN in between; a 5-row hand-acc gap at rows 300-305
        t[ANKLE_GAP[0]:ANKLE_GAP[1], 37:54] = np.nan
        (d / f"subject{s}.dat").write_text(pamap2_text(t))
        tables[s] = t
    cfg = paper_data_config(DataConfig(dataset="pamap2", data_dir=str(tmp_path)))
    assert cfg.downsample == 2
    raw = load_raw(cfg, 0)
    assert raw.spec.n_channels == 28 and raw.spec.sample_rate_hz == 50
    assert {m.name: len(m.channels) for m in raw.spec.modalities} == {"acc": 9, "gyro": 9, "mag": 9, "hr": 1}
    fd = build_federated(cfg, 0, [("acc", "gyro", "mag", "hr")] * 2, raw)
    assert fd.client_subjects == (101, 102)  # 109 left out, as the authors did
    assert any("subject109.dat left out" in n for n in fd.notes)
    cols = [2] + [b + o + i for b in (3, 20, 37) for o in (1, 7, 10) for i in range(3)]  # hr, then acc16g/gyro/mag
    for k, s in enumerate((101, 102)):
        assert windows_of(fd, s) == PA_WINDOWS
        ref = ffill_then_zscore(tables[s][::2][:, cols])  # every second row (100 -> 50 Hz), then fill, z-score
        ws = fd.clients_train[k]
        np.testing.assert_allclose(ws.x, np.stack([ref[a:a + 256].T for a in ws.start]), atol=2e-5)
        assert np.isfinite(ws.x).all()
    # the ankle gap (50 Hz samples 250-349) lies inside kept windows: filled, not dropped as under protocol ours
    assert any(a <= 250 and a + 256 >= 350 for a, _ in PA_WINDOWS)
    ours = load_raw(DataConfig(dataset="pamap2", data_dir=str(tmp_path)), 0)
    assert (ours.recordings[0].labels[ANKLE_GAP[0]:ANKLE_GAP[1]] == -1).all()


def test_split_time_and_subject_keep_the_rest_of_the_protocol(tmp_path: Path) -> None:
    # two 1500-sample activities: the last 20% of each (300 samples) holds one 256-sample test window
    write_mhealth(tmp_path, subjects=tuple(range(1, 11)), labels=[0] * 100 + [1] * 1500 + [0] * 50 + [4] * 1500)
    base = paper_data_config(DataConfig(dataset="mhealth", data_dir=str(tmp_path)))
    raw = load_raw(base, 0)
    full = ("acc", "gyro", "mag", "ecg")
    timed = build_federated(replace(base, split="time"), 0, [full] * 10, raw)
    for ws_tr, s in zip(timed.clients_train, timed.client_subjects, strict=True):
        te = timed.pooled_test.start[timed.pooled_test.subject == s]
        assert sorted(te.tolist()) == [1300, 2850]  # cut at 100 + 0.8 * 1500 and 1650 + 0.8 * 1500
        for a in ws_tr.start:  # no training window shares a sample with a test window of its subject
            assert np.all((te >= a + 256) | (te + 256 <= a))
    held = build_federated(replace(base, split="subject", test_subjects=3), 4, [full] * 7, raw)
    test_subjects = sorted(set(held.pooled_test.subject.tolist()))
    assert len(test_subjects) == 3 and not set(test_subjects) & set(held.client_subjects)
    assert len(held.client_subjects) == 7 and all(len(c) == 0 for c in held.clients_test)
    n_windows = len(timed.pooled_test) + sum(len(c) for c in timed.clients_train)
    assert len(held.pooled_test) + sum(len(c) for c in held.clients_train) > n_windows  # no time cut here


def test_device_types_by_sorted_subject() -> None:
    table = {"mhealth": (10, ["full"] * 3 + ["acc_gyro"] * 3 + ["acc_only"] * 4),
             "pamap2": (8, ["full"] * 3 + ["acc_gyro"] * 3 + ["acc_only"] * 2),
             "spar": (10, ["full"] * 5 + ["acc_only"] * 5)}
    profiles = load_profiles(None)
    for dataset, (n, want) in table.items():
        assert paper_device_types(dataset, n) == want
        assert [d.tier for d in paper_fleet(dataset, n, profiles)] == want  # what a run's --fleet paper gives
    assert device_modalities("full", ("acc", "gyro")) == ("acc", "gyro")  # SPAR: gyro is the rare modality
    assert device_modalities("acc_only", ("acc", "gyro")) == ("acc",)
    assert device_modalities("acc_gyro", ("acc", "gyro", "mag", "hr")) == ("acc", "gyro")


def _rows(out: str) -> dict[int, list[str]]:
    return {int(m.group(1)): ln.split() for ln in out.splitlines() if (m := re.match(r"^\s+(\d+)\s+(\d+|-)\s", ln))}


def test_data_info_paper_shows_map_classes_windows_and_devices(tmp_path: Path, relief) -> None:  # noqa: ANN001
    write_mhealth(tmp_path, subjects=tuple(range(1, 11)), labels=MH)
    code, out, err = relief(["data", "info", "--dataset", "mhealth", "--data-dir", str(tmp_path),
                             "--protocol", "paper"])
    assert code == 0, err
    assert "classes (12): 0 standing, 1 sitting" in out and "11 jump-front-back" in out
    assert "window: 256 samples (5.12 s), hop 50 (80% overlap)" in out
    assert re.search(r"acc\s+9 ch, file columns 0-2, 5-7, 14-16: chest_acc_x", out)
    assert re.search(r"gyro\s+6 ch, file columns 8-10, 17-19:", out)
    assert re.search(r"mag\s+6 ch, file columns 11-13, 20-22:", out)
    assert re.search(r"ecg\s+2 ch, file columns 3-4: ecg_1, ecg_2", out)
    rows = _rows(out)
    assert sorted(rows) == list(range(1, 11))  # numeric order: subject 10 last, not after 1
    want = ["full"] * 3 + ["acc_gyro"] * 3 + ["acc_only"] * 4
    for s in range(1, 11):
        subject, client, rank, device, _, mods, train, test = rows[s][:8]
        assert (int(client), device) == (s - 1, want[s - 1])
        assert (int(train), int(test)) == (7, 2)  # 9 windows per subject, 2 of them test
    assert rows[10][5] == "acc" and rows[1][5] == "acc,gyro,mag,ecg"
    assert "devices: full 3, acc_gyro 3, acc_only 4" in out and "pooled test set: 20 windows" in out
