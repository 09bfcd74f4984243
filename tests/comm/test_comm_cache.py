"""The communicator cache (comm/mpi.py CommCache) under mpiexec: LRU eviction beyond its bound,
pinned communicators kept, a round's own communicators never evicted, and every communicator it
returns working (size and an Iallreduce of the member ranks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, mpi_command, mpi_env

pytestmark = pytest.mark.mpi

# by hand from tests/comm/cache_probe.py STEPS with capacity 2
HOLDS = [
    [(0, 1, 2)],
    [(0, 1, 2), (0, 1)],
    [(0, 1, 2), (0, 1), (0, 2)],
    [(0, 1, 2), (0, 2), (0,)],
    [(0, 1, 2), (0, 2), (0, 1)],
    [(0, 1, 2), (0, 1), (0, 2), (0,)],
]


def test_lru_eviction_pinning_and_needed_communicators(tmp_path: Path) -> None:
    cmd = mpi_command(3, [])
    cmd = cmd[:cmd.index(sys.executable) + 1] + ["-m", "tests.comm.cache_probe", str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=mpi_env())
    assert res.returncode == 0, res.stderr
    lines = {ln for r in range(3) for ln in (tmp_path / f"rank{r}.txt").read_text().splitlines()}
    for rank in (0, 1, 2):
        for i, held in enumerate(HOLDS):
            assert f"rank {rank} step {i} holds {held}" in lines, (rank, i, sorted(lines))
        assert f"rank {rank} closed 0" in lines
    # every communicator a member asked for has exactly the key's ranks
    assert "rank 0 step 3 (0,) size 1 sum 0" in lines
    for rank in (0, 1):
        assert f"rank {rank} step 4 (0, 1) size 2 sum 1" in lines
    for rank in (0, 2):
        assert f"rank {rank} step 5 (0, 2) size 2 sum 2" in lines
    for rank in (0, 1, 2):
        assert f"rank {rank} step 0 (0, 1, 2) size 3 sum 3" in lines
    assert "rank 0 member of all" in lines
    assert any(ln.startswith("rank 1 not a member: rank 1 is not in communicator") for ln in lines)
