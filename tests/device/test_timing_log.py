"""End to end: real-clock busy times follow the profiles (checked as ratios inside one run: at least
the targets, the fast client below the slow one's target), real rounds last at least the virtual
ones, and the log shows each client's tier, busy, idle, modeled energy and NaN measured energy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from relief_mpi.data import synthetic
from relief_mpi.log.hdf5 import read_log
from relief_mpi.model.paper import PaperNet
from tests.helpers import run_here, run_mpi

WIDTHS = (8, 16)
BATCH, WINDOW = 32, 128  # the default batch; 2.56 s windows of the 50 Hz synthetic data


def full_step_flops() -> float:
    """One whole training step of the model the runs below use (4 modalities, every encoder
    trained), counted at once with torch's flop counter: the oracle for the per-part costs the
    emulator measures and adds up."""
    spec = synthetic.spec()
    model = PaperNet([len(m.channels) for m in spec.modalities], len(spec.classes), encoder_channels=WIDTHS)
    xs = [torch.zeros(BATCH, len(m.channels), WINDOW) for m in spec.modalities]
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(xs), torch.zeros(BATCH, dtype=torch.long)).backward()
    return float(fc.get_total_flops())


FULL_STEP_FLOPS = full_step_flops()
FAST_STEP_S, SLOW_STEP_S = 0.5, 2.0  # slow enough that sleeping dominates even on a busy 2-core host

PROFILE = """name = "{name}"
flops = {flops:.6g}
threads = 1
memory_mb = 512
p_busy_w = {p_busy}
p_idle_w = 1.0
uplink_mbps = 8
downlink_mbps = 16
latency_ms = 20
energy_per_bit_nj = 100
sensors = "all"
"""

FLEET = """
[[tier]]
name = "fast"
profile = "slow-fast"
ranks = [1]

