"""HDF5 round log: one file per run, written by rank 0 only, flushed every round.

The file is in SWMR mode while it grows, so `h5py.File(path, "r", swmr=True)` reads it during a
run and after a crash (a killed writer leaves the file marked open; a SWMR read still works, and
`read_log` falls back to it, after log.check has ruled out a truncated file).

A round is complete only once it is on disk: each round writes the per-client, per-block and
per-tier arrays and the /rounds row, flushes, and only then counts itself in the /n_rounds
counter and flushes again. The reader trims everything to that counter, so a crash, a kill or a
failed write (disk full) never leaves a partial round, or a row of zeros, visible as data.

A write that fails is rolled back where HDF5 allows (every dataset shrunk to /n_rounds, /status
"failed", closed: even raw /rounds then shows no unfinished round), and a log with no complete
round is removed. The failure stops the run with LogWriteError naming the file and the cause: h5py reports
some write failures only from object destructors ("Exception ignored in ObjectID.__dealloc__"),
so the writer keeps its datasets open (errors then surface from flush) and also treats any such
swallowed error during a write as a failure.

/status is the end marker: "running" while the run goes, then "complete", "interrupted",
"diverged", "timeout" or "failed". It is a dataset, not an attribute: a SWMR writer may not add
attributes, and reopening the file after SWMR would fail while a reader has it open.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from relief_mpi.log.check import LogReadError, check_attrs, check_schema, check_shapes, not_a_log, open_for_reading
from relief_mpi.stops import LogWriteError

__all__ = [
    "CLIENT_METRICS", "ROUND_DTYPE", "ROUND_FIELDS", "RUNNING", "RoundLogWriter", "RoundRecord", "RunLog",
    "SCHEMA_VERSION", "TIER_ARRAYS", "complete_rounds", "open_log", "read_log", "write_error_cause",
    "write_failed"
]


SCHEMA_VERSION = 2  # 2: /n_rounds (complete rounds) and /status (end marker)
RUNNING = "running"

ROUND_FIELDS: tuple[tuple[str, str], ...] = (
    ("round", "<i4"), ("wall_time_s", "<f8"), ("wall_elapsed_s", "<f8"), ("virtual_time_s", "<f8"),
    ("virtual_elapsed_s", "<f8"), ("accuracy", "<f8"), ("macro_f1", "<f8"), ("rare_f1", "<f8"),
    ("bytes_up", "<f8"), ("bytes_down", "<f8"), ("energy_j", "<f8"), ("energy_measured_j", "<f8"),
    ("train_loss", "<f8"), ("deadline_s", "<f8"), ("rejected", "<i4"),
    # The published analytic system model (design.md section 0), next to our emulated figures.
    ("t_star", "<f8"), ("analytic_time_s", "<f8"), ("analytic_elapsed_s", "<f8"), ("analytic_energy_j", "<f8"),
    ("analytic_energy_cum_j", "<f8"), ("analytic_mb_up", "<f8"), ("analytic_mb_down", "<f8"), ("trained_pct", "<f8"),
    # Evaluation (evaluation.Evaluation): accuracy / macro_f1 above are the protocol's headline; these are
    # ours (each client's own windows and sensors) and the pooled full-modality test set, side by side.
    ("own_accuracy", "<f8"), ("own_macro_f1", "<f8"), ("pooled_accuracy", "<f8"), ("pooled_macro_f1", "<f8"),
    # The authors' round number: their seeding round is round 0, so ours minus 1.
    ("published_round", "<f8"),
    # Ours beside the published trained_pct (which counts buffers over parameters, as the authors do):
    # the share of the groups' parameters trained, mean over clients.
    ("trained_params_pct", "<f8"),
)
ROUND_DTYPE = np.dtype(list(ROUND_FIELDS))
WARNING_TEXT = 400
WARNING_DTYPE = np.dtype([("round", "<i4"), ("kind", "S24"), ("text", f"S{WARNING_TEXT}")])  # /warnings rows

CLIENT_METRICS = ("busy_s", "idle_s", "compute_wall_s", "lag_s", "download_s", "upload_s",
                  "bytes_up", "bytes_down", "energy_j", "energy_measured_j", "steps", "samples",
                  "rejected", "loss", "flops", "budget", "n_groups", "analytic_time_s", "analytic_energy_j")


@dataclass
class RoundRecord:
    row: dict[str, float]  # ROUND_FIELDS values
    clients: dict[str, np.ndarray]  # CLIENT_METRICS, each [K]
    divergence: np.ndarray  # [B]
    alloc: np.ndarray  # uint8 [K, B]
    tier_f1: np.ndarray  # [T]
    class_f1: np.ndarray | None = None  # [C] per-class F1 of the headline evaluation (NaN = not evaluated)
    tier_pooled_f1: np.ndarray | None = None  # [T] pooled test set seen with each tier's sensors
    tier_time_s: np.ndarray | None = None  # [T] max over the tier's clients of download + compute + upload
    tier_analytic_time_s: np.ndarray | None = None  # [T] the same from the published analytic model


# Per-tier [R, T] arrays beside /tiers/f1 (RoundRecord attribute -> dataset name), NaN when absent.
TIER_ARRAYS = (("tier_pooled_f1", "pooled_f1"), ("tier_time_s", "time_s"), ("tier_analytic_time_s", "analytic_time_s"))


def write_error_cause(e: BaseException) -> str:
    """The OS-level cause of an HDF5 write failure ("No space left on device"), not HDF5's dump."""
    m = re.search(r"errno = (\d+)", str(e))
    if m and int(m.group(1)):
        return os.strerror(int(m.group(1)))
    if isinstance(e, OSError) and e.errno:
        return os.strerror(e.errno)
    first = (str(e).splitlines() or [type(e).__name__])[0].strip()
    return first[:200] or type(e).__name__


