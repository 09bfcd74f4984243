"""Hostfile parsing, the shipped example hostfiles and fleets, and `hosts check`'s verdict logic."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from relief_mpi.cli.hosts import RankInfo, cohort_lines, disagreement, table, verdict
from relief_mpi.device.fleet import load_fleet, resolve_fleet
from relief_mpi.device.profiles import load_profiles
from relief_mpi.errors import ReliefError
from relief_mpi.hostfile import Hostfile, parse_hostfile
from tests.helpers import REPO, run_here

HOSTFILES = REPO / "hostfiles"
EXAMPLES = ("single", "workstation-2orin", "lab-jetsons")


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_parse_alike_in_both_syntaxes(name: str) -> None:
    mp, om = parse_hostfile(HOSTFILES / f"{name}.mpich"), parse_hostfile(HOSTFILES / f"{name}.openmpi")
    assert (mp.syntax, om.syntax) == ("mpich", "openmpi")
    assert [(e.host, e.slots) for e in mp.entries] == [(e.host, e.slots) for e in om.entries]
    assert mp.render("openmpi") == om.render("openmpi")
    again = parse_hostfile_text(om.render("mpich"))
    assert again.syntax == "mpich"
    assert [(e.host, e.slots) for e in again.entries] == [(e.host, e.slots) for e in mp.entries]


def parse_hostfile_text(text: str) -> Hostfile:
    with tempfile.NamedTemporaryFile("w", suffix=".hosts", delete=False) as f:
        f.write(text)
    try:
        return parse_hostfile(f.name)
    finally:
        Path(f.name).unlink()


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_fleets_cover_every_rank_of_their_hostfile(name: str) -> None:
    hf = parse_hostfile(HOSTFILES / f"{name}.mpich")
    hosts = [e.host for e in hf.entries for _ in range(e.slots)]  # MPICH/Open MPI fill hosts in order
    devices = resolve_fleet(load_fleet(HOSTFILES / f"{name}.fleet.toml"), len(hosts) - 1,
                            load_profiles(HOSTFILES / "profiles"), hosts)
    assert len(devices) == len(hosts) - 1
    for d in devices:
        if hosts[d.rank].startswith(("orin", "jetson")):
            assert d.profile.native, (hosts[d.rank], d.profile.name)


def test_workstation_fleet_keys_by_host_name() -> None:
    hosts = ["ws01", "ws01", "ws01", "orin-agx-01", "orin-agx-02"]
    devices = resolve_fleet(load_fleet(HOSTFILES / "workstation-2orin.fleet.toml"), 4,
                            load_profiles(HOSTFILES / "profiles"), hosts)
    assert [d.profile.name for d in devices] == ["raspberry-pi-4"] * 2 + ["jetson-agx-orin-native"] * 2


@pytest.mark.parametrize("text, kind, slots", [
    ("a\nb\n", "plain", 2),
    ("# c\na:2  # two\n\nb:3\n", "mpich", 5),
    ("a slots=4\nb slots=2 max_slots=8\nc\n", "openmpi", 7),
    ("10.0.0.1:2\n10.0.0.2\n", "mpich", 3),
    ("node-1.lab.example.org max_slots=2\n", "openmpi", 2),
])
def test_parse_good(text: str, kind: str, slots: int) -> None:
    hf = parse_hostfile_text(text)
    assert (hf.syntax, hf.total_slots) == (kind, slots)


@pytest.mark.parametrize("text, line, words", [
    ("a:2\nb:x\n", 2, "slot count 'x'"),
    ("a:0\n", 1, "slot count '0'"),
    ("a slots=two\n", 1, "slots='two'"),
    ("a slots=2\nb:2\n", 2, "one file, one syntax"),
    ("a:2\nb slots=2\n", 2, "one file, one syntax"),
    ("a cores=2\n", 1, "unknown field 'cores=2'"),
    ("a:2 slots=3\n", 1, "do not mix"),
    ("bad_host!\n", 1, "not a host name"),
    ("a slots=4 max_slots=2\n", 1, "max_slots=2 is smaller"),
])
def test_parse_bad_names_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ReliefError) as e:
        parse_hostfile_text(text)
    msg = str(e.value)
    assert f" line {line}: " in msg and words in msg and msg.startswith("hostfile ") and "\n" not in msg


def test_parse_empty_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ReliefError, match="no hosts"):
        parse_hostfile_text("# only a comment\n\n")
    with pytest.raises(ReliefError, match="hostfile .*nope"):
        parse_hostfile(tmp_path / "nope")


def _info(rank: int, host: str = "h0", **kw: str) -> RankInfo:
    base = dict(host=host, address="10.0.0.1", arch="x86_64", relief="0.1.0", python="3.11.7",
                torch="2.13.0+cpu", mpi="MPICH 5.0.2 (MPI 5.0)", profile="server" if rank == 0 else "p",
                tier="-" if rank == 0 else "t", modalities="acc", device="cpu", dataset="synthetic",
                fingerprint="abc")
    base.update(kw)
    return RankInfo(rank, **base)


def test_agreement_rules() -> None:
    infos = [_info(0), _info(1), _info(2, "h1")]
    assert disagreement(infos) is None
    # minor versions may differ (nothing is pickled), major versions may not
    assert disagreement([*infos[:2], replace(infos[2], python="3.10.12", torch="2.5.1")]) is None
    msg = disagreement([*infos[:2], replace(infos[2], torch="3.0.0")])
    assert msg and "torch major version" in msg and "rank 2 (h1)" in msg
    msg = disagreement([*infos[:2], replace(infos[2], relief="0.2.0")])
    assert msg and msg.startswith("ranks disagree on the relief-mpi version: 0.1.0 on ranks 0-1 (h0); 0.2.0")
    msg = disagreement([*infos[:2], replace(infos[2], fingerprint="xyz")])
    assert msg and "data fingerprint" in msg
    msg = disagreement([*infos[:2], replace(infos[2], mpi="Open MPI 5.0.8 (MPI 3.1)")])
    assert msg and "MPI library" in msg


def test_verdict_errors_and_slots(tmp_path: Path) -> None:
    infos = [_info(0), _info(1), _info(2)]
    assert verdict(infos, None, 3) is None
    assert verdict([infos[0], replace(infos[1], error="no data"), infos[2]], None, 3) == "rank 1 on h0: no data"
    hf = tmp_path / "h"
    hf.write_text("h0:2\n")
    msg = verdict(infos, parse_hostfile(hf), 3)
    assert msg and "has 2 slot(s) on 1 host(s) but the job runs 3 ranks" in msg
    hf.write_text("h0:3\n")
    assert verdict(infos, parse_hostfile(hf), 3) is None


def test_cohort_lines_in_dataset_order_rare_marked() -> None:
    """Modalities in rank 0's (the dataset's) order, only those some client holds; a NONE rank is in no cohort."""
    infos = [_info(0, modalities="all (acc,gyro,mag,ecg)"), _info(1, modalities="acc,ecg"),
             _info(2, modalities="acc,gyro"), _info(3, modalities="acc,gyro"), _info(4, modalities="NONE")]
    assert cohort_lines(infos) == ["cohort acc: 3 clients (ranks 1-3)", "cohort gyro: 2 clients (ranks 2-3)",
                                   "cohort ecg: 1 client (rank 1)  <- rare modality"]
    assert cohort_lines(infos[:1] + [_info(1, modalities="acc")]) == ["cohort acc: 1 client (rank 1)"]


def test_record_round_trip_and_truncation() -> None:
    info = _info(1, error="x" * 5000)
    text = info.encode()
    assert len(text.encode()) <= 2048
    back = RankInfo.decode(1, text)
    assert back.host == "h0" and back.error.endswith("...")
    assert table([_info(0), _info(1)])[0].startswith("rank ")


def test_hosts_list_cli(tmp_path: Path) -> None:
    r = run_here(["hosts", "list", str(HOSTFILES / "lab-jetsons.openmpi"), "--as", "mpich"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["head:1", "node01:8"]
    r = run_here(["hosts", "list", str(HOSTFILES / "lab-jetsons.mpich"), "--slots"])
    assert r.stdout.strip() == "24"
    bad = tmp_path / "bad.hosts"
    bad.write_text("a:2\nb:zz\n")
    r = run_here(["hosts", "list", str(bad)])
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: hostfile {bad} line 2: slot count 'zz' is not a whole number in 1..65536 " \
                               "(MPICH syntax is host:N): 'b:zz'"
