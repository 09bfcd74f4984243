"""Bad input: one clear error naming the file and the line; `error: ...` and exit 2 on the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from relief_mpi.config import DataConfig
from relief_mpi.data import mhealth, pamap2, spar
from relief_mpi.errors import ReliefError
from tests.data.layouts import write_mhealth, write_pamap2


def _edit_line(path: Path, lineno: int, edit) -> None:  # noqa: ANN001
    lines = path.read_text().splitlines()
    lines[lineno - 1] = edit(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")


def test_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    write_mhealth(tmp_path, subjects=(1, 2))
    f = tmp_path / "MHEALTHDATASET" / "mHealth_subject2.log"
    _edit_line(f, 717, lambda s: s.rsplit("\t", 2)[0])  # drop two columns
    with pytest.raises(ReliefError) as e:
        mhealth.load(tmp_path, DataConfig(dataset="mhealth"))
    msg = str(e.value)
    assert str(f) in msg and "line 717" in msg and "22 columns, expected 24" in msg
    assert "\n" not in msg


def test_non_numeric_value_names_file_line_and_column(tmp_path: Path) -> None:
    write_pamap2(tmp_path, subjects=(101,))
    f = tmp_path / "PAMAP2_Dataset" / "Protocol" / "subject101.dat"
    _edit_line(f, 1500, lambda s: " ".join(["8.5", "4", "abc", *s.split()[3:]]))
    with pytest.raises(ReliefError, match=r"subject101\.dat: line 1500, column 3: 'abc' is not a number"):
        pamap2.load(tmp_path, DataConfig(dataset="pamap2"))


def test_bad_labels_and_missing_inputs(tmp_path: Path) -> None:
    write_mhealth(tmp_path, subjects=(3,))
    f = tmp_path / "MHEALTHDATASET" / "mHealth_subject3.log"
    _edit_line(f, 9, lambda s: s.rsplit("\t", 1)[0] + "\t13")
    with pytest.raises(ReliefError, match=r"mHealth_subject3\.log: line 9: label 13"):
        mhealth.load(tmp_path, DataConfig(dataset="mhealth"))
    with pytest.raises(ReliefError, match="no such file or folder"):
        pamap2.load(tmp_path / "nope", DataConfig(dataset="pamap2"))
    with pytest.raises(ReliefError, match="no PAMAP2 files found"):
        pamap2.load(tmp_path, DataConfig(dataset="pamap2"))
    with pytest.raises(ReliefError, match="no spar_watch_10subj.npz found"):
        spar.load(tmp_path, DataConfig(dataset="spar"))
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ReliefError, match=r"x\.npz: not a readable SPAR npz"):
        spar.load(bad, DataConfig(dataset="spar"))


def test_cli_reports_bad_file_with_exit_2(tmp_path: Path, relief) -> None:  # noqa: ANN001
    write_pamap2(tmp_path, subjects=(101, 102))
    f = tmp_path / "PAMAP2_Dataset" / "Protocol" / "subject102.dat"
    _edit_line(f, 42, lambda s: s + " 1.0")  # 55 columns
    code, _, err = relief(["data", "info", "--dataset", "pamap2", "--data-dir", str(tmp_path)])
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(f) in last and "line 42: 55 columns, expected 54" in last
    assert "Traceback" not in err


def test_cli_missing_folder_train_and_info_exit_2(tmp_path: Path, relief) -> None:  # noqa: ANN001
    missing = tmp_path / "no-such-dir"
    code, _, err = relief(["train", "--transport", "inprocess", "--dataset", "mhealth", "--data-dir", str(missing),
                           "--rounds", "1", "--out", str(tmp_path / "r.h5")])
    assert code == 2 and f"error: {missing}: no such file or folder" in err, err
    code, _, err = relief(["data", "info", "--dataset", "spar"])
    assert code == 2 and "needs --data-dir" in err
