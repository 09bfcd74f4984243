"""Everything a rank derives from the config before the first round, identical on every rank.

Built from the RunConfig, the number of clients and the hosts, without any communication, so
every rank agrees on the fleet, the data partition, the block partition and the costs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
import torch

from relief_mpi.client import ClientRole, LocalClients, LocalTrainer
from relief_mpi.comm.placement import host_rank
from relief_mpi.config import RunConfig
from relief_mpi.data.base import FederatedData
from relief_mpi.data.registry import build_federated, load_raw, modality_set_for
from relief_mpi.device.clock import DeviceClock
from relief_mpi.device.energy import process_meter, source_of
from relief_mpi.device.fleet import PAPER_FLEET, ClientDevice, load_fleet, paper_fleet, rare_modality, resolve_fleet
from relief_mpi.device.gpu import RankDevice, synchronizer, windows_cap_bytes
from relief_mpi.device.profiles import DeviceProfile, load_profiles
from relief_mpi.errors import ReliefError
from relief_mpi.model.blocks import BlockRegistry
from relief_mpi.model.flops import FlopCosts, group_flops, measure_costs
from relief_mpi.model.groups import GroupRegistry
from relief_mpi.model.net import ModalityEncoder, MultimodalNet, kept
from relief_mpi.model.paper import PaperNet
from relief_mpi.rng import authors_stream
from relief_mpi.rounds import FleetInfo, GroupInfo
from relief_mpi.strategy import catalogue
from relief_mpi.strategy.base import Strategy, StrategyContext
from relief_mpi.strategy.heterofl import HeteroFL
from relief_mpi.strategy.registry import make_strategy
from relief_mpi.validation import validation_view

Model = MultimodalNet | PaperNet
Registry = BlockRegistry | GroupRegistry
__all__ = ["KEEP_WINDOWS_MB", "Model", "Registry", "RunSetup", "build_setup", "check_sensors", "entry_masks",
           "group_info", "make_registry", "width_costs"]

KEEP_WINDOWS_MB = 256  # a process keeps its clients' training windows in memory up to this much


@dataclass
class RunSetup:
    config: RunConfig
    devices: list[ClientDevice]
    data: FederatedData
    registry: Registry
    costs: FlopCosts
    strategy: Strategy
    rare_modality: int | None
    # Device emulation (issue 5): per client, its energy meter source and throttle settings (the log's
    # `profiles`); filled by trainer() in this process and by device.throttle.prepare_ranks under MPI.
    device_info: dict[int, dict] = field(default_factory=dict)
    rank_device: RankDevice = field(default_factory=RankDevice)  # this process's device (device/gpu.py)
    _width_costs: dict[float, FlopCosts] = field(default_factory=dict)  # HeteroFL: measured once per width
    _arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_clients(self) -> int:
        return len(self.devices)

    def power(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per client: P_busy (W), P_idle (W), link energy (nJ/bit), as arrays built once."""
        if "power" not in self._arrays:
            self._arrays["power"] = np.array([(d.profile.p_busy_w, d.profile.p_idle_w, d.profile.energy_per_bit_nj)
                                              for d in self.devices], np.float64).reshape(-1, 3).T.copy()
        p = self._arrays["power"]
        return p[0], p[1], p[2]

    def make_model(self) -> Model:
        torch.manual_seed(self.config.seed)
        return _net(self.config, self.data).to(self.rank_device.torch_device)

    def client_modalities(self, k: int) -> frozenset[int]:
        names = self.data.spec.modality_names()
        return frozenset(names.index(m) for m in self.data.modality_sets[k])

    def trainer(self, k: int, fault: tuple[str, int] | None = None, dump_dir: str | None = None,
                model: Model | None = None, keep_windows: bool = True) -> LocalTrainer:
        """Client k; `model` is the process's shared model (a fresh one if None)."""
        cfg = self.config
        recipe = self.strategy.recipe(k)
        width = recipe.width
        role = ClientRole(client=k, modalities=self.client_modalities(k), recipe=recipe,
                          batch_size=cfg.strategy.batch_size, seed=cfg.seed, fault=fault, dump_dir=dump_dir)
        prof, rdev = self.devices[k].profile, self.rank_device
        clock = DeviceClock(prof, cfg.device.clock, factor=rdev.clock_factor(prof.gpu_share),
                            sync=synchronizer(rdev.torch_device))
        if width < 1.0 and width not in self._width_costs:
            self._width_costs[width] = width_costs(cfg, self.data, width)
        costs = self.costs if width >= 1.0 else self._width_costs[width]
        trainer = LocalTrainer(role, model if model is not None else self.make_model(), self.registry,
                               self.data.spec, self.data.clients_train[k], clock, costs, self.strategy.ownership(),
                               keep_windows, rdev.torch_device, windows_cap_bytes(rdev.torch_device, prof.memory_mb))
        # Device emulation (issue 5): this process's energy meter (INA3221, RAPL, NVML) or None.
        trainer.energy_meter = process_meter()
        self.device_info.setdefault(k, {})["energy_source"] = source_of(trainer.energy_meter)
        for key, value in rdev.record().items():  # the process's device and share (device/gpu.py)
            self.device_info[k].setdefault(key, value)
        return trainer

    def local_clients(self, ks: list[int], faults: dict[int, tuple[str, int]] | None = None,
                      dump_dir: str | None = None) -> LocalClients:
        """Clients `ks` hosted by this process on one model. Their windows stay in memory if they
        fit in KEEP_WINDOWS_MB, else each client's are cut when it trains and dropped after."""
        model = self.make_model()
        shape_bytes = 4 * self.data.spec.n_channels * self.data.window_len
        keep = sum(len(self.data.clients_train[k]) for k in ks) * shape_bytes <= KEEP_WINDOWS_MB * 2**20
        faults = faults or {}
        clients = LocalClients([self.trainer(k, faults.get(k), dump_dir, model, keep) for k in ks])
        if self.config.rng == "authors":  # one stream for all, drawn in client order (relief_mpi/rng.py)
            if self.rank_device.torch_device.type != "cpu":  # dropout would draw from the device's generator
                raise ReliefError("--rng authors repeats the authors' run on the CPU (it holds the CPU generator's "
                                  "stream; dropout on a GPU draws from the device's own): add --device cpu")
            stream = authors_stream(self.config.seed, lambda: _net(self.config, self.data))
            for t in clients.trainers:
                t.stream = stream
        return clients


