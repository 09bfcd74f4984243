"""Test-only hooks of a run (fault injection, dumps of the exchanged blocks): never part of the
config, so they cannot change a run's identity. Light (no torch), so the CLI builds them first."""

from __future__ import annotations

from dataclasses import dataclass

from relief_mpi import __version__

__all__ = ["DebugHooks"]


@dataclass(frozen=True)
class DebugHooks:
    """Test-only hooks; never part of the config, so they cannot change a run's identity."""

    fault: tuple[str, int, int] | None = None  # (nan | raise | kill | version | logfull, rank, round)
    dump_dir: str | None = None  # clients' deltas and the server's blocks, per round, as .npy

    def version_for(self, rank: int) -> str:
        """The version a rank states at start (a test can make one rank lie about it)."""
        if self.fault is not None and self.fault[0] == "version" and self.fault[1] == rank:
            return "0.0.0-test"
        return __version__

    def log_fail_after(self) -> int | None:
        """logfull:0:R: the log write of round R fails as on a full disk (ENOSPC)."""
        if self.fault is None or self.fault[0] != "logfull":
            return None
        return self.fault[2] - 1

    def client_fault(self, rank: int) -> tuple[str, int] | None:
        if self.fault is None or self.fault[1] != rank:
            return None
        return self.fault[0], self.fault[2]