_failed: list[Path] = []  # logs whose writes failed in this process


def write_failed() -> bool:
    """Did a log write fail in this process? HDF5 then still holds data it can never flush, and
    its shutdown at interpreter exit retries and can crash: the CLI ends such a process with
    os._exit after its one line (see cli.output.exit_process)."""
    return bool(_failed)


def _from_h5_dealloc(tb: Any) -> bool:
    """Is this traceback h5py freeing an object (ObjectID._dealloc)? Cython prints such an error
    through sys.excepthook and then sys.unraisablehook; neither is a Python caller's to catch."""
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name.endswith("_dealloc")


def _quiet_stale_handles() -> None:
    """After a failed write every h5py object of that file fails again when freed; keep those
    repeats (already reported once) off stderr for the rest of the process."""
    prev_unraisable, prev_except = sys.unraisablehook, sys.excepthook
    if getattr(prev_unraisable, "_relief_quiet", False):
        return

    def unraisable(u: Any) -> None:
        if "ObjectID" in str(u.object) and isinstance(u.exc_value, (RuntimeError, OSError)):
            return
        prev_unraisable(u)

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not (isinstance(value, (RuntimeError, OSError)) and _from_h5_dealloc(tb)):
            prev_except(kind, value, tb)

    unraisable._relief_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook, sys.excepthook = unraisable, excepthook


@contextmanager
def _swallowed_errors() -> Iterator[list[BaseException]]:
    """Collect (and keep off stderr) the errors h5py can only report from destructors."""
    seen: list[BaseException] = []
    prev_unraisable, prev_except = sys.unraisablehook, sys.excepthook

    def unraisable(u: Any) -> None:
        if u.exc_value is not None:
            seen.append(u.exc_value)

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if _from_h5_dealloc(tb):
            seen.append(value)
        else:
            prev_except(kind, value, tb)

    sys.unraisablehook, sys.excepthook = unraisable, excepthook
    try:
        yield seen
    finally:
        sys.unraisablehook, sys.excepthook = prev_unraisable, prev_except


