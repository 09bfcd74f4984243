"""`relief-mpi fleet`: show how a fleet file maps ranks to devices; calibrate a profile's speed."""

from __future__ import annotations

import fnmatch
import math
import time
from typing import Any

import click

from relief_mpi.config import DATASETS, DataConfig, RunConfig
from relief_mpi.data.registry import load_raw, modality_set_for
from relief_mpi.data.windows import window_dataset
from relief_mpi.device.fleet import ClientDevice, Tier, load_fleet, modality_cohorts, resolve_fleet
from relief_mpi.device.profiles import load_profiles
from relief_mpi.errors import ReliefError

__all__ = ["calibrate", "command", "show"]


@click.group("fleet")
def command() -> None:
    """Device fleets: which profile, sensors and cohorts each client rank gets."""


def _how(d: ClientDevice, tiers: list[Tier], hostnames: list[str] | None) -> str:
    """Why a rank got its tier, in resolve_fleet's order: explicit rank, host pattern, fraction."""
    t = next(t for t in tiers if t.name == d.tier)
    if d.rank in t.ranks:
        return "rank"
    if t.hosts and hostnames is not None and fnmatch.fnmatch(hostnames[d.rank], t.hosts):
        return f"hosts {t.hosts}"
    return f"fraction {t.fraction:g}"


def _gflops(f: float) -> str:
    return "native" if math.isinf(f) else f"{f / 1e9:.1f}"


@command.command("show")
@click.option("--fleet", type=click.Path(dir_okay=False), default=None,
              help="Fleet file (TOML); default: the shipped three-tier fleet.")
@click.option("-n", "world_size", type=click.IntRange(min=2), required=True,
              help="MPI world size, as in `mpirun -n N` (rank 0 = server, ranks 1..N-1 = clients).")
@click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False), default=None,
              help="Extra device profile folder (*.toml) on top of the shipped ones.")
@click.option("--dataset", type=click.Choice(DATASETS), default="synthetic", show_default=True,
              help="Dataset whose modalities the sensors are matched against.")
@click.option("--data-dir", type=click.Path(), default=None, help="The dataset's files (not for synthetic).")
@click.option("--modality-by", type=click.Choice(["type", "position"]), default="type", show_default=True,
              help="Modalities by sensor type or by body position.")
@click.option("--hosts", default=None,
              help="Comma-separated host names of ranks 0..N-1 (e.g. from `mpirun -n N hostname`), to apply the "
                   "fleet's host patterns; without it host patterns match nothing.")
def show(**kw: Any) -> None:
    """Print rank -> host pattern / profile -> tier -> modalities, then the cohort of each modality.

    \b
    relief-mpi fleet show -n 9
    relief-mpi fleet show --fleet my-fleet.toml --profiles my-profiles/ -n 5
    """
    n = kw["world_size"]
    hostnames = _hostnames(kw["hosts"], n)
    profiles = load_profiles(kw["profiles_dir"])
    tiers = load_fleet(kw["fleet"])
    devices = resolve_fleet(tiers, n - 1, profiles, hostnames)
    if kw["dataset"] != "synthetic" and kw["data_dir"] is None:
        raise ReliefError(f"--dataset {kw['dataset']} needs --data-dir (the folder with its original files)")

    raw = load_raw(DataConfig(dataset=kw["dataset"], data_dir=kw["data_dir"], modality_by=kw["modality_by"]), 0)
    names = raw.spec.modality_names()
    sets = [modality_set_for(d.sensors, names) for d in devices]
    click.echo(f"fleet: {kw['fleet'] or 'default (shipped three-tier fleet)'}")
    click.echo(f"world: -n {n} = rank 0 server + {n - 1} client rank(s); dataset {raw.spec.name}, "
               f"modalities {', '.join(names)}")
    click.echo("")
    for line in _rank_table(devices, sets, tiers, hostnames):
        click.echo(line)
    click.echo("")
    click.echo("cohorts (the client ranks holding each modality):")
    for line in _cohort_lines(devices, sets, names):
        click.echo(line)
    empty = [t.name for t in tiers if not any(d.tier == t.name for d in devices)]
    if empty:
        click.echo(f"note: tier(s) {', '.join(empty)} get no client at -n {n}")
    from relief_mpi.run_setup import check_sensors

    check_sensors(devices, sets, raw.spec.name, names)


