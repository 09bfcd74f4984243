"""Reading a log in bounded time, and refusing one whose contents are not what the writer writes.

Why the open needs care: a log that is being written (or whose writer was killed) is marked open
for writing, and only a SWMR read opens it. A SWMR reader skips HDF5's check of the file's size
against the end-of-file address the superblock records (a growing file may lag its writer), and
then retries every metadata read that fails its checksum, with waits in between: on a truncated
file that loop ran for 15 minutes. So `open_for_reading` reads the superblock itself first and
refuses a file shorter than its recorded end (a file still being written gets a short grace),
tries a plain open, and falls back to SWMR only when the file is marked open for writing.

`check_run` then checks every attribute and dataset a reader uses (report, config show,
--resume, bench): a damaged or foreign file is one LogReadError line, never a traceback, and a
log of a newer schema than this relief-mpi reads is refused by name.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import h5py

from relief_mpi.config import RunConfig
from relief_mpi.errors import ReliefError

__all__ = ["LogReadError", "check_attrs", "check_schema", "check_shapes", "check_size", "not_a_log",
           "open_for_reading", "saved_config", "superblock_eof"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"
GROWING_GRACE_S = 0.5  # how long a file being written, shorter than its superblock says, may catch up


class LogReadError(ReliefError, OSError):
    """A log that cannot be read: truncated, damaged, foreign, or of a newer schema. Also an
    OSError, as h5py's own failed opens are: a caller that polls a log being created catches it."""


def not_a_log(path: str | Path, why: str) -> LogReadError:
    return LogReadError(f"{path}: truncated or not a relief-mpi log ({why})")


