"""The package's shape: MPI only in comm/, strategies that never touch a transport."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "relief_mpi"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_mpi4py_is_imported_only_in_comm() -> None:
    outside = [p.relative_to(PKG).as_posix() for p in _files(PKG)
               if p.parent.name != "comm" and any(n == "mpi4py" or n.startswith("mpi4py.") for n in _imports(p))]
    assert outside == []


def test_strategies_never_import_a_transport() -> None:
    bad = {p.name: sorted(n for n in _imports(p) if n.startswith(("mpi4py", "relief_mpi.comm")))
           for p in _files(PKG / "strategy")}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_scan_sees_a_lazy_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from mpi4py import MPI\n    return MPI\n")
    assert "mpi4py" in _imports(f)
