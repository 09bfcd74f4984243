"""The root attributes of a run's HDF5 log, from the run's setup (written once by log.hdf5's writer)."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from relief_mpi import __version__

if TYPE_CHECKING:  # the setup's type only: log/ does not import the run's construction
    from relief_mpi.run_setup import RunSetup

__all__ = ["log_attrs"]


def log_attrs(setup: RunSetup, hosts: list[str], mpi_library: str, world_size: int) -> dict[str, object]:
    """The log's root attributes: the frozen config, the fleet as each client was emulated, the
    data and model facts, versions, and who writes the log (docs/log.md)."""
    names = setup.data.spec.modality_names()
    profiles = [{
        "client": d.client, "rank": d.rank, "tier": d.tier, "profile": d.profile.name,
        "flops": d.profile.flops if np.isfinite(d.profile.flops) else "native",
        "p_busy_w": d.profile.p_busy_w, "p_idle_w": d.profile.p_idle_w,
        "uplink_mbps": d.profile.uplink_mbps, "downlink_mbps": d.profile.downlink_mbps,
        "modalities": list(setup.data.modality_sets[d.client]),
        "n_train": len(setup.data.clients_train[d.client]), "n_test": len(setup.data.clients_test[d.client]),
        # device emulation (issue 5): memory cap (recorded), latency, J/bit, meter and throttle settings
        "memory_mb": d.profile.memory_mb, "latency_ms": d.profile.latency_ms,
        "energy_per_bit_nj": d.profile.energy_per_bit_nj, "compute": d.profile.compute,
        "energy_source": setup.device_info.get(d.client, {}).get("energy_source", "none"),
        "throttle": {k: v for k, v in setup.device_info.get(d.client, {}).items() if k != "energy_source"},
    } for d in setup.devices]
    return {
        "relief_mpi_version": __version__, "config": setup.config.to_json(), "mpi_library": mpi_library,
        "world_size": world_size, "hosts": json.dumps(hosts), "profiles": json.dumps(profiles),
        "strategy": setup.config.strategy.name, "dataset": setup.data.spec.name,
        "modalities": json.dumps(list(names)), "classes": json.dumps(list(setup.data.spec.classes)),
        "rare_modality": names[setup.rare_modality] if setup.rare_modality is not None else "",
        "data_fingerprint": setup.data.fingerprint, "block_sizes": json.dumps(list(setup.registry.sizes)),
        "group_kinds": json.dumps(list(setup.registry.kinds)),
        "group_n_params": json.dumps(list(setup.registry.n_params)),
        "group_flops_per_sample": json.dumps(list(setup.strategy.ctx.groups.flops)),
        "flops_per_step": json.dumps({"enc_fwd": setup.costs.enc_fwd, "enc_bwd": setup.costs.enc_bwd,
                                      "top_fwd": setup.costs.top_fwd, "top_bwd": setup.costs.top_bwd}),
        "torch_version": torch.__version__, "python_version": platform.python_version(),
        "clock": setup.config.device.clock, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # who writes the log: `report` tells a run still going from one that ended without closing it
        "writer_pid": os.getpid(), "writer_host": socket.gethostname(),
        # measured-energy meter per client ("ina3221", "rapl", "nvml", "rapl+nvml" or "none"); modeled always
        "energy_source": json.dumps([p["energy_source"] for p in profiles]),
        "server_device": json.dumps(setup.rank_device.record()),  # where rank 0 evaluates (device/gpu.py)
    }