[[tier]]
name = "slow"
profile = "slow-slow"
ranks = [2]
"""

# fedavg-sgd: every encoder runs and trains for exactly --local-steps steps (the published presets
# run --local-epochs over all windows instead).
ARGS = ["--rounds", "2", "--strategy", "fedavg-sgd", "--local-steps", "2", "--encoder-channels", "8,16",
        "--eval-every", "100", "--quiet", "--overwrite"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("timing")
    prof = d / "profiles"
    prof.mkdir()
    (prof / "fast.toml").write_text(PROFILE.format(name="slow-fast", flops=FULL_STEP_FLOPS / FAST_STEP_S, p_busy=4))
    (prof / "slow.toml").write_text(PROFILE.format(name="slow-slow", flops=FULL_STEP_FLOPS / SLOW_STEP_S, p_busy=2))
    fleet = d / "fleet.toml"
    fleet.write_text(FLEET)
    common = ["train", "--fleet", str(fleet), "--profiles", str(prof), *ARGS]
    real = d / "real.h5"
    r = run_mpi(3, [*common, "--clock", "real", "--out", str(real)], timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    virtual = d / "virtual.h5"
    v = run_here([*common, "--clock", "virtual", "--transport", "inprocess", "--clients", "2", "--out", str(virtual)],
                 timeout=400)
    assert v.returncode == 0, v.stderr[-3000:]
    return {"real": read_log(real), "virtual": read_log(virtual)}


def test_step_flops_match_the_model(scenario: dict) -> None:
    costs = json.loads(scenario["real"].attrs["flops_per_step"])
    full = sum(costs["enc_fwd"]) + sum(costs["enc_bwd"]) + costs["top_fwd"] + costs["top_bwd"]
    assert full == pytest.approx(FULL_STEP_FLOPS, rel=0.01)


def test_real_clock_busy_times_follow_profiles(scenario: dict) -> None:
    """Ratios inside one run, no wall-time band: a loaded host only lengthens sleeps and compute, so
    every check below is one it cannot break (the slow client's target is 4x the fast one's)."""
    log, virt = scenario["real"], scenario["virtual"]
    busy, steps, lag = log.clients["busy_s"], log.clients["steps"], log.clients["lag_s"]
    assert np.all(steps == 2)  # same work on both clients
    target = virt.clients["busy_s"]  # the same steps on the virtual clock: exactly the profiles' targets
    np.testing.assert_allclose(target[:, 1] / target[:, 0], SLOW_STEP_S / FAST_STEP_S, rtol=1e-9)
    print(f"\nreal clock busy_s per round {busy.tolist()}, targets {target.tolist()}, lag_s {lag.tolist()}")
    # measured, not computed: a step lasts max(target, host) plus the sleep's overrun, so busy is at
    # least target + lag, and more than the target (a sleep never ends early, and never on the dot)
    assert np.all(busy >= target + lag - 1e-9), (busy, target, lag)
    assert np.all(busy > target)
    # each client sleeps to its own profile: the fast client's busy time less its lag (its target
    # plus its sleeps' overrun) stays below the slow client's target; sleeping the slow profile would
    # reach it, and a loaded host would have to overrun the fast client's two sleeps by 1.5 s each
    assert np.all(busy[:, 0] - lag[:, 0] < target[:, 1]), (busy, lag, target)
    assert np.all(log.clients["compute_wall_s"] > 0)
    # and the server's own wall clock saw the rounds last at least as long as the slowest client
    span = busy + log.clients["download_s"] + log.clients["upload_s"]
    assert np.all(log.rounds["wall_time_s"] >= span.max(axis=1) * 0.98)


def test_real_rounds_last_at_least_the_virtual_rounds(scenario: dict) -> None:
    real, virt = scenario["real"], scenario["virtual"]
    v = virt.rounds["virtual_time_s"]
    assert np.all(v > 2 * SLOW_STEP_S)
    # virtual clock: no sleeping, the busy time is exactly the targets (2 steps x step FLOPs / speed)
    costs = json.loads(virt.attrs["flops_per_step"])
    full = sum(costs["enc_fwd"]) + sum(costs["enc_bwd"]) + costs["top_fwd"] + costs["top_bwd"]
    speeds = [p["flops"] for p in json.loads(virt.attrs["profiles"])]
    np.testing.assert_allclose(virt.clients["busy_s"], [[2 * full / f for f in speeds]] * 2, rtol=1e-9)
    print(f"\nround s: virtual run {v.tolist()}, real run wall {real.rounds['wall_time_s'].tolist()}, "
          f"real run emulated {real.rounds['virtual_time_s'].tolist()}")
    # real clock: the emulated round (each client's measured busy + transfers, the slowest) is the
    # virtual round plus what overruns and a slow host add, never less; so is the server's wall round
    assert np.all(real.rounds["virtual_time_s"] >= v), (real.rounds["virtual_time_s"], v)
    assert np.all(real.rounds["wall_time_s"] >= 0.98 * v), (real.rounds["wall_time_s"], v)


def test_real_run_logs_throttle_and_meter(scenario: dict) -> None:
    log = scenario["real"]
    profiles = json.loads(log.attrs["profiles"])
    assert json.loads(log.attrs["energy_source"]) == ["none", "none"]
    assert np.all(np.isnan(log.clients["energy_measured_j"]))
    th = [p["throttle"] for p in profiles]
    assert [t["local_clients"] for t in th] == [2, 2]
    assert all(t["threads"] == 1 for t in th)
    if all(t["affinity"] == "pinned" for t in th):
        assert th[0]["cores"] and th[1]["cores"]
        assert set(th[0]["cores"]) != set(th[1]["cores"]) or len(th[0]["cores"]) == 0


def test_log_shows_tier_busy_idle_energy(tmp_path: Path) -> None:
    out = tmp_path / "default.h5"
    r = run_here(["train", "--transport", "inprocess", "--clients", "4", "--rounds", "1", "--local-epochs", "1",
                  "--encoder-channels", "8,16", "--quiet", "--out", str(out)], timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    log = read_log(out)
    profiles = json.loads(log.attrs["profiles"])
    assert [p["tier"] for p in profiles] == ["high", "mid", "low", "low"]
    assert [p["profile"] for p in profiles] == ["jetson-agx-orin", "jetson-orin-nano", "raspberry-pi-4",
                                                "raspberry-pi-4"]
    assert json.loads(log.attrs["energy_source"]) == ["none"] * 4
    c = log.clients
    busy, idle = c["busy_s"][0], c["idle_s"][0]
    assert np.all(busy > 0) and np.all(idle >= 0)
    span = busy + c["download_s"][0] + c["upload_s"][0]
    round_s = log.rounds["virtual_time_s"][0]
    assert round_s == pytest.approx(span.max())
    np.testing.assert_allclose(idle, round_s - span, atol=1e-9)
    assert idle[np.argmax(span)] == 0.0
    # modeled energy = P_busy * busy + P_idle * (round - busy) + J/bit * bits, from the logged profile
    bits = 8 * (c["bytes_up"][0] + c["bytes_down"][0])
    expect = [p["p_busy_w"] * b + p["p_idle_w"] * (round_s - b) + p["energy_per_bit_nj"] * 1e-9 * n
              for p, b, n in zip(profiles, busy, bits, strict=True)]
    np.testing.assert_allclose(c["energy_j"][0], expect, rtol=1e-9)
    assert np.all(np.isnan(c["energy_measured_j"]))
    assert np.isnan(log.rounds["energy_measured_j"][0]) and log.rounds["energy_j"][0] > 0
