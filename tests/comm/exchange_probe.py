"""Run under mpiexec -n 3 by test_mpi_transport: the exchange benchmark (comm.exchange_bench) at
1 KB and 4 KB with a few repetitions; rank 0 prints each row as JSON. measure() checks the numbers
its last exchange moved and raises if they are wrong."""

from __future__ import annotations

import json
import sys
import traceback

from relief_mpi.comm.exchange_bench import measure
from relief_mpi.comm.world import World, abort


def main() -> None:
    world = World()
    try:
        rows = [measure(nbytes, 3, world.comm) for nbytes in (1024, 4096)]
    except Exception:  # noqa: BLE001 - one rank's failure ends the job (the others would wait for it)
        traceback.print_exc()
        abort(1)
    if world.rank == 0:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
