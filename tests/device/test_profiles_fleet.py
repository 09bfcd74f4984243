"""Shipped profiles (sources, sanity), profile/fleet validation, and `relief-mpi fleet show`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from relief_mpi.cli import main
from relief_mpi.device.fleet import load_fleet, resolve_fleet
from relief_mpi.device.profiles import _REQUIRED, SHIPPED_DIR, load_profiles, parse_profile
from relief_mpi.errors import ReliefError
from tests.helpers import run_cli

SHIPPED = ("jetson-agx-orin", "jetson-orin-nano", "jetson-nano", "raspberry-pi-4", "workstation")


def test_shipped_profiles_parse_and_are_ordered() -> None:
    p = load_profiles()
    assert set(SHIPPED) <= set(p)
    assert p["workstation"].native
    speeds = [p[n].flops for n in ("jetson-agx-orin", "jetson-orin-nano", "jetson-nano", "raspberry-pi-4")]
    assert speeds == sorted(speeds, reverse=True)
    for name in SHIPPED:
        assert p[name].p_busy_w > p[name].p_idle_w > 0
        assert p[name].threads >= 1 and p[name].memory_mb > 0


def test_every_shipped_figure_has_a_comment() -> None:
    """Each required field sits in a block of assignments that starts with a comment (its source)."""
    for f in SHIPPED_DIR.glob("*.toml"):
        commented = False
        for line in f.read_text().splitlines():
            s = line.strip()
            if s.startswith("#"):
                commented = True
                continue
            if not s:
                commented = False
                continue
            key = s.split("=", 1)[0].strip()
            if key in _REQUIRED:
                assert commented, f"{f.name}: {key} has no source comment above it"


def test_low_tier_profile_is_emulable_on_a_small_host() -> None:
    """The Pi 4's emulated full step must stay far above what a 2-core host needs per client."""
    from relief_mpi.config import RunConfig
    from relief_mpi.run_setup import build_setup

    s = build_setup(RunConfig(), 4)
    every = range(len(s.data.spec.modalities))
    step_s = s.costs.step(every, every) / load_profiles()["raspberry-pi-4"].flops
    assert 0.05 < step_s < 1.0


