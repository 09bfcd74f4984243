"""Windows, split and partition properties: no train/test overlap in time, skew grows as alpha
shrinks, modality sets follow the tiers, seeded, every client non-empty, cache == memory."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from relief_mpi.cli.data import fleet_modality_sets
from relief_mpi.config import DataConfig
from relief_mpi.data.partition import label_skew, partition
from relief_mpi.data.registry import build_federated, load_raw
from relief_mpi.data.windows import normalise, window_dataset
from tests.data.layouts import write_mhealth
from tests.helpers import SPAR_DIR, need_shared

ALL4 = ("acc", "gyro", "mag", "ecg")


@pytest.fixture(scope="module")
def synth():
    cfg = DataConfig()
    return cfg, load_raw(cfg, 0)


def _intervals(ws, length):
    return [(int(r), int(s), int(s) + length) for r, s in zip(ws.rec, ws.start, strict=True)]


def _assert_no_time_overlap(fd) -> None:
    L = fd.window_len
    train = _intervals(fd.server_train, L) + [iv for c in fd.clients_train for iv in _intervals(c, L)]
    test = [iv for c in fd.clients_test for iv in _intervals(c, L)]
    assert train and test
    for r in {iv[0] for iv in test}:
        tr = sorted((a, b) for rr, a, b in train if rr == r)
        te = sorted((a, b) for rr, a, b in test if rr == r)
        # every test window lies wholly outside every training window of the same recording
        starts = np.array([a for a, _ in tr])
        for a, b in te:
            i = np.searchsorted(starts, b)  # training windows starting before this test window ends
            assert i == 0 or max(bb for _, bb in tr[:i]) <= a, (r, a, b)


def test_no_train_test_window_overlap_in_time(synth, tmp_path: Path) -> None:
    cfg, raw = synth
    fd = build_federated(cfg, 0, [ALL4] * 4, raw)
    _assert_no_time_overlap(fd)
    write_mhealth(tmp_path)  # label runs broken by null-class samples, on the cached path
    cfg_m = DataConfig(dataset="mhealth", data_dir=str(tmp_path), window_s=1.0, overlap=0.75)
    fd_m = build_federated(cfg_m, 3, [ALL4] * 2)
    _assert_no_time_overlap(fd_m)
    labels = {r.subject: r.labels for r in load_raw(cfg_m, 0).recordings}
    rec_subject = {}
    for ws in [*fd_m.clients_train, *fd_m.clients_test]:
        for r, s, subj, y in zip(ws.rec, ws.start, ws.subject, ws.y, strict=True):
            rec_subject[int(r)] = int(subj)
            assert (labels[int(subj)][s:s + fd_m.window_len] == y).all()  # one label, no null samples


def test_label_skew_grows_as_alpha_shrinks(synth) -> None:
    cfg, raw = synth
    nc = len(raw.spec.classes)
    fd = build_federated(cfg, 0, [ALL4], raw)
    y = fd.clients_train[0].y
    key = fd.clients_train[0].subject * 10_000_000 + np.arange(len(y))
    skew = {}
    for alpha in (100.0, 1.0, 0.1):
        vals = []
        for seed in range(6):
            tr, _ = partition(y, key, y[:0], key[:0], nc, 8, alpha, seed)
            vals.append(label_skew([y[i] for i in tr], nc))
        skew[alpha] = float(np.mean(vals))
    assert skew[100.0] < 0.1 < skew[1.0] < skew[0.1], skew
    # the same holds end to end on the federated data
    ends = [label_skew([c.y for c in build_federated(DataConfig(alpha=a), 0, [ALL4] * 6, raw).clients_train], nc)
            for a in (100.0, 0.1)]
    assert ends[0] < ends[1]


def test_modality_sets_follow_tiers_and_absent_channels_are_zero(synth) -> None:
    cfg, raw = synth
    devices, sets = fleet_modality_sets(raw.spec, 8)
    assert [d.tier for d in devices] == ["high"] * 2 + ["mid"] * 2 + ["low"] * 4
    fd = build_federated(cfg, 0, sets, raw)
    want = {"high": ALL4, "mid": ("acc", "gyro", "mag"), "low": ("acc",)}
    for k, d in enumerate(devices):
        assert fd.modality_sets[k] == want[d.tier]
        for ws in (fd.clients_train[k], fd.clients_test[k]):
            for m in raw.spec.modalities:
                block = ws.x[:, list(m.channels), :]
                if m.name in want[d.tier]:
                    assert np.abs(block).sum() > 0
                else:
                    assert not block.any()


def test_same_seed_same_partition_and_every_client_non_empty(synth) -> None:
    cfg, raw = synth
    for alpha in (0.05, 1.0):
        c = DataConfig(alpha=alpha)
        a = build_federated(c, 7, [ALL4] * 6, raw)
        b = build_federated(c, 7, [ALL4] * 6, load_raw(c, 0))
        other = build_federated(c, 8, [ALL4] * 6, raw)
        assert a.fingerprint == b.fingerprint != other.fingerprint
        for x, y in zip(a.clients_train + a.clients_test, b.clients_train + b.clients_test, strict=True):
            np.testing.assert_array_equal(x.start, y.start)
            np.testing.assert_array_equal(x.y, y.y)
        assert any(not np.array_equal(x.start, y.start) for x, y in zip(a.clients_train, other.clients_train,
                                                                          strict=True))
        assert all(len(t) >= 8 for t in a.clients_train) and all(len(t) >= 1 for t in a.clients_test)


def test_lazy_cached_windows_equal_in_memory_windows(tmp_path: Path) -> None:
    write_mhealth(tmp_path)
    cfg = DataConfig(dataset="mhealth", data_dir=str(tmp_path), window_s=1.28)
    cached = load_raw(cfg, 0)
    direct = load_raw(cfg, 0, use_cache=False)
    assert cached.store is not None and direct.store is None
    fa = build_federated(cfg, 1, [ALL4, ("acc",)], cached)
    fb = build_federated(cfg, 1, [ALL4, ("acc",)], direct)
    assert fa.fingerprint == fb.fingerprint
    assert not fa.clients_train[1].materialised  # nothing read until asked for
    # the reference: stack every window in memory and z-score with the training windows' stats
    tr, te = window_dataset(direct, cfg.window_s, cfg.overlap, cfg.test_fraction)
    normalise(tr, [te])
    pos = {(int(r), int(s)): i for i, (r, s) in enumerate(zip(tr.rec, tr.start, strict=True))}
    for k in range(2):
        ws = fa.clients_train[k]
        ref = tr.x[[pos[(int(r), int(s))] for r, s in zip(ws.rec, ws.start, strict=True)]]
        if k == 1:
            ref = ref.copy()
            ref[:, [3, 4, 8, 9, 10, 11, 12, 13, 17, 18, 19, 20, 21, 22], :] = 0
        np.testing.assert_allclose(ws.x, ref, atol=2e-5)
        np.testing.assert_allclose(fb.clients_train[k].x, ws.x, atol=1e-6)


def _prepare(path: str, q) -> None:  # noqa: ANN001
    import warnings

    warnings.simplefilter("ignore")
    cfg = DataConfig(dataset="mhealth", data_dir=path, window_s=1.0)
    q.put(build_federated(cfg, 0, [ALL4] * 2).fingerprint)


def test_concurrent_ranks_share_one_cache(tmp_path: Path) -> None:
    write_mhealth(tmp_path / "d", subjects=(1, 2, 3, 4))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_prepare, args=(str(tmp_path / "d"), q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    prints = {q.get(timeout=5) for _ in procs}
    assert len(prints) == 1
    import os

    cache = Path(os.environ["RELIEF_MPI_CACHE_DIR"])
    assert len(list(cache.glob("mhealth-*.h5"))) == 1 and not list(cache.glob(".*"))  # no temp files left


def test_real_spar_partition() -> None:
    need_shared()
    cfg = DataConfig(dataset="spar", data_dir=str(SPAR_DIR))
    raw = load_raw(cfg, 0)
    devices, sets = fleet_modality_sets(raw.spec, 4)
    assert sets == [("acc", "gyro"), ("acc", "gyro"), ("acc",), ("acc",)]
    fd = build_federated(cfg, 0, sets, raw)
    _assert_no_time_overlap(fd)
    assert sum(len(c) for c in fd.clients_train) + len(fd.server_train) > 2500
    assert min(len(c) for c in fd.clients_train) >= 8
