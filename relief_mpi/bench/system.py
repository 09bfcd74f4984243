"""The emulator's own performance, measured inside one MPI job (`relief-mpi bench --system`).

1. Framework overhead per round: a real training job (run_mpi, the configured strategy) runs;
   from its log, per round, overhead = round wall time - the slowest client's compute (+ transfer:
   with --clock virtual the emulated link time is not slept, so the wall time of moving the bytes
   through MPI is counted as framework time, an upper bound). It is reported as a fraction of the
   round wall time (median over rounds 2..R; round 1, with communicator creation, separately).
   On a host with fewer cores than clients, a client's compute_wall_s includes the time it
   waited for a core, so both terms grow with oversubscription; the figure is what the round
   costs beyond its slowest client on this host, not a property of the code alone.
2. Block exchange throughput: our path (the MPI transport's full round exchange: plan Ibcast,
   block Ibcast on the cohort communicator, update Ireduce, report Igather, all completed by the
   sleeping wait_all), and its Ireduce + wait_all alone, against raw blocking mpi4py
   Bcast + Reduce / Reduce of a numpy float32 buffer of the same size on COMM_WORLD.
   Ratio = raw time / our time (> 1: ours faster, < 1: ours slower).
3. Peak memory per rank: ru_maxrss after the training job and after the sweep.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mpi4py import MPI

from relief_mpi import __version__
from relief_mpi.bench.runner import peak_rss_mb
from relief_mpi.comm import wire
from relief_mpi.comm.mpi import MpiClientTransport, MpiServerTransport
from relief_mpi.comm.transport import Handshake
from relief_mpi.comm.wait import wait_all
from relief_mpi.config import RunConfig
from relief_mpi.strategy.base import RoundPlan

Say = Callable[[str], None]


def host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def overhead_from_log(path: Path, cores: int) -> dict[str, object]:
    """Per-round overhead figures from a round log (see the module docstring)."""
    from relief_mpi.log.hdf5 import read_log

    log = read_log(path)
    r = log.rounds
    comp = np.nan_to_num(log.clients["compute_wall_s"], nan=0.0)  # [R, K]
    wall = r["wall_time_s"]
    slowest = comp.max(axis=1)
    frac = (wall - slowest) / wall
    steady = slice(1, None) if len(r) > 1 else slice(0, None)
    return {
        "rounds": len(r), "clients": comp.shape[1], "cores": cores,
        "round_wall_s": float(np.median(wall[steady])), "slowest_compute_s": float(np.median(slowest[steady])),
        "sum_compute_s": float(np.median(comp.sum(axis=1)[steady])),
        "overhead_s": float(np.median((wall - slowest)[steady])),
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
    return int(np.clip((32 << 20) // nbytes, 3, 30))


def _timed(world: MPI.Comm, fn: Callable[[], None], reps: int) -> float:
    """Median seconds of fn on rank 0 (every rank calls fn; a barrier aligns the start of each rep)."""
    fn()  # warm-up
    times = []
    for _ in range(reps):
        wait_all([world.Ibarrier()])
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _measure(world: MPI.Comm, nbytes: int, reps: int) -> dict[str, float]:
    rank, k = world.Get_rank(), world.Get_size() - 1
    n = nbytes // 4
    block = np.ones(n, np.float32)
    send = np.ones(n + 2, np.float32)  # an update buffer: n*delta, n, n*||delta||^2
    recv = np.zeros(n + 2, np.float32) if rank == 0 else None

    def raw_reduce() -> None:
        world.Reduce(send, recv, op=MPI.SUM, root=0)

    def raw_both() -> None:
        world.Bcast(block, root=0)
        world.Reduce(send, recv, op=MPI.SUM, root=0)

    own = np.ones((k, 1), bool)
    me = Handshake(__version__, "system-bench", "")
    tr: MpiServerTransport | MpiClientTransport
    if rank == 0:
        tr = MpiServerTransport(own, (n,), world)
        tr.start(np.zeros(0, np.float32), me)
    else:
        tr = MpiClientTransport(own, (n,), world)
        tr.start(me)
    comm = tr.cache.get(tr.cohort_keys[0])
    plan = RoundPlan(1, np.ones((k, 1), np.uint8), np.zeros(k, np.int64), float("inf"))
    report = np.zeros(len(wire.REPORT_FIELDS), np.float64)

    def ours_reduce() -> None:
        if rank == 0:
            wait_all([comm.Ireduce(MPI.IN_PLACE, recv, op=MPI.SUM, root=0)])
        else:
            wait_all([comm.Ireduce(send, None, op=MPI.SUM, root=0)])

    def ours_round() -> None:
        if isinstance(tr, MpiServerTransport):
            tr.run_round(plan, [block])
        else:
            p = tr.next_plan()
            assert p is not None
            tr.receive_blocks(p)
            tr.send(p, {0: send}, report)

    t_raw_r = _timed(world, raw_reduce, reps)
    t_ours_r = _timed(world, ours_reduce, reps)
    t_raw_b = _timed(world, raw_both, reps)
    t_ours_b = _timed(world, ours_round, reps)
    if isinstance(tr, MpiServerTransport):
        tr.stop()
    else:
        assert tr.next_plan() is None
    return {"bytes": nbytes, "reps": reps, "raw_reduce_s": t_raw_r, "ours_reduce_s": t_ours_r,
            "raw_bcast_reduce_s": t_raw_b, "ours_round_s": t_ours_b,
            "reduce_ratio": t_raw_r / t_ours_r, "round_ratio": t_raw_b / t_ours_b,
            "raw_reduce_mbps": nbytes / t_raw_r / 1e6, "ours_reduce_mbps": nbytes / t_ours_r / 1e6}


def throughput(world: MPI.Comm, max_mb: int, say: Say | None) -> list[dict[str, float]]:
    rows = []
    for nbytes in _sizes(max_mb):
        row = _measure(world, nbytes, _reps(nbytes))
        rows.append(row)
        if say and world.Get_rank() == 0:
            say(f"{_human(nbytes):>7} {row['reps']:>4} {row['raw_reduce_s'] * 1e3:>10.3f} "
                f"{row['ours_reduce_s'] * 1e3:>10.3f} {row['reduce_ratio']:>7.2f} "
                f"{row['raw_bcast_reduce_s'] * 1e3:>12.3f} {row['ours_round_s'] * 1e3:>10.3f} "
                f"{row['round_ratio']:>7.2f}")
    return rows


def _human(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB"


def _gather_rss(world: MPI.Comm) -> list[float]:
    out = np.zeros(world.Get_size(), np.float64)
    wait_all([world.Iallgather(np.array([peak_rss_mb()]), out)])
    return out.tolist()


def run_system(cfg: RunConfig, max_mb: int, json_out: Path | None, say: Say) -> dict[str, object] | None:
    from relief_mpi.mpirun import run_mpi
    from relief_mpi.mpirun_types import Resolved

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    out: dict[str, object] = {"world_size": size, "cores": host_cores(), "clock": cfg.device.clock,
                              "strategy": cfg.strategy.name, "rounds": cfg.rounds,
                              "local_steps": cfg.strategy.local_steps, "load_avg_start": list(os.getloadavg())}
    tmp = tempfile.mkdtemp(prefix="relief-sys-") if rank == 0 else ""
    log_path = Path(tmp) / "system.h5"
    t0 = time.perf_counter()
    run_mpi(lambda: Resolved(cfg, log_path), None)
    out["job_wall_s"] = time.perf_counter() - t0
    rss_train = _gather_rss(world)
    if rank == 0:
        ov = overhead_from_log(log_path, host_cores())
        out["overhead"] = ov
        say(f"== framework overhead: {size} ranks ({size - 1} clients) on {ov['cores']} cores, "
            f"{cfg.strategy.name}, {cfg.rounds} rounds x {cfg.strategy.local_steps} steps, clock {cfg.device.clock}")
        say(f"median round (from round 2): wall {ov['round_wall_s']:.3f} s, slowest client compute "
            f"{ov['slowest_compute_s']:.3f} s, all clients' compute {ov['sum_compute_s']:.3f} s")
        say(f"overhead = round wall - slowest client: {ov['overhead_s']:.3f} s = "
            f"{ov['overhead_frac']:.1%} of the round")
        say(f"first round (communicator set-up): {ov['first_round_wall_s']:.3f} s wall; whole job "
            f"{out['job_wall_s']:.1f} s")
        say("peak RSS per rank after training (MB): " + ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(rss_train)))
    out["peak_rss_train_mb"] = rss_train
    if max_mb > 0:
        if rank == 0:
            say(f"== block exchange, {size - 1} clients: median time per operation (ms); ratio = raw / ours")
            say(f"{'size':>7} {'reps':>4} {'raw Reduce':>10} {'ours Ired':>10} {'ratio':>7} "
                f"{'raw Bc+Red':>12} {'ours round':>10} {'ratio':>7}")
        out["throughput"] = throughput(world, max_mb, say)
        rss_all = _gather_rss(world)
        out["peak_rss_after_sweep_mb"] = rss_all
        if rank == 0:
            say("peak RSS per rank after the sweep (MB): " + ", ".join(f"r{i} {v:.0f}" for i, v in enumerate(rss_all)))
    if rank != 0:
        return None
    out["load_avg_end"] = list(os.getloadavg())
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=1))
        say(f"wrote {json_out}")
    return out
