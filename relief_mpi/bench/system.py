"""The emulator's own performance, measured inside one MPI job (`relief-mpi bench --system`).

1. Framework overhead per round: a real training job (run_mpi, the configured strategy, K clients
   on the N-1 client ranks) runs; from its log, per round and per client rank, the rank's compute
   = the sum of its clients' compute_wall_s (it trains them in turn); overhead = round wall time -
   the busiest rank's compute. With --clock virtual the emulated link time is not slept, so the
   wall time of moving the bytes through MPI counts as framework time (an upper bound). It is
   reported as a fraction of the round wall time (median over rounds 2..R; round 1, with
   communicator creation, separately). On a host with fewer cores than ranks a rank's compute
   includes time spent waiting for a core, so the figure describes this host, not the code alone.
2. Block exchange, ours vs raw mpi4py side by side (comm.exchange_bench): the cohort's block
   broadcast and update reduce as the transport runs them against a blocking Bcast and Reduce,
   and the whole round (plan, ack, exchange, report, with our encoding) against the same messages
   through blocking mpi4py. Ratio = raw time / our time (1 = as fast as raw mpi4py). The 1-4 KB
   blocks are the ones where waiting dominates.
3. Clients per rank and peak memory (ru_maxrss) per rank after the training job and after the sweep.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from relief_mpi.atomic import write_atomic
from relief_mpi.bench.runner import peak_rss_mb
from relief_mpi.comm.exchange_bench import measure
from relief_mpi.comm.placement import clients_of
from relief_mpi.comm.world import World
from relief_mpi.config import RunConfig

__all__ = ["Say", "host_cores", "overhead_from_log", "per_rank", "run_system", "small_block_ratio", "throughput"]


Say = Callable[[str], None]


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def per_rank(values: np.ndarray, n_ranks: int) -> np.ndarray:
    """[R, K] per-client values summed per hosting rank (client k on rank 1 + k mod n): [R, n]."""
    k = values.shape[1]
    return np.stack([values[:, clients_of(r, k, n_ranks)].sum(axis=1) for r in range(1, n_ranks + 1)], axis=1)


def overhead_from_log(path: Path, cores: int, n_ranks: int | None = None) -> dict[str, object]:
    """Per-round overhead figures from a round log (see the module docstring); n_ranks: the
    client ranks (None: one client per rank)."""
    from relief_mpi.log.hdf5 import read_log

    log = read_log(path)
    r = log.rounds
    comp = np.nan_to_num(log.clients["compute_wall_s"], nan=0.0)  # [R, K]
    n_ranks = n_ranks or comp.shape[1]
    ranks = per_rank(comp, n_ranks)  # [R, n]: a rank trains its clients one after the other
    wall = r["wall_time_s"]
    busiest = ranks.max(axis=1)
    frac = (wall - busiest) / wall
    steady = slice(1, None) if len(r) > 1 else slice(0, None)
    k = comp.shape[1]
    return {
        "rounds": len(r), "clients": k, "client_ranks": n_ranks, "cores": cores,
        "clients_per_rank": [len(clients_of(r, k, n_ranks)) for r in range(1, n_ranks + 1)],
        "round_wall_s": float(np.median(wall[steady])), "busiest_rank_compute_s": float(np.median(busiest[steady])),
        "rank_compute_s": np.median(ranks[steady], axis=0).tolist(),
        "sum_compute_s": float(np.median(comp.sum(axis=1)[steady])),
        "overhead_s": float(np.median((wall - busiest)[steady])),
        "overhead_frac": float(np.median(frac[steady])),
        "first_round_wall_s": float(wall[0]), "per_round_overhead_frac": frac.tolist(),
    }


def _sizes(max_mb: int) -> list[int]:
    out, s = [], 1024
    while s <= max_mb * 1024 * 1024:
        out.append(s)
        s *= 4
    return out


def _reps(nbytes: int) -> int:
    """Up to 300 repetitions for the small blocks: a median of 30 moved by 10% from run to run."""
    return int(np.clip((64 << 20) // nbytes, 5, 300))


def _human(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB"


def throughput(max_mb: int, say: Say | None, rank: int) -> list[dict[str, float]]:
    rows = []
    for nbytes in _sizes(max_mb):
        row = measure(nbytes, _reps(nbytes))
        rows.append(row)
        if say and rank == 0:
            say(f"{_human(nbytes):>7} {row['reps']:>4} {row['raw_exchange_s'] * 1e3:>10.3f} "
                f"{row['ours_exchange_s'] * 1e3:>10.3f} {row['exchange_ratio']:>7.2f} "
                f"{row['raw_round_s'] * 1e3:>10.3f} {row['ours_round_s'] * 1e3:>10.3f} {row['round_ratio']:>7.2f}")
    return rows


def small_block_ratio(rows: list[dict[str, float]], key: str = "exchange_ratio") -> float:
    """A ratio over the 1-4 KB blocks (geometric mean): the wait-dominated regime."""
    small = [r[key] for r in rows if r["bytes"] <= 4096]
    return float(np.exp(np.mean(np.log(small)))) if small else float("nan")


def _train_lines(say: Say, cfg: RunConfig, size: int, ov: dict, rss: list[float], job_s: float) -> None:
    cpr = ov["clients_per_rank"]
    say(f"== framework overhead: {size} ranks, {ov['clients']} clients on {size - 1} client ranks "
        f"({min(cpr)}..{max(cpr)} per rank) on {ov['cores']} cores, {cfg.strategy.name}, {cfg.rounds} rounds x "
        f"{cfg.strategy.local_steps} steps, clock {cfg.device.clock}")
    say(f"median round (from round 2): wall {ov['round_wall_s']:.3f} s; busiest rank's client compute "
        f"{ov['busiest_rank_compute_s']:.3f} s (its clients in turn); all clients' compute {ov['sum_compute_s']:.3f} s")
    say("client compute per rank (s): " + ", ".join(f"r{i + 1} {v:.3f}" for i, v in enumerate(ov["rank_compute_s"])))
    say(f"overhead = round wall - busiest rank's compute: {ov['overhead_s']:.3f} s = {ov['overhead_frac']:.1%} "
        "of the round")
    say(f"first round (communicator set-up): {ov['first_round_wall_s']:.3f} s wall; whole job {job_s:.1f} s")
    say("peak RSS per rank after training (MB): " + ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(rss)))


def run_system(cfg: RunConfig, max_mb: int, json_out: Path | None, say: Say,
               n_clients: int | None = None) -> dict[str, object] | None:
    """The whole measurement (every rank calls it); the figures on rank 0, None elsewhere.
    n_clients: the training job's clients (None = one per client rank)."""
    from relief_mpi.job import Resolved
    from relief_mpi.mpirun import run_mpi

    world = World()
    rank, size = world.rank, world.size
    out: dict[str, object] = {"world_size": size, "cores": host_cores(), "clock": cfg.device.clock,
                              "strategy": cfg.strategy.name, "rounds": cfg.rounds,
                              "local_steps": cfg.strategy.local_steps, "load_avg_start": list(os.getloadavg())}
    tmp = tempfile.mkdtemp(prefix="relief-sys-") if rank == 0 else ""
    log_path = Path(tmp) / "system.h5"
    t0 = time.perf_counter()
    run_mpi(lambda: Resolved(cfg, log_path, n_clients=n_clients), None)
    job_wall_s = time.perf_counter() - t0
    out["job_wall_s"] = job_wall_s
    rss_train = world.allgather_f64(peak_rss_mb())
    out["peak_rss_train_mb"] = rss_train
    if rank == 0:
        ov = overhead_from_log(log_path, host_cores(), size - 1)
        out["overhead"] = ov
        _train_lines(say, cfg, size, ov, rss_train, job_wall_s)
    if max_mb > 0:
        if rank == 0:
            say(f"== block exchange, {size - 1} client ranks: median ms per operation, raw and ours interleaved; "
                "ratio = raw / ours")
            say(f"{'size':>7} {'reps':>4} {'raw Bc+Red':>10} {'ours':>10} {'ratio':>7} "
                f"{'raw round':>10} {'ours round':>10} {'ratio':>7}")
        rows = throughput(max_mb, say, rank)
        out["throughput"] = rows
        out["small_block_ratio"] = small_block_ratio(rows)
        out["small_block_round_ratio"] = small_block_ratio(rows, "round_ratio")
        rss_all = world.allgather_f64(peak_rss_mb())
        out["peak_rss_after_sweep_mb"] = rss_all
        if rank == 0:
            say(f"1-4 KB block exchange: {out['small_block_ratio']:.2f} of raw mpi4py's speed; whole round "
                f"{out['small_block_round_ratio']:.2f} (geometric means)")
            say("peak RSS per rank after the sweep (MB): " + ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(rss_all)))
    if rank != 0:
        return None
    out["load_avg_end"] = list(os.getloadavg())
    if json_out is not None:
        write_atomic(json_out, json.dumps(out, indent=1).encode())  # whole or not at all (errors.WriteFailed)
        say(f"wrote {json_out}")
    return out
