#!/usr/bin/env python
"""Run one relief-mpi command in this process and print its peak RSS at exit, one line per rank.

    mpiexec -n 9 python benchmarks/peak_rss.py train --clients 1000 --rounds 3 --clock virtual

Every rank prints `peak RSS rank R: M MB` to stderr as it exits (ru_maxrss), so the figure is
per rank, not the largest process only as /usr/bin/time would give.
"""

from __future__ import annotations

import atexit
import sys

from relief_mpi.bench.runner import peak_rss_mb
from relief_mpi.cli import launcher_rank


def _report() -> None:
    sys.stderr.write(f"peak RSS rank {launcher_rank()}: {peak_rss_mb():.0f} MB\n")
    sys.stderr.flush()


if __name__ == "__main__":
    atexit.register(_report)
    sys.argv = ["relief-mpi", *sys.argv[1:]]
    from relief_mpi.cli import main

    main()
