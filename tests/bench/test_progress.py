"""Issue 13, item 11: bench progress says "run k of N", the elapsed time and an estimate of the time
left: the wall time per round of the runs done so far times the rounds still to run."""

from __future__ import annotations

import time
from pathlib import Path

from relief_mpi.bench.runner import _clock, _Tracker


def test_run_k_of_n_elapsed_and_eta_from_the_rounds_done() -> None:
    lines: list[str] = []
    t = _Tracker(lines.append, total_runs=3, total_rounds=2 + 2 + 4, t0=time.perf_counter() - 65)
    t.start("fedavg seed 0", Path("b/fedavg-seed0.h5"))
    assert lines[-1] == "== run 1 of 3: fedavg seed 0 -> b/fedavg-seed0.h5 (elapsed 1m05s, ETA n/a)"
    t.done("fedavg seed 0", 2, 10.0)  # 5 s a round; 6 rounds left
    assert lines[-1] == "   run 1 of 3 (fedavg seed 0): 10.0 s wall; elapsed 1m05s, ETA 0m30s"
    t.done("relief seed 0", 2, None)  # kept by --resume: costs nothing, its rounds are no longer left
    assert lines[-1] == "== run 2 of 3: relief seed 0: complete log kept (--resume)"
    t.start("relief seed 1", Path("b/relief-seed1.h5"))
    assert lines[-1].startswith("== run 3 of 3: relief seed 1 -> ") and lines[-1].endswith(", ETA 0m20s)")
    t.done("relief seed 1", 4, 30.0)  # (10 + 30) s over 6 rounds, none left
    assert lines[-1].endswith("ETA 0m00s")


def test_clock_format() -> None:
    assert [_clock(s) for s in (0, 59.4, 61, 3599, 3600, 3725, -3)] == \
        ["0m00s", "0m59s", "1m01s", "59m59s", "1h00m00s", "1h02m05s", "0m00s"]
