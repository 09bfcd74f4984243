"""The MPI job's start-up and end: every collective outside a round's exchange, in one place.

One start-up protocol for `train`, `bench` and `hosts check`:

1. hosts: every rank's host name (Iallgather), for the fleet's host globs and the log;
2. config from rank 0: rank 0 resolves the run and sends the config as JSON bytes;
3. agreement: every rank states its start-up verdict (version, data, fleet, ...); if any failed,
   rank 0 prints the first problem as one line and every rank raises StartupRefused;
4. throttle reports: every client rank's device settings go to rank 0 for the log;
5. abort: a failure after start-up ends the whole job (MPI_Abort), never a hang.

Everything crosses MPI as fixed-size numpy buffers (uint8 text, int64, float64) through uppercase
mpi4py methods, completed by the sleeping wait_all; nothing is pickled.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from relief_mpi.comm.wait import wait_all
from relief_mpi.comm.wire import fixed_utf8, utf8_text
from relief_mpi.errors import ReliefError, StartupRefused

__all__ = ["HOST_LEN", "MSG_LEN", "World", "abort", "finalize", "library_line", "library_version", "running",
           "world_rank", "world_size"]

HOST_LEN = 64
MSG_LEN = 512


class World:
    """COMM_WORLD (or a given communicator) with the start-up protocol's collectives."""

    def __init__(self, comm: MPI.Intracomm | None = None) -> None:
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def hosts(self) -> list[str]:
        """Every rank's host name, by rank (on every rank)."""
        allh = np.zeros((self.size, HOST_LEN), np.uint8)
        wait_all([self.comm.Iallgather(fixed_utf8(socket.gethostname(), HOST_LEN), allh)])
        return [utf8_text(r) for r in allh]

    def local_rank(self) -> int:
        """This rank's index among the ranks on its host (MPI's shared-memory split)."""
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            return node.Get_rank()
        finally:
            node.Free()

    def gather_text(self, text: str, n: int) -> list[str] | None:
        """Every rank's `text` (cut at n UTF-8 bytes) on rank 0, by rank; None elsewhere."""
        recv = np.zeros((self.size, n), np.uint8) if self.rank == 0 else None
        wait_all([self.comm.Igather(fixed_utf8(text, n), recv, root=0)])
        return None if recv is None else [utf8_text(r) for r in recv]

    def bcast_f64(self, values: np.ndarray) -> np.ndarray:
        """Rank 0's float64 values on every rank (same shape everywhere)."""
        buf = np.ascontiguousarray(values, np.float64).copy()
        wait_all([self.comm.Ibcast(buf, root=0)])
        return buf

    def allgather_f64(self, value: float) -> list[float]:
        """One float from every rank, by rank, on every rank (e.g. peak RSS)."""
        out = np.zeros(self.size, np.float64)
        wait_all([self.comm.Iallgather(np.array([value], np.float64), out)])
        return out.tolist()

    def agree_to_start(self, error: str | None) -> None:
        """Every rank states its verdict (None = ready); if any failed, all raise StartupRefused with
        the first problem, printable on rank 0 only."""
        msgs = self.gather_text(error or "", MSG_LEN)
        flag = np.zeros(1, np.int64)
        first = ""
        if msgs is not None:
            for r, text in enumerate(msgs):
                if text:
                    first = text if r == 0 or text.startswith("rank ") else f"rank {r}: {text}"
                    break
            flag[0] = 1 if first else 0
        wait_all([self.comm.Ibcast(flag, root=0)])
        if flag[0]:
            raise StartupRefused(first, printable=self.rank == 0)

    def config_from_root(self, resolve: Callable[[], tuple[str, int]]) -> tuple[str, int]:
        """Rank 0 runs `resolve` (the job's config as JSON text and its number of clients, 0 = one
        per client rank) and sends both to every rank; a ReliefError there is one line from rank 0
        and StartupRefused everywhere. The caller decodes the config: comm knows no job type."""
        head = np.zeros(3, np.int64)
        payload = b""
        if self.rank == 0:
            try:
                text, n_clients = resolve()
                payload = text.encode()
                head[2] = n_clients
            except ReliefError as e:
                head[0], payload = 1, str(e).encode()
            head[1] = len(payload)
        wait_all([self.comm.Ibcast(head, root=0)])
        buf = np.frombuffer(payload, np.uint8).copy() if self.rank == 0 else np.zeros(int(head[1]), np.uint8)
        wait_all([self.comm.Ibcast(buf, root=0)])
        text = bytes(buf).decode("utf-8")
        if head[0]:
            raise StartupRefused(text, printable=self.rank == 0)
        return text, int(head[2])


def library_line() -> str:
    """The MPI library's first version line (Open MPI ends the string with a NUL byte)."""
    return MPI.Get_library_version().replace("\0", "").splitlines()[0].strip()


def library_version() -> str:
    """Vendor, version and MPI standard, e.g. 'MPICH 4.2.0 (MPI 4.1)': what every host must agree on."""
    vendor, ver = MPI.get_vendor()
    major, minor = MPI.Get_version()
    return f"{vendor} {'.'.join(map(str, ver))} (MPI {major}.{minor})"


def running() -> bool:
    """MPI was started in this process (mpi4py imported and initialised) and not yet finalized."""
    return "mpi4py.MPI" in sys.modules and MPI.Is_initialized() and not MPI.Is_finalized()


def world_size() -> int:
    return MPI.COMM_WORLD.Get_size() if running() else 1


def world_rank() -> int:
    return MPI.COMM_WORLD.Get_rank() if running() else 0


def abort(code: int, quiet: bool = False) -> None:
    """End every rank of the job with `code` (MPI_Abort). quiet: keep the library's own abort
    message off stderr (the user already has our line)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if quiet:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    MPI.COMM_WORLD.Abort(code)


def finalize() -> None:
    """Finalize MPI now if it runs (before an os._exit that skips mpi4py's own atexit)."""
    if running():
        MPI.Finalize()