class RoundLogWriter:
    """Writes one log; every write failure becomes LogWriteError and the file stays readable."""

    def __init__(self, path: Path, attrs: dict[str, Any], n_clients: int, block_names: Sequence[str],
                 tier_names: Sequence[str], existing: list[RoundRecord] | None = None,
                 extra: Mapping[str, tuple[np.ndarray, dict[str, Any]]] | None = None) -> None:
        self.path = Path(path)
        self.n_complete = 0
        self.failed = False
        self.f: h5py.File | None = None
        self._ds: dict[str, h5py.Dataset] = {}
        self.fail_after: int | None = None  # test only: the next append after this many rounds fails (ENOSPC)
        self.cause = ""  # why the last write failed ("No space left on device")
        try:
            with _swallowed_errors() as swallowed:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.f = f = h5py.File(self.path, "w", libver="latest")
                for key, v in attrs.items():
                    f.attrs[key] = str(v) if isinstance(v, (str, np.str_)) else v
                f.attrs["schema_version"] = SCHEMA_VERSION
                k, b, t = n_clients, len(block_names), len(tier_names)
                ds = self._ds
                ds["rounds"] = f.create_dataset("rounds", (0,), maxshape=(None,), dtype=ROUND_DTYPE, chunks=(64,))
                g = f.create_group("clients")
                for name in CLIENT_METRICS:
                    ds[f"clients/{name}"] = g.create_dataset(name, (0, k), maxshape=(None, k), dtype="f8",
                                                             chunks=(16, k), fillvalue=np.nan)
                bg = f.create_group("blocks")
                bg.create_dataset("names", data=np.array(list(block_names), dtype=h5py.string_dtype()))
                ds["blocks/divergence"] = bg.create_dataset("divergence", (0, b), maxshape=(None, b), dtype="f8",
                                                            chunks=(16, b), fillvalue=np.nan)
                ds["blocks/trainers"] = bg.create_dataset("trainers", (0, b), maxshape=(None, b), dtype="i4",
                                                          chunks=(16, b))
                ds["alloc"] = f.create_dataset("alloc", (0, k, b), maxshape=(None, k, b), dtype="u1",
                                               chunks=(16, k, b))
                tg = f.create_group("tiers")
                tg.create_dataset("names", data=np.array(list(tier_names), dtype=h5py.string_dtype()))
                ds["tiers/f1"] = tg.create_dataset("f1", (0, t), maxshape=(None, t), dtype="f8", chunks=(16, t),
                                                   fillvalue=np.nan)
                for _, name in TIER_ARRAYS:
                    ds[f"tiers/{name}"] = tg.create_dataset(name, (0, t), maxshape=(None, t), dtype="f8",
                                                            chunks=(16, t), fillvalue=np.nan)
                classes = json.loads(str(attrs.get("classes", "[]")))  # the run's class names (log_attrs)
                if classes:
                    cg = f.create_group("classes")
                    cg.create_dataset("names", data=np.array(classes, dtype=h5py.string_dtype()))
                    ds["classes/f1"] = cg.create_dataset("f1", (0, len(classes)), maxshape=(None, len(classes)),
                                                         dtype="f8", chunks=(16, len(classes)), fillvalue=np.nan)
                for name, (arr, meta) in (extra or {}).items():  # fixed datasets, e.g. the split (data/split.py)
                    f.create_dataset(name, data=arr).attrs.update(meta)
                ds["n_rounds"] = f.create_dataset("n_rounds", data=np.int64(0))
                ds["status"] = f.create_dataset("status", data=np.bytes_(RUNNING), dtype="S16")
                # a run that is not learning (relief_mpi.learning): one row per warning line printed
                ds["warnings"] = f.create_dataset("warnings", (0,), maxshape=(None,), dtype=WARNING_DTYPE,
                                                  chunks=(16,))
                f.flush()
                f.swmr_mode = True
            if swallowed:
                raise swallowed[0]
            for rec in existing or []:
                self.append(rec)
        except LogWriteError:
            self._discard()
            raise LogWriteError(f"creating round log {self.path} failed: {self.cause}") from None
        except Exception as e:  # noqa: BLE001 - any failure to create the log is one line, and no file is left
            self._discard()
            raise LogWriteError(f"creating round log {self.path} failed: {write_error_cause(e)}") from None

    def append(self, rec: RoundRecord) -> None:
        """Write one round, flush, then count it as complete (and flush again)."""
        if self.failed or self.f is None:
            raise LogWriteError(f"writing round log {self.path} failed earlier; the log keeps rounds "
                                f"1..{self.n_complete}")
        n = self.n_complete
        ds = self._ds
        try:
            with _swallowed_errors() as swallowed:
                def put(d: h5py.Dataset, value: np.ndarray) -> None:
                    d.resize(n + 1, axis=0)
                    d[n] = value

                for name in CLIENT_METRICS:
                    put(ds[f"clients/{name}"], rec.clients[name])
                put(ds["blocks/divergence"], rec.divergence)
                put(ds["blocks/trainers"], rec.alloc.sum(axis=0).astype(np.int32))
                put(ds["alloc"], rec.alloc)
                put(ds["tiers/f1"], rec.tier_f1)
                for attr, name in TIER_ARRAYS:
                    v = getattr(rec, attr)
                    put(ds[f"tiers/{name}"], np.full(ds["tiers/f1"].shape[1], np.nan) if v is None else v)
                if "classes/f1" in ds:
                    c_n = ds["classes/f1"].shape[1]
                    put(ds["classes/f1"], np.full(c_n, np.nan) if rec.class_f1 is None else rec.class_f1)
                row = np.zeros(1, ROUND_DTYPE)
                for name, _ in ROUND_FIELDS:
                    row[name] = rec.row.get(name, np.nan)
                put(ds["rounds"], row[0])
                if self.fail_after is not None and n >= self.fail_after:
                    raise OSError(28, os.strerror(28))
                self.f.flush()
                if swallowed:
                    raise swallowed[0]
                ds["n_rounds"][()] = n + 1
                self.f.flush()
            if swallowed:
                raise swallowed[0]
        except Exception as e:  # noqa: BLE001 - h5py raises RuntimeError, OSError, ... for the same I/O failure
            self.cause = write_error_cause(e)
            rolled_back = self._roll_back(n)
            if n == 0 or not rolled_back:  # no complete round: a file would only block the rerun (`exists; pass
                self._discard(keep_file=n > 0)  # --overwrite`)
            raise LogWriteError(f"writing round log {self.path} failed: {self.cause}") from None
        self.n_complete = n + 1

    def _roll_back(self, n: int) -> bool:
        """After a failed write of round n+1: shrink every per-round dataset back to the n complete
        rounds, set /status to "failed" and close, so that even the raw datasets (read without
        read_log's trimming, as the README's pandas example does) show no unfinished round. Shrinking
        drops the unwritten chunks from HDF5's cache, so this often works on a full disk too; when
        it does not (False), the file keeps /n_rounds = n and read_log still trims to it."""
        assert self.f is not None
        try:
            with _swallowed_errors() as swallowed:
                for key, d in self._ds.items():
                    if key not in ("n_rounds", "status", "warnings") and d.shape[0] > n:  # per-round ones
                        d.resize(n, axis=0)
                self._ds["status"][()] = np.bytes_("failed")
                self.f.flush()
                if not swallowed:
                    self._ds.clear()
                    self.f.close()
            if swallowed:
                return False
        except Exception:  # noqa: BLE001 - the write failed again: the caller closes quietly instead
            return False
        self.failed = True
        return True

    def add_warning(self, rnd: int, kind: str, text: str) -> None:
        """One /warnings row (round, kind, the line printed), flushed; a failure is a LogWriteError."""
        if self.failed or self.f is None or "warnings" not in self._ds:
            return
        d = self._ds["warnings"]
        row = np.zeros(1, WARNING_DTYPE)
        row["round"], row["kind"], row["text"] = rnd, kind.encode()[:24], text.encode()[:WARNING_TEXT]
        try:
            with _swallowed_errors() as swallowed:
                d.resize(d.shape[0] + 1, axis=0)
                d[d.shape[0] - 1] = row[0]
                self.f.flush()
            if swallowed:
                raise swallowed[0]
        except Exception as e:  # noqa: BLE001 - as append: any I/O failure is one line
            self.cause = write_error_cause(e)
            self._discard(keep_file=True)
            raise LogWriteError(f"writing round log {self.path} failed: {self.cause}") from None

    def close(self, status: str = "complete") -> None:
        """Write the end marker and close; a failure here is a LogWriteError too (rounds stay complete)."""
        if self.f is None or self.failed or not self.f.id.valid:
            return
        try:
            with _swallowed_errors() as swallowed:
                self._ds["status"][()] = np.bytes_(status)
                self.f.flush()
                self._ds.clear()
                self.f.close()
            if swallowed:
                raise swallowed[0]
        except Exception as e:  # noqa: BLE001
            self.cause = write_error_cause(e)
            self._discard(keep_file=True)
            raise LogWriteError(f"closing round log {self.path} failed: {self.cause}") from None

    def remove(self) -> None:
        """Close without a trace: the file is deleted (a start that failed must not look like a run)."""
        if self.f is not None and self.f.id.valid and not self.failed:
            try:  # a clean close first: nothing stale is left in HDF5 (see write_failed)
                with _swallowed_errors() as swallowed:
                    self._ds.clear()
                    self.f.close()
                if swallowed:
                    raise swallowed[0]
            except Exception:  # noqa: BLE001, S110 - _discard closes it quietly
                pass
        self._discard()

    def _discard(self, keep_file: bool = False) -> None:
        """Stop writing after a failure: close quietly (HDF5 may fail again on close) and, unless
        keep_file, delete the file. The on-disk /n_rounds still counts only complete rounds."""
        self.failed = True
        if self.f is not None and self.f.id.valid:  # not closed cleanly (by _roll_back): HDF5 keeps stale buffers
            _failed.append(self.path)
            _quiet_stale_handles()
            with _swallowed_errors():
                self._ds.clear()
                try:
                    self.f.close()
                except Exception:  # noqa: BLE001, S110 - the failure was already reported
                    pass
        if not keep_file:
            try:
                self.path.unlink()
            except OSError:
                pass


