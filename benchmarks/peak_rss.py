#!/usr/bin/env python
"""Run one relief-mpi command in this process and print its peak RSS at exit, one line per rank.

    mpiexec -n 9 python benchmarks/peak_rss.py train --clients 1000 --rounds 3 --clock virtual

Every rank prints `peak RSS rank R: M MB` to stderr as it exits (ru_maxrss), so the figure is
per rank, not the largest process only as /usr/bin/time would give.
"""

from __future__ import annotations

import atexit
import os
import resource
import sys


def _report() -> None:
    rank = next((os.environ[v] for v in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK") if v in os.environ), "0")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    sys.stderr.write(f"peak RSS rank {rank}: {rss_mb:.0f} MB\n")
    sys.stderr.flush()


if __name__ == "__main__":
    atexit.register(_report)
    sys.argv = ["relief-mpi", *sys.argv[1:]]
    from relief_mpi.cli import main

    main()
