"""The loaders read the exact original layouts (folder, parent folder, zip, nested zip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relief_mpi.config import DataConfig
from relief_mpi.data import mhealth, pamap2, spar
from relief_mpi.data.registry import load_raw
from tests.data.layouts import LONG_GAP, SHORT_GAP, write_mhealth, write_pamap2, zip_folder
from tests.helpers import SPAR_DIR, need_shared


def groups(raw) -> dict[str, tuple[int, ...]]:
    return {m.name: m.channels for m in raw.spec.modalities}


def test_mhealth_shapes_labels_and_groups(tmp_path: Path) -> None:
    tables = write_mhealth(tmp_path)
    raw = mhealth.load(tmp_path, DataConfig(dataset="mhealth"))
    assert [r.subject for r in raw.recordings] == [1, 2, 3]
    assert raw.spec.sample_rate_hz == 50 and len(raw.spec.classes) == 12
    for rec in raw.recordings:
        t = tables[rec.subject]
        assert rec.signals.shape == (len(t), 23) and rec.signals.dtype == np.float32
        np.testing.assert_allclose(rec.signals, t[:, :23], rtol=1e-6)
        want = t[:, 23].astype(int) - 1  # 1..12 -> 0..11, null 0 -> -1
        np.testing.assert_array_equal(rec.labels, want)
        assert set(np.unique(rec.labels)) == {-1, 0, 3, 11}
    assert groups(raw) == {"acc": (0, 1, 2, 5, 6, 7, 14, 15, 16), "gyro": (8, 9, 10, 17, 18, 19),
                           "mag": (11, 12, 13, 20, 21, 22), "ecg": (3, 4)}
    raw_p = mhealth.load(tmp_path, DataConfig(dataset="mhealth", modality_by="position"))
    assert groups(raw_p) == {"chest": (0, 1, 2, 3, 4), "ankle": tuple(range(5, 14)), "arm": tuple(range(14, 23))}


def test_mhealth_folder_parent_zip_and_nested_zip_agree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_mhealth(src)
    z = zip_folder(src, tmp_path / "mhealth+dataset.zip")
    zz = zip_folder(src, tmp_path / "outer.zip", nested="MHEALTHDATASET.zip")
    cfg = DataConfig(dataset="mhealth")
    ref = mhealth.load(src, cfg)
    for path in (src / "MHEALTHDATASET", z, zz):
        got = mhealth.load(path, cfg)
        assert len(got.recordings) == 3
        for a, b in zip(ref.recordings, got.recordings, strict=True):
            np.testing.assert_array_equal(a.signals, b.signals)
            np.testing.assert_array_equal(a.labels, b.labels)


def test_pamap2_cleaning_shapes_labels_and_groups(tmp_path: Path) -> None:
    tables = write_pamap2(tmp_path)
    raw = pamap2.load(tmp_path, DataConfig(dataset="pamap2"))
    assert [r.subject for r in raw.recordings] == [101, 102]  # Optional/ ignored
    assert raw.spec.n_channels == 31 and raw.spec.sample_rate_hz == 100
    g = groups(raw)
    assert list(g) == ["acc", "gyro", "mag", "physio"]
    assert [len(g[k]) for k in g] == [9, 9, 9, 4]
    names = raw.spec.channel_names
    assert [names[i] for i in g["physio"]] == ["heart_rate", "hand_temp", "chest_temp", "ankle_temp"]
    assert [names[i] for i in g["acc"]][:3] == ["hand_acc_x", "hand_acc_y", "hand_acc_z"]
    for rec in raw.recordings:
        t = tables[rec.subject]
        assert rec.signals.shape == (len(t), 31)
        assert np.isfinite(rec.signals).all()
        assert not np.isin(rec.signals, [999.0, -777.0]).any()  # acc6g and orientation dropped
        act = t[:, 1].astype(int)
        want = np.select([act == 1, act == 4, act == 24], [0, 3, 11], -1)
        want[LONG_GAP[0]:LONG_GAP[1]] = -1  # a 1.5 s IMU gap is dropped
        np.testing.assert_array_equal(rec.labels, want)
        # heart rate: forward-filled from the ~9 Hz readings, back-filled before the first
        hr = t[:, 2]
        ok = np.flatnonzero(~np.isnan(hr))
        last = ok[np.searchsorted(ok, np.arange(len(hr)), side="right") - 1].clip(min=ok[0])
        np.testing.assert_allclose(rec.signals[:, 0], hr[np.where(np.arange(len(hr)) < ok[0], ok[0], last)])
        # short gap in hand acc: linear interpolation between its neighbours
        a, b = SHORT_GAP
        hand_acc_x = names.index("hand_acc_x")
        lin = np.interp(np.arange(a, b), [a - 1, b], [t[a - 1, 4], t[b, 4]])
        np.testing.assert_allclose(rec.signals[a:b, hand_acc_x], lin, rtol=1e-5)
        np.testing.assert_allclose(rec.signals[:a, hand_acc_x], t[:a, 4], rtol=1e-6)
    raw_p = pamap2.load(tmp_path, DataConfig(dataset="pamap2", modality_by="position"))
    gp = groups(raw_p)
    assert list(gp) == ["hand", "chest", "ankle"] and [len(v) for v in gp.values()] == [10, 11, 10]
    assert 0 in gp["chest"]  # heart-rate strap is on the chest


def test_pamap2_downsample_and_zip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_pamap2(src)
    z = zip_folder(src, tmp_path / "pamap2.zip", nested="PAMAP2_Dataset.zip")
    full = pamap2.load(src, DataConfig(dataset="pamap2"))
    half = pamap2.load(z, DataConfig(dataset="pamap2", downsample=2))
    assert half.spec.sample_rate_hz == 50
    for f, h in zip(full.recordings, half.recordings, strict=True):
        n = len(f.labels) // 2
        assert h.signals.shape == (n, 31)
        np.testing.assert_allclose(h.signals, f.signals[:2 * n].reshape(n, 2, 31).mean(axis=1), rtol=1e-5)
        pairs = f.labels[:2 * n].reshape(n, 2)
        np.testing.assert_array_equal(h.labels, np.where(pairs[:, 0] == pairs[:, 1], pairs[:, 0], -1))


def test_checksum_mismatch_is_one_line_once_and_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_mhealth(tmp_path, subjects=(1,))
    raw = mhealth.load(tmp_path, DataConfig(dataset="mhealth"))
    assert len(raw.recordings) == 1
    assert any("sha256" in n for n in raw.notes) and any("only 1 of 10" in n for n in raw.notes)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "mHealth_subject1.log" in err[0], err
    # three files, one line (not one raw Python warning per file); the cached path prints it once
    write_mhealth(tmp_path, subjects=(2, 3))
    cfg = DataConfig(dataset="mhealth", data_dir=str(tmp_path))
    load_raw(cfg, 0)
    load_raw(cfg, 0)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "sha256 of 3 of 3 mhealth files" in err[0], err


def test_cached_load_equals_direct_load(tmp_path: Path) -> None:
    write_pamap2(tmp_path)
    cfg = DataConfig(dataset="pamap2", data_dir=str(tmp_path), modality_by="position")
    direct = pamap2.load(tmp_path, cfg)
    cached = load_raw(cfg, 0)
    assert cached.store is not None  # backed by the HDF5 cache
    assert cached.spec == direct.spec
    again = load_raw(DataConfig(dataset="pamap2", data_dir=str(tmp_path)), 0)
    assert again.store.path == cached.store.path  # regrouping reuses the same cache file
    assert again.spec.modality_names() == ("acc", "gyro", "mag", "physio")
    for a, b in zip(direct.recordings, cached.recordings, strict=True):
        assert a.subject == b.subject
        np.testing.assert_array_equal(a.signals, b.signals)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_real_spar(tmp_path: Path) -> None:
    need_shared()
    npz = SPAR_DIR / "spar_watch_10subj.npz"
    raw = spar.load(SPAR_DIR, DataConfig(dataset="spar"))
    assert not any("sha256" in n for n in raw.notes)  # the genuine file verifies
    assert len(raw.recordings) == 140
    assert sum(len(r.labels) for r in raw.recordings) == 244102
    per = {}
    for r in raw.recordings:
        per[r.subject] = per.get(r.subject, 0) + len(r.labels)
        assert len(set(r.labels.tolist())) == 1 and 0 <= r.labels[0] < 7
    assert per == {1: 29099, 2: 28031, 3: 16286, 4: 15798, 5: 25487, 6: 24927, 7: 27276, 8: 25141,
                   9: 25194, 10: 26863}
    assert raw.spec.classes == ("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW")
    assert groups(raw) == {"acc": (0, 1, 2), "gyro": (3, 4, 5)}
    med = np.median(np.linalg.norm(np.concatenate([r.signals[:, :3] for r in raw.recordings]), axis=1))
    assert 0.9 < med < 1.2  # accelerometer in g, gravity included (README: ~1.07)
    by_file = spar.load(npz, DataConfig(dataset="spar", modality_by="position"))
    assert groups(by_file) == {"wrist": (0, 1, 2, 3, 4, 5)}
    np.testing.assert_array_equal(by_file.recordings[7].signals, raw.recordings[7].signals)