def bad_profile(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "p.toml"
    f.write_text(text)
    return f


GOOD = ("flops = 1e9\nthreads = 1\nmemory_mb = 100\np_busy_w = 2\np_idle_w = 1\nuplink_mbps = 1\n"
        "downlink_mbps = 1\nlatency_ms = 1\nenergy_per_bit_nj = 1\n")


@pytest.mark.parametrize("text,needle", [
    (GOOD.replace("threads = 1", "threads = 0"), "threads"),
    (GOOD + "flopz = 3\n", "unknown field"),
    (GOOD.replace("uplink_mbps = 1", "uplink_mbps = 0"), "uplink_mbps"),
    (GOOD.replace("flops = 1e9", "flops = -1"), "flops"),
    (GOOD + "compute = \"tpu\"\n", "compute"),
    ("flops = [", "not valid TOML"),
    (GOOD.replace("p_idle_w = 1\n", ""), "missing field"),
    (GOOD + "sensors = [\"acc\", \"gyr\"]\n", "unknown sensor 'gyr'"),
])
def test_bad_profiles(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ReliefError, match=needle):
        parse_profile(bad_profile(tmp_path, text))


def fleet_file(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "fleet.toml"
    f.write_text(text)
    return f


HAND = """
[[tier]]
name = "gateway"
profile = "jetson-agx-orin"
ranks = [3]

[[tier]]
name = "lab"
profile = "jetson-orin-nano"
sensors = ["acc", "ecg"]
hosts = "lab-*"

[[tier]]
name = "cheap"
profile = "raspberry-pi-4"
sensors = ["acc"]
fraction = 1.0
"""


def test_hand_written_fleet_resolves_ranks_hosts_fractions(tmp_path: Path) -> None:
    tiers = load_fleet(fleet_file(tmp_path, HAND))
    hosts = ["head", "lab-1", "pi-1", "head", "lab-2", "pi-2"]
    devs = resolve_fleet(tiers, 5, load_profiles(), hosts)
    assert [d.tier for d in devs] == ["lab", "cheap", "gateway", "lab", "cheap"]
    assert devs[0].sensors == ("acc", "ecg") and devs[2].sensors is None


@pytest.mark.parametrize("fractions, total", [((0.1, 0.1), "0.2"), ((0.9, 0.9), "1.8"), ((0.0, 0.0), "0")])
def test_resolve_fleet_refuses_fractions_not_summing_to_1(fractions: tuple[float, float], total: str) -> None:
    """Tiers built in code skip load_fleet's check: the same one line, not a KeyError or StopIteration."""
    from relief_mpi.device.fleet import Tier

    tiers = [Tier("a", "raspberry-pi-4", None, fractions[0]), Tier("b", "jetson-nano", None, fractions[1])]
    with pytest.raises(ReliefError, match=rf"^fleet: tier fractions sum to {total}, must sum to 1$"):
        resolve_fleet(tiers, 3, load_profiles())


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             args: list[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["relief-mpi", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


BAD_FLEETS = {
    "unknown profile": ('[[tier]]\nprofile = "jetson-tx9"\nfraction = 1.0\n', "unknown profile 'jetson-tx9'"),
    "fractions": ('[[tier]]\nprofile = "raspberry-pi-4"\nfraction = 0.5\n'
                  '[[tier]]\nprofile = "jetson-nano"\nfraction = 0.3\n', "fractions sum to 0.8"),
    "too many ranks": ('[[tier]]\nprofile = "raspberry-pi-4"\nranks = [1, 2, 3, 4]\n', "names 4 clients"),
    "bad toml": ('[[tier]\nprofile = "x"\n', "not valid TOML"),
    "typo": ('[[tier]]\nprofile = "raspberry-pi-4"\nfracton = 1.0\n', "unknown key(s) fracton"),
    "no ranks left": ('[[tier]]\nprofile = "raspberry-pi-4"\nranks = [1]\n', "match no tier"),
    "sensor typo": ('[[tier]]\nprofile = "raspberry-pi-4"\nsensors = ["acc", "gyr"]\nfraction = 1.0\n',
                    "tier 'tier1': unknown sensor 'gyr' (known: acc, gyro,"),
    "no dataset sensor": ('[[tier]]\nprofile = "raspberry-pi-4"\nsensors = ["hr"]\nfraction = 1.0\n',
                          "client rank 1 (tier tier1) has sensors ['hr'], none of which the synthetic dataset has "
                          "(acc, gyro, mag, ecg), nor do the other clients on rank(s) 2, 3; fix the fleet"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLEETS))
def test_bad_fleets_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], case: str) -> None:
    text, needle = BAD_FLEETS[case]
    code, out, err = run_main(monkeypatch, capsys, ["fleet", "show", "--fleet", str(fleet_file(tmp_path, text)),
                                                    "-n", "4"])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err + out


def test_fleet_show_default_subprocess() -> None:
    r = run_cli(["fleet", "show", "-n", "9"], timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.splitlines() if re.match(r"^\s+\d+\s", ln)]
    assert [int(x[0]) for x in rows] == list(range(1, 9))
    tiers = [x[4] for x in rows]
    assert tiers == ["high"] * 2 + ["mid"] * 2 + ["low"] * 4
    assert "ecg        2 client(s): ranks 1, 2  <- rare modality" in r.stdout
    assert "acc        8 client(s): ranks 1, 2, 3, 4, 5, 6, 7, 8" in r.stdout


def test_fleet_show_hand_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "sensor-box.toml").write_text('name = "sensor-box"\n' + GOOD)
    fleet = fleet_file(tmp_path, HAND.replace('profile = "raspberry-pi-4"', 'profile = "sensor-box"'))
    code, out, err = run_main(monkeypatch, capsys, [
        "fleet", "show", "--fleet", str(fleet), "--profiles", str(prof), "-n", "6",
        "--hosts", "head,lab-1,pi-1,head,lab-2,pi-2"])
    assert code == 0, err
    rows = {int(ln.split()[0]): ln for ln in out.splitlines() if re.match(r"^\s+\d+\s", ln)}
    assert "hosts lab-*" in rows[1] and "jetson-orin-nano" in rows[1] and "acc ecg" in rows[1]
    assert "rank" in rows[3] and "gateway" in rows[3] and "acc gyro mag ecg" in rows[3]
    assert "fraction 1" in rows[2] and "sensor-box" in rows[2]
    assert "ecg        3 client(s): ranks 1, 3, 4" in out
    assert "gyro       1 client(s): ranks 3" in out


def test_modality_cohorts_rare_by_the_runs_rule() -> None:
    from relief_mpi.device.fleet import modality_cohorts

    names = ("acc", "gyro", "ecg")
    cohorts = modality_cohorts({1: ("acc", "gyro"), 2: ("acc", "ecg"), 3: ()}, names)
    assert [(c.modality, c.ranks, c.rare) for c in cohorts] == [
        ("acc", (1, 2), False), ("gyro", (1,), False), ("ecg", (2,), True)]  # a tie: the later one
    assert [c.rare for c in modality_cohorts({1: ("acc",), 2: ("acc",)}, names)] == [False] * 3  # one trained


def test_check_sensors_names_the_client_when_ranks_host_several() -> None:
    from relief_mpi.device.fleet import ClientDevice
    from relief_mpi.run_setup import check_sensors

    p = load_profiles()["raspberry-pi-4"]
    devs = [ClientDevice(k, 1 + k % 2, "low", p, ("hr",) if k else None) for k in range(4)]
    sets = [("acc",), (), (), ()]
    with pytest.raises(ReliefError, match=r"^client 1 \(rank 2, tier low\) has sensors \['hr'\], none of which the "
                       r"spar dataset has \(acc, gyro\), nor do the other clients on rank\(s\) 1, 2; fix the fleet$"):
        check_sensors(devs, sets, "spar", ("acc", "gyro"))
    check_sensors(devs[:1], sets[:1], "spar", ("acc", "gyro"))


def test_shipped_fleets_resolve() -> None:
    from relief_mpi.device.fleet import DEFAULT_FLEET

    profiles = load_profiles()
    for f in DEFAULT_FLEET.parent.glob("*.toml"):
        tiers = load_fleet(f)
        devs = resolve_fleet(tiers, 6, profiles, ["head", "head", "orin-1", "pi", "pi", "orin-2", "pi"])
        assert len(devs) == 6 and all(d.profile.name in profiles for d in devs)
    mixed = resolve_fleet(load_fleet(DEFAULT_FLEET.parent / "example-mixed.toml"), 6, profiles,
                          ["head", "head", "orin-1", "pi", "pi", "orin-2", "pi"])
    assert [d.tier for d in mixed] == ["gateway", "high", "mid", "low", "high", "low"]