def _net(cfg: RunConfig, data: FederatedData, width: float = 1.0) -> Model:
    m = cfg.model
    if m.model == "paper":
        return PaperNet([len(x.channels) for x in data.spec.modalities], len(data.spec.classes), rho=m.rho,
                        b_mode=m.b_mode, lora=m.mode == "lora", encoder_channels=m.encoder_channels)
    return MultimodalNet([len(x.channels) for x in data.spec.modalities], len(data.spec.classes),
                         feature_dim=kept(m.feature_dim, width), hidden_channels=kept(m.hidden_channels, width),
                         fusion_dim=kept(m.fusion_dim, width), lora_rank=m.lora_rank if m.mode == "lora" else 0,
                         lora_alpha=m.lora_alpha)


def make_registry(cfg: RunConfig, model: Model, names: tuple[str, ...]) -> Registry:
    """The model's parameter groups (paper model) or modality blocks (small model)."""
    m = cfg.model
    try:
        if isinstance(model, PaperNet):
            if m.groups_per_modality != 1:
                raise ValueError("--groups-per-modality splits the small model's blocks; the paper model has its "
                                 "own parameter groups (use --model small)")
            return GroupRegistry(model, names, m.mode)
        return BlockRegistry(model, names, m.mode, m.groups_per_modality)
    except ValueError as e:
        raise ReliefError(str(e)) from None


def group_info(registry: Registry, model: Model, data: FederatedData) -> GroupInfo:
    chans = [len(m.channels) for m in data.spec.modalities]
    flops = group_flops(model, registry, chans, data.window_len)
    return GroupInfo(registry.names, registry.kinds, tuple(registry.modality), registry.sizes, registry.n_params,
                     flops, registry.counted, registry.n_model_params)


def width_costs(cfg: RunConfig, data: FederatedData, width: float) -> FlopCosts:
    """FLOPs of a real width-p sub-model (HeteroFL), measured like the full model's."""
    return measure_costs(_net(cfg, data, width), [len(m.channels) for m in data.spec.modalities],
                         data.window_len, cfg.strategy.batch_size)


def entry_masks(registry: BlockRegistry, model: MultimodalNet, width: float) -> list[np.ndarray]:
    """Per block, 1 where an entry is inside the width-p sub-model: a forward/backward probe with
    every weight set to 1 marks exactly the entries that receive gradient."""
    probe = copy.deepcopy(model)
    with torch.no_grad():
        for p in probe.parameters():
            p.fill_(1.0)
    probe.zero_grad(set_to_none=True)
    n_ch = [cast(ModalityEncoder, e).conv1.in_channels for e in probe.encoders]
    xs = [torch.ones(1, c, 8) for c in n_ch]
    probe(xs, frozenset(), width).sum().backward()
    params = dict(probe.named_parameters())
    marks = copy.deepcopy(probe)
    with torch.no_grad():
        for name, p in marks.named_parameters():
            g = params[name].grad
            p.copy_((g != 0).float() if g is not None else torch.zeros_like(p))
    return [registry.get(marks, b) for b in range(len(registry))]