def open_log(path: str | Path) -> h5py.File:
    """Open a log for reading, also one that is being written or whose writer was killed; a
    truncated or foreign file is a LogReadError at once (log.check says why an open could hang)."""
    return open_for_reading(path)


@dataclass
class RunLog:
    attrs: dict[str, Any]
    rounds: np.ndarray  # structured, ROUND_DTYPE; complete rounds only
    clients: dict[str, np.ndarray]  # [R, K]
    block_names: list[str]
    divergence: np.ndarray
    alloc: np.ndarray
    tier_names: list[str]
    tier_f1: np.ndarray
    rows_written: int = -1  # rows in /rounds, complete or not (-1: not read from a file)
    status: str = ""  # the end marker; "" for a schema-1 log, which has none
    class_names: list[str] = field(default_factory=list)
    class_f1: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [R, C]; (R, 0) in older logs
    tier_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # TIER_ARRAYS names -> [R, T]

    @property
    def incomplete_rows(self) -> int:
        """Rows in /rounds that were not completely written (a failed write, or one in progress)."""
        return max(0, self.rows_written - len(self.rounds))

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.attrs["config"])

    @property
    def profiles(self) -> list[dict[str, Any]]:
        return json.loads(self.attrs["profiles"])

    def records(self) -> list[RoundRecord]:
        out = []
        for i in range(len(self.rounds)):
            row = {name: self.rounds[name][i].item() for name, _ in ROUND_FIELDS}
            extra = {attr: self.tier_arrays[name][i] for attr, name in TIER_ARRAYS if name in self.tier_arrays}
            out.append(RoundRecord(row, {k: v[i] for k, v in self.clients.items()}, self.divergence[i],
                                   self.alloc[i], self.tier_f1[i],
                                   class_f1=self.class_f1[i] if self.class_f1.shape[1:] != (0,) else None, **extra))
        return out


