"""`relief-mpi data synth`: files in the exact MHEALTH and PAMAP2 layouts that the real loaders
read (no side door), under both protocols, holding the simulator's signals where the layout puts
them; and its errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data import mhealth, pamap2
from relief_mpi.data import simulator as sim
from relief_mpi.data.protocol import paper_data_config, paper_modality_sets
from relief_mpi.data.registry import build_federated, load_raw

# Bouts of (60 minutes - 12 gaps) / 12 s: 4.5 s (MHEALTH, 3 s gaps) and 8.5 s (PAMAP2, 4 s gaps), enough
# for every class to be the majority of some 256-sample (5.12 s) window.
MINUTES = {"mhealth": 1.5, "pamap2": 2.5}


def session(seed: int, k: int, order: list[int], gap_s: float, rate_hz: float, minutes: float) -> sim.Session:
    """What the writer simulated for subject index k (recomputed from the seed)."""
    labels, seconds = sim.schedule(order, minutes, gap_s)
    return sim.simulate(sim.World.make(seed), seed, k, labels, seconds, rate_hz)


def test_mhealth_layout_loads_through_the_loader(tmp_path: Path, relief) -> None:  # noqa: ANN001
    code, out, err = relief(["data", "synth", "--layout", "mhealth", "--to", str(tmp_path), "--subjects", "3",
                             "--minutes", str(MINUTES["mhealth"]), "--seed", "4"])
    assert code == 0, err
    assert f"use it with: --dataset mhealth --data-dir {tmp_path}" in out
    files = sorted(p.name for p in (tmp_path / "MHEALTHDATASET").iterdir())
    assert files == ["mHealth_subject1.log", "mHealth_subject2.log", "mHealth_subject3.log"]
    first = (tmp_path / "MHEALTHDATASET" / "mHealth_subject1.log").read_text().splitlines()[0].split("\t")
    assert len(first) == 24 and first[-1] == "0"  # 23 sensor columns, then the label (null first)
    raw = mhealth.load(tmp_path, DataConfig(dataset="mhealth"))
    assert [r.subject for r in raw.recordings] == [1, 2, 3]
    for k, rec in enumerate(raw.recordings):
        s = session(4, k, list(range(12)), 3.0, 50.0, MINUTES["mhealth"])
        np.testing.assert_allclose(rec.signals, sim.mhealth_signals(s), rtol=1e-4, atol=1e-6)  # %.5g in the file
        np.testing.assert_array_equal(rec.labels, s.labels)
        runs = [int(v) for i, v in enumerate(rec.labels) if v >= 0 and (i == 0 or rec.labels[i - 1] != v)]
        assert runs == list(range(12))  # the activities in the protocol's order, null between them
    cfg = paper_data_config(DataConfig(dataset="mhealth", data_dir=str(tmp_path)))
    paper = load_raw(cfg, 0)
    fd = build_federated(cfg, 0, paper_modality_sets("mhealth", paper.spec.modality_names(), 3), paper)
    assert fd.client_subjects == (1, 2, 3) and fd.modality_sets == [("acc", "gyro", "mag", "ecg"),
                                                                    ("acc", "gyro"), ("acc",)]
    # every class in the pooled test set: a property of the seed-0 draw one stream per subject gives
    # these short synthetic sessions (the authors' one-generator draw misses a class here)
    streams = build_federated(replace(cfg, split="paper-streams"), 0,
                              paper_modality_sets("mhealth", paper.spec.modality_names(), 3), paper)
    assert set(streams.pooled_test.y.tolist()) == set(range(12))
    assert len(fd.pooled_test) == len(streams.pooled_test)  # the same share, another draw
    x = np.concatenate([r.signals for r in paper.recordings[:1]])
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-4)  # per-subject z-score
    np.testing.assert_allclose(x.std(axis=0), 1, atol=1e-3)


def test_pamap2_layout_loads_through_the_loader(tmp_path: Path, relief) -> None:  # noqa: ANN001
    code, out, err = relief(["data", "synth", "--layout", "pamap2", "--to", str(tmp_path), "--subjects", "9",
                             "--minutes", str(MINUTES["pamap2"])])
    assert code == 0, err
    folder = tmp_path / "PAMAP2_Dataset" / "Protocol"
    assert sorted(p.name for p in folder.iterdir()) == [f"subject{s}.dat" for s in range(101, 110)]
    row = (folder / "subject101.dat").read_text().splitlines()[0].split(" ")
    assert len(row) == 54 and row[1] == "0" and row[2] == "NaN"  # transient first; heart rate comes late
    ours = pamap2.load(tmp_path, DataConfig(dataset="pamap2"))
    assert [r.subject for r in ours.recordings] == list(range(101, 110))
    order = [sim.PAMAP2_IDS.index(a) for a in sim.PAMAP2_ORDER]
    s = session(0, 0, order, 4.0, 100.0, MINUTES["pamap2"])
    rec = ours.recordings[0]
    names = ours.spec.channel_names
    table = np.loadtxt(folder / "subject101.dat")
    ok = ~np.isnan(table[:, 21])  # rows where the chest IMU sent its packet
    chest_acc = rec.signals[:, [names.index(f"chest_acc_{a}") for a in "xyz"]]
    np.testing.assert_allclose(chest_acc[ok], s.acc[0][ok], rtol=1e-4, atol=1e-4)  # columns 22-24: chest acc16g
    ankle_mag = rec.signals[:, [names.index(f"ankle_mag_{a}") for a in "xyz"]]
    ok = ~np.isnan(table[:, 47])
    np.testing.assert_allclose(ankle_mag[ok], s.mag[1][ok], rtol=6e-4, atol=1e-6)  # %.4g
    beats = ~np.isnan(table[:, 2])
    np.testing.assert_array_equal(table[beats, 2], np.round(s.hr[beats]))
    ids = np.asarray(sim.PAMAP2_IDS)
    np.testing.assert_array_equal(table[:, 1], np.where(s.labels >= 0, ids[s.labels.clip(0)], 0))
    cfg = paper_data_config(DataConfig(dataset="pamap2", data_dir=str(tmp_path)))
    raw = load_raw(cfg, 0)
    assert raw.spec.n_channels == 28 and raw.spec.sample_rate_hz == 50
    fd = build_federated(cfg, 0, paper_modality_sets("pamap2", raw.spec.modality_names(), 8), raw)
    assert fd.client_subjects == tuple(range(101, 109))  # 109 written, left out by the protocol
    assert [len(s) for s in fd.modality_sets] == [4, 4, 4, 2, 2, 2, 1, 1]
    assert set(fd.pooled_test.y.tolist()) == set(range(12)) and np.isfinite(fd.pooled_test.x).all()


def test_same_seed_same_files_and_more_subjects_keep_the_first(tmp_path: Path, relief) -> None:  # noqa: ANN001
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, n in ((a, "2"), (b, "3")):
        assert relief(["data", "synth", "--layout", "mhealth", "--to", str(folder), "--subjects", n, "--minutes",
                       "1.2"])[0] == 0
    for name in ("mHealth_subject1.log", "mHealth_subject2.log"):
        assert (a / "MHEALTHDATASET" / name).read_bytes() == (b / "MHEALTHDATASET" / name).read_bytes()
    other = tmp_path / "c"
    relief(["data", "synth", "--layout", "mhealth", "--to", str(other), "--subjects", "1", "--minutes", "1.2",
            "--seed", "1"])
    assert (other / "MHEALTHDATASET" / "mHealth_subject1.log").read_bytes() != \
        (a / "MHEALTHDATASET" / "mHealth_subject1.log").read_bytes()


def test_errors_are_one_line(tmp_path: Path, relief) -> None:  # noqa: ANN001
    d = tmp_path / "d"
    code, _, err = relief(["data", "synth", "--layout", "mhealth", "--to", str(d), "--subjects", "3", "--minutes",
                           "1.2"])
    assert code == 0, err
    bad = [
        (["--layout", "mhealth", "--to", str(d)], f"error: --to {d} is not empty; pass --overwrite"),
        (["--layout", "mhealth", "--to", str(tmp_path / "e"), "--subjects", "11"],
         "error: --subjects 11: the mhealth layout has 1 to 10 subjects"),
        (["--layout", "pamap2", "--to", str(tmp_path / "e"), "--subjects", "10"],
         "error: --subjects 10: the pamap2 layout has 1 to 9 subjects"),
        (["--layout", "mhealth", "--to", str(tmp_path / "e"), "--minutes", "0.5"],
         "error: --minutes 0.5: 0.5 minutes are too short for 12 activities"),
    ]
    for args, message in bad:
        code, _, err = relief(["data", "synth", *args])
        assert code == 2 and err.count("\n") == 1 and err.startswith(message), (args, err)
    assert not (tmp_path / "e").exists()  # nothing written by a refused call
    code, _, err = relief(["data", "synth", "--layout", "mhealth", "--to", str(d), "--subjects", "2", "--minutes",
                           "1.2", "--overwrite"])
    assert code == 0, err
    assert sorted(p.name for p in (d / "MHEALTHDATASET").iterdir()) == ["mHealth_subject1.log", "mHealth_subject2.log"]
    for args, message in ((["--minutes", "x"], "'x' is not a valid float"),
                          (["--to", str(d / "MHEALTHDATASET" / "mHealth_subject1.log")], "is a file")):
        code, _, err = relief(["data", "synth", "--layout", "pamap2", "--to", str(tmp_path / "e"), *args])
        assert code == 2 and message in err, err  # click's own check, with the usage line
