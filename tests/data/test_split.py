"""--split paper draws the authors' test windows; --split-file takes a split from a log or a JSON
file, and a split that does not fit the run's windows is one `error:` line (exit 2).

The authors' rule (their relief/data/partition.py, build_federated_splits, one client per
subject) is re-implemented here on the raw SPAR npz with NumPy alone: windows of 256 samples,
stride 50, inside each series (one label per series, so every window is kept), a subject's
windows in series order; one np.random.default_rng(seed) for all subjects in sorted order,
`permutation` of each subject's windows, the first min(round(0.2 n), n - 1) to test."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from relief_mpi.config import DataConfig
from relief_mpi.data.protocol import paper_data_config, paper_modality_sets
from relief_mpi.data.registry import build_federated, load_raw
from tests.helpers import SPAR_DIR, need_shared


def authors_test_windows(npz: Path, seed: int) -> dict[int, list[tuple[int, int]]]:
    """Per subject, the (series, first sample) of every test window, as the authors' code draws them."""
    z = np.load(npz, allow_pickle=False)
    off, subj = z["series_offsets"], z["subject"]
    windows: dict[int, list[tuple[int, int]]] = {}
    for i in range(len(subj)):
        length = int(off[i + 1] - off[i])
        for start in range(0, length - 256 + 1, 50):
            windows.setdefault(int(subj[i]), []).append((i, start))
    rng = np.random.default_rng(seed)
    out = {}
    for s in sorted(windows):
        w = windows[s]
        if len(w) < 2:
            continue
        perm = rng.permutation(len(w))
        k = min(int(round(len(w) * 0.2)), len(w) - 1)
        out[s] = [w[int(j)] for j in sorted(perm[:k])]
    return out