def _all_fields(rows: np.ndarray) -> np.ndarray:
    """/rounds with every ROUND_FIELDS column: a log written before a field existed reads as NaN there."""
    missing = [name for name, _ in ROUND_FIELDS if name not in (rows.dtype.names or ())]
    if not missing:
        return rows
    out = np.zeros(len(rows), np.dtype(rows.dtype.descr + [(name, "<f8") for name in missing]))
    for name in rows.dtype.names or ():
        out[name] = rows[name]
    for name in missing:
        out[name] = np.nan
    return out


def complete_rounds(f: h5py.File, rows: np.ndarray) -> int:
    """How many rows of /rounds are complete: the /n_rounds counter; a schema-1 log has none, so
    there a row of zeros (round 0, never a real round: a block that never reached the disk) ends it."""
    if "n_rounds" in f:
        return min(int(f["n_rounds"][()]), len(rows))
    zero = np.flatnonzero(rows["round"] == 0) if len(rows) else np.zeros(0, int)
    return int(zero[0]) if zero.size else len(rows)


def read_log(path: str | Path) -> RunLog:
    """Everything in a log, trimmed to the complete rounds; LogReadError (one line) when the file is
    truncated, damaged, foreign or of a newer schema."""
    with open_log(path) as f:
        try:
            return _read(path, f)
        except LogReadError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever a damaged file makes h5py or numpy raise is one line
            raise not_a_log(path, (str(e).splitlines() or [type(e).__name__])[0][:200]) from None


