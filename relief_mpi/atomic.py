"""Output files written whole or not at all: plots, bases, bench tables.

A file is written to a temp name beside it and renamed over the target once complete, so a full
disk or a read-only folder leaves no half-written PNG or checkpoint that looks finished, and the
failure is one WriteFailed line naming the file and the OS's cause.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from relief_mpi.errors import WriteFailed

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes | memoryview, what: str = "writing") -> None:
    """Write `data` to `path` atomically; WriteFailed (nothing left behind) when it cannot."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):  # missing, or a read-only folder
            tmp.unlink()
        raise WriteFailed(f"{what} {path} failed: {e.strerror or e}") from None