def check_sensors(devices: Sequence[ClientDevice], sets: Sequence[tuple[str, ...]], dataset: str,
                  names: Sequence[str]) -> None:
    """A client whose sensors are none of the dataset's modalities would train nothing: a fleet
    error, one line naming the first such client, its sensors and the dataset's."""
    bad = [d for d, s in zip(devices, sets, strict=True) if not s]
    if not bad:
        return
    d = bad[0]
    if all(x.client + 1 == x.rank for x in devices):  # one client per rank: the rank names it
        who = f"client rank {d.rank} (tier {d.tier})"
    else:
        who = f"client {d.client} (rank {d.rank}, tier {d.tier})"
    others = sorted({b.rank for b in bad[1:]})
    nor = f", nor do the other clients on rank(s) {', '.join(map(str, others))}" if others else ""
    raise ReliefError(f"{who} has sensors {list(d.sensors or [])}, none of which the {dataset} dataset has "
                      f"({', '.join(names)}){nor}; fix the fleet")


def build_setup(cfg: RunConfig, n_clients: int, hostnames: list[str] | None = None,
                n_ranks: int | None = None) -> RunSetup:
    """`hostnames` by rank (MPI: the world's); the clients sit on `n_ranks` client ranks (default one
    each) as comm.placement says, and a fleet's host globs match the host of a client's rank."""
    profiles = load_profiles(cfg.device.profiles_dir)
    catalogue.entry(cfg.strategy.name).check(cfg)
    devices = _devices(cfg, n_clients, hostnames, n_ranks or n_clients, profiles)
    raw = load_raw(cfg.data, cfg.seed, n_clients=n_clients)
    names = raw.spec.modality_names()
    data = build_federated(cfg.data, cfg.seed, _sensor_sets(devices, raw.spec.name, names), raw)
    if cfg.data.validation > 0:  # the bench's lr search: score on held-back training windows, not the test set
        data = validation_view(data, cfg.data.validation)
    torch.manual_seed(cfg.seed)
    probe = _net(cfg, data)
    registry = make_registry(cfg, probe, names)
    costs = measure_costs(probe, [len(m.channels) for m in data.spec.modalities], data.window_len,
                          cfg.strategy.batch_size)
    mod_sets = [frozenset(names.index(m) for m in s) for s in data.modality_sets]
    fleet = _fleet_info(devices, data, mod_sets)
    ctx = StrategyContext(cfg.strategy, group_info(registry, probe, data), fleet, costs, len(names), cfg.seed,
                          cfg.model.mode, cfg.strategy.batch_size)
    strategy = _strategy(cfg, ctx, registry, probe)
    return RunSetup(cfg, devices, data, registry, costs, strategy, rare_modality(mod_sets, len(names)))


def _devices(cfg: RunConfig, n_clients: int, hostnames: list[str] | None, n_ranks: int,
             profiles: dict[str, DeviceProfile]) -> list[ClientDevice]:
    """Each client's device from the fleet, with the rank that hosts it; a fleet's host globs
    match the host of that rank."""
    client_hosts = None
    if hostnames is not None:
        client_hosts = [hostnames[0], *(hostnames[host_rank(k, n_ranks)] for k in range(n_clients))]
    if cfg.device.fleet == PAPER_FLEET:
        devices = paper_fleet(cfg.data.dataset, n_clients, profiles)
    else:
        devices = resolve_fleet(load_fleet(cfg.device.fleet), n_clients, profiles, client_hosts)
    return [replace(d, rank=host_rank(d.client, n_ranks)) for d in devices]


def _sensor_sets(devices: list[ClientDevice], dataset: str, names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Each client's sensors among the dataset's modalities; a client with none of them is a fleet error."""
    sets = [modality_set_for(d.sensors, names) for d in devices]
    check_sensors(devices, sets, dataset, names)
    return sets


def _fleet_info(devices: list[ClientDevice], data: FederatedData, mod_sets: list[frozenset[int]]) -> FleetInfo:
    """What a strategy knows of the fleet: each client's sensors, tier, speed, links, power and training windows."""
    return FleetInfo(
        modality_sets=tuple(mod_sets), tiers=tuple(d.tier for d in devices),
        flops=tuple(d.profile.flops for d in devices), uplink_mbps=tuple(d.profile.uplink_mbps for d in devices),
        downlink_mbps=tuple(d.profile.downlink_mbps for d in devices),
        latency_ms=tuple(d.profile.latency_ms for d in devices),
        n_train=tuple(len(w) for w in data.clients_train), p_busy_w=tuple(d.profile.p_busy_w for d in devices))


def _strategy(cfg: RunConfig, ctx: StrategyContext, registry: Registry, probe: Model) -> Strategy:
    """The run's strategy; HeteroFL also gets the entry masks of its sub-model widths."""
    strategy = make_strategy(cfg.strategy.name, ctx)
    if isinstance(strategy, HeteroFL) and isinstance(registry, BlockRegistry) and isinstance(probe, MultimodalNet):
        strategy.set_entry_masks({w: entry_masks(registry, probe, w) for w in set(strategy.widths)})
    return strategy