def _text(values: np.ndarray) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in values]


def _read(path: str | Path, f: h5py.File) -> RunLog:
    check_schema(path, f.attrs, SCHEMA_VERSION)
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
    check_attrs(path, attrs)
    for name in ("rounds", "clients", "blocks/names", "blocks/divergence", "alloc", "tiers/names", "tiers/f1"):
        if name not in f:
            raise not_a_log(path, f"no /{name}")
    raw = f["rounds"]
    if not isinstance(raw, h5py.Dataset) or raw.dtype.names is None or "round" not in raw.dtype.names \
            or raw.ndim != 1:
        raise not_a_log(path, "/rounds is not a table of rounds")
    rows = _all_fields(raw[:])
    n = complete_rounds(f, rows)
    if n < 0:
        raise not_a_log(path, f"/n_rounds is {n}")
    status = f["status"][()].decode() if "status" in f else ""
    k = len(json.loads(attrs["profiles"]))
    arrays = {f"clients/{name}": f["clients"][name] for name in f["clients"]}
    arrays.update({"blocks/divergence": f["blocks/divergence"], "alloc": f["alloc"], "tiers/f1": f["tiers/f1"]})
    arrays.update({f"tiers/{name}": f[f"tiers/{name}"] for _, name in TIER_ARRAYS if name in f["tiers"]})
    if "classes" in f:
        arrays["classes/f1"] = f["classes/f1"]
    check_shapes(path, n, k, arrays)
    return RunLog(
        attrs=attrs, rounds=rows[:n],
        # logs before issue 25 also held wait_s, the same array as idle_s: read once, as idle_s
        clients={k: f["clients"][k][:n] for k in f["clients"] if k != "wait_s"},
        block_names=_text(f["blocks/names"][:]),
        divergence=f["blocks/divergence"][:n], alloc=f["alloc"][:n],
        tier_names=_text(f["tiers/names"][:]),
        tier_f1=f["tiers/f1"][:n], rows_written=len(rows), status=status,
        class_names=_text(f["classes/names"][:]) if "classes" in f else [],
        class_f1=f["classes/f1"][:n] if "classes" in f else np.zeros((n, 0)),
        tier_arrays={name: f[f"tiers/{name}"][:n] for _, name in TIER_ARRAYS if name in f["tiers"]},
    )