def superblock_eof(path: Path) -> tuple[int, bool] | None:
    """(the end-of-file address the superblock records, absolute; whether the file is marked open
    for writing), or None when the file has no HDF5 signature where HDF5 looks for one (0, 512,
    1024, 2048, ...)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        at = 0
        while at + 64 <= size:
            fh.seek(at)
            head = fh.read(96)
            if head[:8] == SIGNATURE:
                version = head[8]
                if version in (0, 1):
                    n_off = head[13]
                    start = 24 + (4 if version == 1 else 0)  # base address, free-space, EOF, driver info
                    addrs = _addresses(head, start, n_off, 3)
                    writing = False  # only superblocks 2 and 3 (SWMR) record it
                elif version in (2, 3):
                    n_off = head[9]
                    addrs = _addresses(head, 12, n_off, 3)  # base address, extension, EOF
                    writing = head[11] != 0  # file consistency flags: open for write / SWMR write
                else:
                    raise not_a_log(path, f"HDF5 superblock version {version} is unknown")
                return addrs[0] + addrs[2], writing
            at = 512 if at == 0 else at * 2
    return None


def _addresses(head: bytes, start: int, n_off: int, count: int) -> list[int]:
    fmt = {2: "<H", 4: "<I", 8: "<Q"}.get(n_off)
    if fmt is None:
        raise ValueError(f"offset size {n_off}")
    return [struct.unpack_from(fmt, head, start + i * n_off)[0] for i in range(count)]


def check_size(path: Path) -> None:
    """Refuse a file that is shorter than its superblock says (truncated), or not HDF5 at all."""
    try:
        deadline = time.monotonic() + GROWING_GRACE_S
        while True:
            sb = superblock_eof(path)
            if sb is None:
                raise not_a_log(path, f"no HDF5 signature in its {path.stat().st_size} bytes")
            size = path.stat().st_size
            if size >= sb[0]:
                return
            if not sb[1] or time.monotonic() >= deadline:  # only a file being written may catch up
                raise not_a_log(path, f"{size} bytes, but its superblock says {sb[0]}")
            time.sleep(0.05)
    except (OSError, ValueError, struct.error) as e:
        if isinstance(e, LogReadError):
            raise
        raise not_a_log(path, getattr(e, "strerror", None) or str(e)) from None


def open_for_reading(path: str | Path) -> h5py.File:
    """Open a log read-only in bounded time, also one that is being written or whose writer was
    killed. Never waits on a lock: HDF5's lock is taken without waiting, and where it is held (a
    writer between creating the file and starting SWMR) the open goes on without it."""
    p = Path(path)
    check_size(p)
    last: OSError | None = None
    for kw in ({}, {"swmr": True}, {"locking": False}, {"swmr": True, "locking": False}):
        try:
            return h5py.File(p, "r", **kw)
        except OSError as e:
            last = e
            text = str(e)
            if "already open for write" not in text and "lock" not in text:
                break  # damaged or foreign: SWMR would only retry it
    assert last is not None
    raise not_a_log(p, _first_line(last)) from None


def _first_line(e: BaseException) -> str:
    text = (str(e).splitlines() or [type(e).__name__])[0].strip()
    return text.removeprefix("Unable to synchronously open file (").removesuffix(")")[:200]


def check_schema(path: str | Path, attrs: Any, newest: int) -> None:
    """A log of a newer schema than this version reads is refused by name, not misread."""
    v = attrs.get("schema_version", 1)
    try:
        version = int(v)
    except (TypeError, ValueError):
        raise not_a_log(path, f"schema_version {v!r} is not a number") from None
    if version > newest:
        raise LogReadError(f"{path}: written by a newer relief-mpi (log schema_version {version}; this relief-mpi "
                           f"reads up to {newest}); read it with that version or newer")


PROFILE_KEYS: dict[str, type | tuple[type, ...]] = {"client": int, "rank": int, "tier": str, "profile": str,
                                                    "modalities": list}


def check_attrs(path: str | Path, attrs: dict[str, Any]) -> None:
    """The JSON attributes readers use: config (an object) and profiles (one object per client)."""
    for name, kind in (("config", dict), ("profiles", list)):
        if name not in attrs:
            raise not_a_log(path, f"no {name} attribute")
        try:
            value = json.loads(attrs[name])
        except (TypeError, ValueError):
            raise not_a_log(path, f"its {name} attribute is not JSON") from None
        if not isinstance(value, kind):
            raise not_a_log(path, f"its {name} attribute is not a JSON {'object' if kind is dict else 'list'}")
    for i, p in enumerate(json.loads(attrs["profiles"])):
        bad = [k for k, t in PROFILE_KEYS.items() if not isinstance(p, dict) or not isinstance(p.get(k), t)
               or (t is int and isinstance(p.get(k), bool))]
        if bad:
            raise not_a_log(path, f"profile {i} lacks or garbles {', '.join(bad)}")
        if p["client"] != i:
            raise not_a_log(path, f"profile {i} is for client {p['client']}")


def check_shapes(path: str | Path, n_rows: int, n_clients: int, arrays: dict[str, Any]) -> None:
    """Every per-round array has at least the complete rounds and, when the log lists its clients'
    profiles (n_clients > 0), one column per client."""
    for name, a in arrays.items():
        if a.ndim < 1 or a.shape[0] < n_rows:
            raise not_a_log(path, f"/{name} has {a.shape[0] if a.ndim else 0} rows, /rounds {n_rows}")
        if name.startswith("clients/") and (a.ndim != 2 or (n_clients and a.shape[1] != n_clients)):
            raise not_a_log(path, f"/{name} has shape {a.shape}, the log has {n_clients} clients")


def saved_config(path: str | Path, config_json: str) -> RunConfig:
    """The RunConfig a log's config attribute holds; one line when it holds something else."""
    try:
        return RunConfig.from_dict(json.loads(config_json))
    except Exception as e:  # noqa: BLE001 - a garbled config of any shape is one line
        raise not_a_log(path, f"its config attribute is not a run configuration: {type(e).__name__}: "
                              f"{(str(e).splitlines() or [''])[0][:160]}") from None
