"""Issue 16, property 4, on a small deterministic MHEALTH layout: under the published protocol
(80%-overlapping 256/50 windows, a random window split, z-score over the whole recording) almost
every test window overlaps a training window of its subject by at least 80% and the training
windows' values depend on the test samples; under the correction the bench's `+time` rows use
(split time, protocol ours) no test window shares a sample with a training window and the
training windows do not change when the test samples do."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig, RunConfig
from relief_mpi.data.base import FederatedData
from relief_mpi.data.protocol import paper_data_config
from relief_mpi.data.registry import build_federated, load_raw
from tests.data.layouts import write_mhealth

LABELS = [0] * 100 + [1] * 1500 + [0] * 50 + [4] * 1500
SUBJECTS = (1, 2, 3, 4)
FULL = ("acc", "gyro", "mag", "ecg")
WIN = 256


def published(root: Path) -> DataConfig:
    return paper_data_config(DataConfig(dataset="mhealth", data_dir=str(root)))


def corrected(root: Path) -> DataConfig:
    """The data config of the bench's relief+time row (--compare corrected)."""
    from relief_mpi.bench.runner import with_changes
    from relief_mpi.cli.bench import corrected_variants

    row = next(v for v in corrected_variants({"relief", "fedavg", "fedavg-fair"})[0] if v.label == "relief+time")
    cfg = with_changes(RunConfig(data=published(root)), row.changes).data
    assert (cfg.split, cfg.protocol) == ("time", "ours")
    return cfg


def federated(cfg: DataConfig) -> FederatedData:
    return build_federated(cfg, 0, [FULL] * len(SUBJECTS), load_raw(cfg, 0))


def overlaps(fd: FederatedData) -> np.ndarray:
    """For each pooled test window: its largest overlap (fraction of the window) with a training
    window of the same subject."""
    out = []
    for s, a in zip(fd.pooled_test.subject, fd.pooled_test.start, strict=True):
        k = fd.client_subjects.index(int(s))
        starts = fd.clients_train[k].start
        out.append(max(0, WIN - int(np.abs(starts - a).min())) / WIN if len(starts) else 0.0)
    return np.array(out)


def rewrite_test_rows(src: Path, dst: Path, tables: dict[int, np.ndarray], fd: FederatedData) -> None:
    """A copy of the layout whose rows under the corrected split's test windows are scaled x10 + 5."""
    d = dst / "MHEALTHDATASET"
    d.mkdir(parents=True)
    for s, t in tables.items():
        t = t.copy()
        for a in fd.pooled_test.start[fd.pooled_test.subject == s]:
            t[a:a + WIN, :23] = t[a:a + WIN, :23] * 10 + 5
        lines = ["\t".join(str(float(v)) for v in row[:23]) + f"\t{int(row[23])}" for row in t]
        (d / f"mHealth_subject{s}.log").write_text("\n".join(lines) + "\n")


def test_published_split_leaks_and_the_time_split_does_not(tmp_path: Path) -> None:
    tables = write_mhealth(tmp_path / "a", SUBJECTS, LABELS)
    pub = federated(published(tmp_path / "a"))
    ov = overlaps(pub)
    assert len(ov) >= 20 and (ov >= 0.8).mean() >= 0.9, f"published: {np.round(ov, 2)}"
    cor = federated(corrected(tmp_path / "a"))
    assert len(cor.pooled_test) >= len(SUBJECTS)
    assert (overlaps(cor) == 0).all(), "corrected: a test window shares samples with a training window"

    # Change only the samples under the corrected split's test windows.
    rewrite_test_rows(tmp_path / "a", tmp_path / "b", tables, cor)
    cor_b = federated(corrected(tmp_path / "b"))
    for k in range(len(SUBJECTS)):
        np.testing.assert_array_equal(cor.clients_train[k].start, cor_b.clients_train[k].start)
        np.testing.assert_array_equal(cor.clients_train[k].x, cor_b.clients_train[k].x,
                                      err_msg="corrected: the z-score must come from training windows only")
    pub_b = federated(published(tmp_path / "b"))
    k = 0
    np.testing.assert_array_equal(pub.clients_train[k].start, pub_b.clients_train[k].start)
    far = np.array([all(abs(int(a) - int(b)) >= WIN for b in cor.pooled_test.start[cor.pooled_test.subject == 1])
                    for a in pub.clients_train[k].start])  # published training windows away from the change
    assert far.any()
    assert not np.allclose(pub.clients_train[k].x[far], pub_b.clients_train[k].x[far], atol=1e-3), \
        "published: the z-score is computed with the test samples too"
