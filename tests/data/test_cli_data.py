"""`relief-mpi data info` and `data fetch` as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from relief_mpi.cli.data import fleet_modality_sets
from relief_mpi.config import DataConfig
from relief_mpi.data.registry import build_federated, load_raw
from relief_mpi.log.hdf5 import read_log
from tests.data.layouts import write_pamap2, zip_folder
from tests.helpers import FAST, SPAR_DIR, need_shared, run_mpi


def _client_rows(out: str) -> list[list[str]]:
    return [ln.split() for ln in out.splitlines() if re.match(r"^\s+\d+\s+\d+\s+(high|mid|low)\s", ln)]


def test_info_pamap2_zip_matches_the_pipeline(tmp_path: Path, relief) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    write_pamap2(src)
    z = zip_folder(src, tmp_path / "pamap2.zip")
    code, out, err = relief(["data", "info", "--dataset", "pamap2", "--data-dir", str(z), "--clients", "3",
                             "--alpha", "0.5", "--window-s", "1.0", "--downsample", "2"])
    assert code == 0, err
    assert "classes (12): 0 lying" in out and "sample rate: 50 Hz" in out and "window: 50 samples" in out
    assert re.search(r"acc\s+9 ch, file columns 4-6, 21-23, 38-40: hand_acc_x", out)
    assert re.search(r"physio\s+4 ch, file columns 2-3, 20, 37: heart_rate, hand_temp", out)
    assert "subjects (2)" in out and "cohorts: acc 3, gyro 2, mag 2, physio 1" in out
    assert "sha256" in out  # the checksum note of these non-genuine files
    cfg = DataConfig(dataset="pamap2", data_dir=str(z), alpha=0.5, window_s=1.0, downsample=2)
    raw = load_raw(cfg, 0)
    devices, sets = fleet_modality_sets(raw.spec, 3)
    fd = build_federated(cfg, 0, sets, raw)
    rows = _client_rows(out)
    assert len(rows) == 3
    for k, row in enumerate(rows):
        assert row[2] == devices[k].tier and row[4] == ",".join(sets[k])
        assert int(row[5]) == len(fd.clients_train[k]) and int(row[6]) == len(fd.clients_test[k])
        assert [int(v) for v in row[7:]] == np.bincount(fd.clients_train[k].y, minlength=12).tolist()


def test_info_synth_and_fetch_help_explain_every_option(relief) -> None:  # noqa: ANN001
    for cmd, opts in ((["data", "info"], ["--dataset", "--data-dir", "--clients", "--alpha", "--modality-by",
                                          "--window-s", "--downsample", "--seed", "--fleet", "--profiles",
                                          "--protocol", "--partition", "--split", "--test-subjects"]),
                      (["data", "synth"], ["--layout", "--to", "--seed", "--subjects", "--minutes", "--overwrite"]),
                      (["data", "fetch"], ["--to", "--timeout"])):
        code, out, _ = relief([*cmd, "--help"])
        assert code == 0
        blocks = {b.split()[0]: b for b in re.split(r"\n  (?=-)", "\n" + out.split("Options:")[1]) if b.strip()}
        for o in opts:
            words = [w for w in blocks[o].split()[1:] if w.isalpha() and len(w) > 2]
            assert len(words) >= 4, (o, blocks[o])  # a real sentence, not just a metavar
        assert "--url" not in out  # test-only option stays hidden


def test_fetch_without_network_explains_and_fails(tmp_path: Path, relief) -> None:  # noqa: ANN001
    code, _, err = relief(["data", "fetch", "pamap2", "--to", str(tmp_path / "dl"), "--timeout", "3",
                           "--url", "http://127.0.0.1:9/pamap2.zip"])
    assert code == 1
    assert "could not download pamap2" in err and "--data-dir" in err
    assert "https://archive.ics.uci.edu/dataset/231/" in err
    assert not list((tmp_path / "dl").iterdir())  # no partial file left


def test_mpi_train_on_real_spar(tmp_path: Path) -> None:
    need_shared()
    out = tmp_path / "r.h5"
    # 4 clients (as on 5 ranks) round robin on 2 client ranks: the same numbers, 2 processes fewer.
    # The real data is the point; narrow encoders (FAST) train on it at a third of the compute (the
    # paper model on SPAR: tests/strategy/test_published.py).
    r = run_mpi(3, ["train", "--dataset", "spar", "--data-dir", str(SPAR_DIR), "--rounds", "2", *FAST,
                    "--clients", "4", "--out", str(out), "--quiet"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    run = read_log(out)
    f1 = np.asarray(run.rounds["macro_f1"])
    assert len(f1) == 2 and np.isfinite(f1).all() and (f1 > 0).all()
    assert run.attrs["dataset"] == "spar"
    assert json.loads(run.attrs["modalities"]) == ["acc", "gyro"]
    print("SPAR macro-F1 per round:", f1.tolist())
