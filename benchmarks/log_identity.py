"""Are two relief-mpi HDF5 logs the same run? Every dataset and attribute must be equal (NaN equal
to NaN, bit for bit otherwise) except the fields below, which differ between any two runs of the
same command: time stamps, versions, hosts and process ids, and the figures measured on the real
clock. Used to show that a refactor leaves a fixed-seed job's log unchanged (issue 25): run the
same command on the commit before and after, then

    python benchmarks/log_identity.py BEFORE.h5 AFTER.h5 [--ignore NAME ...]

prints EQUAL and exits 0, or one line per difference and exits 1. Built on the integrator's
/work/coord/compare_logs.py (same exclusions), with the exclusions named and the comparison
importable (tests/log/test_log_identity.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

# Root and group attributes that name when, where and with what a run was made, not what it computed.
TIME_STAMPS = frozenset({"started_at", "finished_at"})
VERSIONS = frozenset({"relief_mpi_version", "torch_version", "python_version", "mpi_library", "h5py_version",
                      "numpy_version"})
HOSTS = frozenset({"hosts", "writer_host", "writer_pid"})
IGNORED_ATTRS = TIME_STAMPS | VERSIONS | HOSTS
# Per-round and per-client columns measured on the host's real clock (or its energy meter).
WALL_CLOCK = frozenset({"wall_time_s", "wall_elapsed_s", "compute_wall_s", "lag_s", "energy_measured_j"})

__all__ = ["HOSTS", "IGNORED_ATTRS", "TIME_STAMPS", "VERSIONS", "WALL_CLOCK", "differences", "main"]


def _same(a: object, b: object, ignored: frozenset[str]) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype.names or y.dtype.names:
            if x.dtype.names != y.dtype.names or x.shape != y.shape:
                return False
            return all(_same(x[n], y[n], ignored) for n in x.dtype.names or () if n not in ignored)
        if x.shape != y.shape:
            return False
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc"))
    return bool(a == b)


def _names(f: h5py.File, extra: frozenset[str]) -> set[str]:
    out: list[str] = []
    f.visit(out.append)
    return {n for n in out if n.split("/")[-1] not in extra}


def differences(a: Path | str, b: Path | str, ignore: Iterable[str] = ()) -> list[str]:
    """One line per difference between logs a and b (empty: the same run), ignoring the fields
    above and `ignore` (attribute or dataset names)."""
    extra = frozenset(ignore)
    attrs_out, fields_out = IGNORED_ATTRS | extra, WALL_CLOCK | extra
    diffs = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        ka, kb = set(fa.attrs) - attrs_out, set(fb.attrs) - attrs_out
        diffs += [f"attr {k}: only in {'A' if k in ka else 'B'}" for k in sorted(ka ^ kb)]
        for k in sorted(ka & kb):
            va, vb = fa.attrs[k], fb.attrs[k]
            if k == "config":
                ca, cb = json.loads(va), json.loads(vb)
                if ca != cb:
                    keys = sorted(x for x in set(ca) | set(cb) if ca.get(x) != cb.get(x))
                    diffs.append(f"attr config differs: {keys}")
            elif not _same(va, vb, fields_out):
                diffs.append(f"attr {k} differs")
        na, nb = _names(fa, extra), _names(fb, extra)
        diffs += [f"{n}: only in {'A' if n in na else 'B'}" for n in sorted(na ^ nb)]
        for n in sorted(na & nb):
            oa, ob = fa[n], fb[n]
            if isinstance(oa, h5py.Dataset) and isinstance(ob, h5py.Dataset) and n.split("/")[-1] not in fields_out:
                if not _same(oa[()], ob[()], fields_out):
                    diffs.append(f"dataset {n} differs")
            for k in sorted((set(oa.attrs) | set(ob.attrs)) - attrs_out):
                if k not in oa.attrs or k not in ob.attrs or not _same(oa.attrs[k], ob.attrs[k], fields_out):
                    diffs.append(f"{n} attr {k} differs")
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: log_identity.py A.h5 B.h5 [--ignore NAME ...]", file=sys.stderr)
        return 2
    extra = argv[argv.index("--ignore") + 1:] if "--ignore" in argv else []
    diffs = differences(argv[1], argv[2], extra)
    for d in diffs:
        print(d)
    print("EQUAL" if not diffs else f"{len(diffs)} difference(s)")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
