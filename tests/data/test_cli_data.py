"""`relief-mpi data info` and `data fetch` as a user runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.registry import build_federated, fleet_modality_sets, load_raw
from relief_mpi.log.hdf5 import read_log
from tests.data.layouts import write_pamap2, zip_folder
from tests.helpers import SPAR_DIR, need_shared, run_cli, run_mpi


def _client_rows(out: str) -> list[list[str]]:
    return [ln.split() for ln in out.splitlines() if re.match(r"^\s+\d+\s+\d+\s+(high|mid|low)\s", ln)]


def test_info_pamap2_zip_matches_the_pipeline(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_pamap2(src)
    z = zip_folder(src, tmp_path / "pamap2.zip")
    r = run_cli(["data", "info", "--dataset", "pamap2", "--data-dir", str(z), "--clients", "3", "--alpha", "0.5",
                 "--window-s", "1.0", "--downsample", "2"], timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "classes (12): 0 lying" in out and "sample rate: 50 Hz" in out and "window: 50 samples" in out
    assert re.search(r"acc\s+9 ch: hand_acc_x", out) and re.search(r"physio\s+4 ch: heart_rate, hand_temp", out)
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


def test_info_and_fetch_help_explain_every_option() -> None:
    for cmd, opts in ((["data", "info"], ["--dataset", "--data-dir", "--clients", "--alpha", "--modality-by",
                                          "--window-s", "--downsample", "--seed", "--fleet", "--profiles"]),
                      (["data", "fetch"], ["--to", "--timeout"])):
        r = run_cli([*cmd, "--help"], timeout=60)
        assert r.returncode == 0
        blocks = {b.split()[0]: b for b in re.split(r"\n\s+(?=-)", "\n" + r.stdout.split("Options:")[1]) if b.strip()}
        for o in opts:
            words = [w for w in blocks[o].split()[1:] if w.isalpha() and len(w) > 2]
            assert len(words) >= 4, (o, blocks[o])  # a real sentence, not just a metavar
        assert "--url" not in r.stdout  # test-only option stays hidden


def test_fetch_without_network_explains_and_fails(tmp_path: Path) -> None:
    r = run_cli(["data", "fetch", "pamap2", "--to", str(tmp_path / "dl"), "--timeout", "3",
                 "--url", "http://127.0.0.1:9/pamap2.zip"], timeout=60)
    assert r.returncode == 1
    assert "could not download pamap2" in r.stderr and "--data-dir" in r.stderr
    assert "https://archive.ics.uci.edu/dataset/231/" in r.stderr
    assert not list((tmp_path / "dl").iterdir())  # no partial file left


def test_mpi_train_on_real_spar(tmp_path: Path) -> None:
    need_shared()
    out = tmp_path / "r.h5"
    r = run_mpi(5, ["train", "--dataset", "spar", "--data-dir", str(SPAR_DIR), "--rounds", "3", "--out", str(out),
                    "--quiet"], timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    run = read_log(out)
    f1 = np.asarray(run.rounds["macro_f1"])
    assert len(f1) == 3 and np.isfinite(f1).all() and (f1 > 0).all()
    assert run.attrs["dataset"] == "spar"
    assert json.loads(run.attrs["modalities"]) == ["acc", "gyro"]
    print("SPAR macro-F1 per round:", f1.tolist())