# Written down from authors_test_windows (seed, subject) -> the first test windows (series, start);
# they pin the re-implementation itself.
WRITTEN = {(0, 1): [(3, 100), (3, 250), (3, 750)], (1, 4): [(34, 200), (34, 400), (35, 0)],
           (2, 10): [(1, 400), (1, 1350), (1, 1650)]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_paper_gives_the_authors_test_windows_on_spar(seed: int) -> None:
    need_shared()
    cfg = replace(paper_data_config(DataConfig(dataset="spar", data_dir=str(SPAR_DIR))), split="paper")
    raw = load_raw(cfg, seed)
    fd = build_federated(cfg, seed, paper_modality_sets("spar", raw.spec.modality_names(), 10), raw)
    want = authors_test_windows(SPAR_DIR / "spar_watch_10subj.npz", seed)
    assert fd.pooled_test is not None and fd.pooled_test.rec is not None and fd.pooled_test.start is not None
    got: dict[int, list[tuple[int, int]]] = {}
    for s, r, a in zip(fd.pooled_test.subject, fd.pooled_test.rec, fd.pooled_test.start, strict=True):
        got.setdefault(int(s), []).append((int(r), int(a)))
    assert got == want
    for (sd, s), first in WRITTEN.items():
        if sd == seed:
            assert want[s][:len(first)] == first
    # the per-subject numbers the log records are the same windows
    assert [sp.subject for sp in fd.split] == sorted(want)
    assert sum(len(sp.test) for sp in fd.split) == len(fd.pooled_test)


def test_split_paper_streams_is_the_earlier_draw() -> None:
    """paper-streams (the --protocol paper default) keeps today's test sets; paper differs."""
    cfg = replace(paper_data_config(DataConfig()), split="paper-streams")
    sets = paper_modality_sets("synthetic", ("acc", "gyro", "mag", "ecg"), 10)
    a = build_federated(cfg, 0, sets)
    b = build_federated(replace(cfg, split="paper"), 0, sets)
    assert [len(x.test) for x in a.split] == [len(x.test) for x in b.split]
    assert any(not np.array_equal(x.test, y.test) for x, y in zip(a.split, b.split, strict=True))
    for sp in a.split:  # one stream per subject: SeedSequence([seed, 0x9A9E, subject])
        perm = np.random.default_rng(np.random.SeedSequence([0, 0x9A9E, sp.subject])).permutation(sp.n_windows)
        assert sp.test.tolist() == sorted(perm[:min(int(round(sp.n_windows * 0.2)), sp.n_windows - 1)].tolist())


TRAIN = ["train", "--transport", "inprocess", "--clients", "10", "--partition", "subject", "--rounds", "1",
         "--strategy", "fedavg-sgd", "--local-steps", "1", "--model", "small"]


def _split_of(log: Path) -> dict[int, list[int]]:
    with h5py.File(log, "r") as f:
        return {int(s): f["split"][str(s)][()].tolist() for s in f["split/subjects"][()]}


def _rounds(log: Path) -> np.ndarray:
    with h5py.File(log, "r") as f:
        return f["rounds"][()]


def test_split_file_from_a_log_repeats_that_run(tmp_path: Path, relief) -> None:  # noqa: ANN001
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    code, _, err = relief([*TRAIN, "--split", "paper", "--seed", "1", "--out", str(a)])
    assert code == 0, err
    split = _split_of(a)
    assert sum(map(len, split.values())) == 460 and set(split) == set(range(1, 11))
    with h5py.File(a, "r") as f:
        assert f["split/subjects"].attrs["draw"] == "paper" and f["split/3"].attrs["n_windows"] > 0
    code, _, err = relief([*TRAIN, "--split-file", str(a), "--seed", "1", "--out", str(b)])
    assert code == 0, err
    assert _split_of(b) == split
    code, shown, _ = relief(["config", "show", str(b)])  # the file implies --split file --partition subject
    assert code == 0 and f'split-file = "{a}"' in shown and "\nsplit = " not in shown and "partition" not in shown
    ra, rb = _rounds(a), _rounds(b)
    assert np.isfinite(ra["macro_f1"]).all()
    for name in ("accuracy", "macro_f1", "rare_f1", "pooled_macro_f1", "train_loss", "bytes_up", "virtual_time_s"):
        assert np.array_equal(ra[name], rb[name], equal_nan=True), name
    # the same split written by hand as JSON (a different seed: the split is the file's, not the seed's)
    js = tmp_path / "split.json"
    js.write_text(json.dumps({"test": {str(s): v for s, v in split.items()}}))
    code, _, err = relief([*TRAIN, "--split-file", str(js), "--seed", "1", "--out", str(c)])
    assert code == 0, err
    assert _split_of(c) == split
    with h5py.File(c, "r") as f:
        assert f["split/subjects"].attrs["draw"] == "file"


def _bad(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    return p


def _ok_split() -> dict[str, list[int]]:
    return {str(s): [0, 1] for s in range(1, 11)}


BAD_SPLITS = [
    ({"test": {**_ok_split(), "11": [0]}}, "subject 11 is not a client subject of this run"),
    ({"test": {**_ok_split(), "3": [0, 100000]}}, "subject 3 has no window 100000"),
    ({"test": {**_ok_split(), "3": [4, 4]}}, "subject 3 lists window 4 twice"),
    ({"test": {**_ok_split(), "2": list(range(228))}}, "subject 2 keeps all 228 of its windows for testing"),
    ({"test": {k: v for k, v in _ok_split().items() if k != "5"}}, "no test windows given for subject 5"),
    ({"test": _ok_split(), "n_windows": {"1": 7}}, "subject 1 has 7 windows there but"),
    ({"test": {**_ok_split(), "x": []}}, "subject 'x' is not an integer subject id"),
    ([1, 2], 'a JSON split is an object with "test"'),
]


@pytest.mark.parametrize(("doc", "message"), BAD_SPLITS)
def test_a_split_that_does_not_fit_is_one_error_line(tmp_path: Path, relief, doc: object,  # noqa: ANN001
                                                     message: str) -> None:
    out = tmp_path / "r.h5"
    code, _, err = relief([*TRAIN, "--split-file", str(_bad(tmp_path, doc)), "--out", str(out)])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --split-file "), err
    assert message in lines[0], lines[0]
    assert not out.exists()


def test_a_log_from_before_issue_23_keeps_its_split() -> None:
    """A frozen config from before split_file existed said split=paper for what is now paper-streams."""
    from relief_mpi.config import RunConfig

    old = RunConfig().to_dict()
    old["data"] = {k: v for k, v in old["data"].items() if k != "split_file"}
    old["data"].update(partition="subject", split="paper")
    assert RunConfig.from_dict(old).data.split == "paper-streams"
    new = RunConfig().to_dict()
    new["data"].update(partition="subject", split="paper")
    assert RunConfig.from_dict(new).data.split == "paper"