def _hostnames(hosts: str | None, n: int) -> list[str] | None:
    """--hosts as one name per rank 0..n-1 (None without it: host patterns then match nothing)."""
    if not hosts:
        return None
    hostnames = [h.strip() for h in hosts.split(",")]
    if len(hostnames) != n:
        raise ReliefError(f"--hosts lists {len(hostnames)} names but -n {n} needs one per rank (0..{n - 1})")
    return hostnames


def _rank_table(devices: list[ClientDevice], sets: list[tuple[str, ...]], tiers: list[Tier],
                hostnames: list[str] | None) -> list[str]:
    """One aligned line per client rank: how it got its tier, its profile's speed, link and power."""
    rows = [("rank", "assigned by", "profile", "tier", "modalities", "GFLOP/s", "up/down Mbit/s", "P busy/idle W")]
    for d, s in zip(devices, sets, strict=True):
        p = d.profile
        rows.append((str(d.rank), _how(d, tiers, hostnames), p.name, d.tier, " ".join(s) or "(none)",
                     _gflops(p.flops), f"{p.uplink_mbps:g}/{p.downlink_mbps:g}", f"{p.p_busy_w:g}/{p.p_idle_w:g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = (0, 5)  # rank and GFLOP/s are numbers
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]


def _cohort_lines(devices: list[ClientDevice], sets: list[tuple[str, ...]], names: tuple[str, ...]) -> list[str]:
    """Per modality the client ranks holding it (device.fleet.modality_cohorts), never-trained ones too."""
    lines = []
    for c in modality_cohorts({d.rank: s for d, s in zip(devices, sets, strict=True)}, names):
        note = "  <- rare modality" if c.rare else ""
        body = f"ranks {', '.join(map(str, c.ranks))}" if c.ranks else "nobody (this modality is never trained)"
        lines.append(f"  {c.modality:<8} {len(c.ranks):>3} client(s): {body}{note}")
    return lines


@command.command("calibrate")
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True, help="Timed steps.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch threads.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def calibrate(steps: int, threads: int, batch_size: int, device: str) -> None:
    """Measure this machine's effective training FLOP/s for the relief-mpi model.

    Times full local steps (all modalities, forward + backward + SGD) of the default model on
    synthetic windows and divides the FLOPs that relief_mpi/model/flops.py counts for one step by
    the time. Run it on a real device to replace a profile's estimated `flops` with a measurement;
    docs/devices.md explains how the shipped figures were derived from it.
    """
    import torch
    import torch.nn.functional as F

    from relief_mpi.client import split_modalities
    from relief_mpi.model.flops import measure_costs
    from relief_mpi.model.net import MultimodalNet
    from relief_mpi.model.optim import Sgd

    if device == "cuda" and not torch.cuda.is_available():
        raise ReliefError("--device cuda: torch sees no CUDA device here")
    torch.set_num_threads(threads)
    cfg = RunConfig()
    raw = load_raw(cfg.data, cfg.seed)
    train, _ = window_dataset(raw, cfg.data.window_s, cfg.data.overlap, cfg.data.test_fraction)
    spec = raw.spec
    chans = [len(m.channels) for m in spec.modalities]
    torch.manual_seed(0)
    mc = cfg.model
    model = MultimodalNet(chans, len(spec.classes), feature_dim=mc.feature_dim, hidden_channels=mc.hidden_channels,
                          fusion_dim=mc.fusion_dim)
    costs = measure_costs(model, chans, train.x.shape[-1], batch_size)
    every = frozenset(range(len(spec.modalities)))
    flops = costs.step(every, every)
    model = model.to(device)
    x = torch.from_numpy(train.x[:batch_size]).to(device)
    y = torch.from_numpy(train.y[:batch_size]).to(device)
    xs = split_modalities(x, spec, every, False)
    opt = Sgd(model.parameters(), lr=0.01)

    def step() -> None:
        loss = F.cross_entropy(model(xs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    per = (time.perf_counter() - t0) / steps
    a = torch.randn(1024, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    for _ in range(2):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    sync()
    gemm = 2 * 1024**3 / ((time.perf_counter() - t0) / 5)
    eff = flops / per
    click.echo(f"device {device}, {threads} thread(s), batch {batch_size}: {flops / 1e9:.3f} GFLOP per full step, "
               f"{per * 1e3:.2f} ms per step")
    click.echo(f"effective training rate: {eff / 1e9:.1f} GFLOP/s; dense 1024x1024 SGEMM: {gemm / 1e9:.1f} GFLOP/s; "
               f"workload/SGEMM = {eff / gemm:.2f}")
    click.echo(f"profile line:  flops = {eff:.3g}")
