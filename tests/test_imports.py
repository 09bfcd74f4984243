"""The package's import graph, read from the sources with `ast`: no import circle, and every import
inside a function is on a short list of lazy imports, each with its reason.

An import inside a function hides a circle from Python (the module is complete by the time the
function runs) but not from a reader: the graph counts module-level and function-level imports
alike (imports under `if TYPE_CHECKING:` are for the type checker only and are left out).
`from relief_mpi.a import b` is an arrow to relief_mpi.a.b when b is a submodule, else to
relief_mpi.a; `from . import x` is resolved against the importing module's package.
Run as a script (`python tests/test_imports.py`) it prints the circles and the function-level imports.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "relief_mpi"

# Third-party modules imported inside a function, by (importing module, imported module): heavy,
# optional or platform-bound, paid only on the path that needs them.
LAZY_IMPORTS: dict[tuple[str, str], str] = {
    ("relief_mpi.bench.plots", "matplotlib"): "matplotlib (~1 s) only when a bench figure is drawn",
    ("relief_mpi.bench.plots", "matplotlib.pyplot"): "as above; pyplot also picks a backend on import",
    ("relief_mpi.bench.plots", "matplotlib.ticker"): "as above",
    ("relief_mpi.log.report", "matplotlib"): "matplotlib only for `report --plot`",
    ("relief_mpi.log.report", "matplotlib.pyplot"): "as above",
    ("relief_mpi.log.report", "matplotlib.ticker"): "as above",
    ("relief_mpi.data.cache", "h5py"): "h5py (~0.3 s) only when a prepared dataset file is read or written",
    ("relief_mpi.data.split", "h5py"): "h5py only when --split-file names a run log (a JSON split needs none)",
    ("relief_mpi.data.cache", "fcntl"): "POSIX only: the cache's file lock falls back without it",
    ("relief_mpi.device.energy", "pynvml"): "optional NVML meter, absent on most hosts",
    ("relief_mpi.device.throttle", "psutil"): "CPU pinning only on a client rank that applies its profile",
    ("relief_mpi.device.throttle", "torch"): "torch only where a profile sets threads or a GPU",
    ("relief_mpi.cli.hosts", "psutil"): "`hosts check` only; the command line starts without it",
    ("relief_mpi.cli.hosts", "torch"): "`hosts check` only: torch's threads and GPUs on each host",
    ("relief_mpi.cli.fleet", "torch"): "`fleet calibrate` only; the command line starts without torch",
    ("relief_mpi.cli.fleet", "torch.nn.functional"): "as above",
    ("relief_mpi.cli.pretrain", "torch"): "`pretrain` only; the command line starts without torch",
    ("relief_mpi.cli.pretrain", "numpy"): "as above",
    ("relief_mpi.cli.data", "shutil"): "`data fetch` only",
    ("relief_mpi.cli.data", "urllib.request"): "`data fetch` only (the network)",
    ("relief_mpi.cli.data", "urllib.error"): "as above",
    ("relief_mpi.cli.data", "zipfile"): "`data fetch` only",
    ("relief_mpi.comm", "importlib.metadata"): "read once at import, only to pick the pip MPICH wheel's default",
    ("relief_mpi.bench.runner", "os"): "the load average, where the platform has one",
}

# Our own modules imported inside a function, by importing module: the modules they load and why.
# relief_mpi.cli imports every command module when the command line starts (cli._register), so a
# command module reaches torch, h5py or MPI (comm.world, comm.mpi and mpirun initialise MPI on
# import) only inside the command that needs it: `--help` and bad input answer without them.
_CLI_HEAVY = "the command line starts without torch, h5py or MPI; loaded only by the command that runs"
LAZY_OWN: dict[str, tuple[frozenset[str], str]] = {
    "relief_mpi.program": (frozenset({"relief_mpi.cli"}),
                           "the first start-up line is printed before click, numpy and the commands load"),
    "relief_mpi.cli": (frozenset({"relief_mpi.cli.report", "relief_mpi.cli.train"}),
                       "the commands register after the group is defined (cli._register)"),
    "relief_mpi.cli.train": (frozenset({"relief_mpi.checkpoint", "relief_mpi.comm.world", "relief_mpi.config",
                                        "relief_mpi.log.check", "relief_mpi.log.hdf5", "relief_mpi.mpirun",
                                        "relief_mpi.run", "relief_mpi.signals"}), _CLI_HEAVY),
    "relief_mpi.cli.report": (frozenset({"relief_mpi.log.hdf5", "relief_mpi.log.report"}), _CLI_HEAVY),
    "relief_mpi.cli.output": (frozenset({"relief_mpi.log.hdf5", "relief_mpi.comm.world"}),
                              "h5py only to ask whether a log write failed; comm.world only once MPI runs"),
    "relief_mpi.cli.errors": (frozenset({"relief_mpi.comm", "relief_mpi.comm.world"}),
                              "MPI is asked about (and initialised) only when a job ends under it"),
    "relief_mpi.cli.fleet": (frozenset({"relief_mpi.client", "relief_mpi.model.flops", "relief_mpi.model.net",
                                        "relief_mpi.model.optim", "relief_mpi.run_setup"}), _CLI_HEAVY),
    "relief_mpi.cli.hosts": (frozenset({"relief_mpi.comm.world", "relief_mpi.device.throttle", "relief_mpi.run_setup"}),
                             _CLI_HEAVY),
    "relief_mpi.cli.pretrain": (frozenset({"relief_mpi.device.throttle", "relief_mpi.model.pretrain", "relief_mpi.run",
                                           "relief_mpi.run_setup"}), _CLI_HEAVY),
    "relief_mpi.cli.bench": (frozenset({"relief_mpi.bench.runner", "relief_mpi.bench.system",
                                        "relief_mpi.comm.world", "relief_mpi.mpirun",
                                        "relief_mpi.strategy.registry"}), _CLI_HEAVY),
    "relief_mpi.cli.config": (frozenset({"relief_mpi.log.check", "relief_mpi.log.hdf5"}), _CLI_HEAVY),
    "relief_mpi.bench.runner": (frozenset({"relief_mpi.bench.paper", "relief_mpi.bench.plots", "relief_mpi.comm.world",
                                           "relief_mpi.device.throttle", "relief_mpi.job", "relief_mpi.model.pretrain",
                                           "relief_mpi.mpirun", "relief_mpi.run", "relief_mpi.run_setup"}),
                                "the bench's in-process runs never initialise MPI; figures only at the end; torch "
                                "(device.throttle) only where a shared base is pretrained"),
    "relief_mpi.bench.system": (frozenset({"relief_mpi.job", "relief_mpi.log.hdf5", "relief_mpi.mpirun"}),
                                "the system bench's MPI job only when it runs"),
}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    in_function: bool


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    out = {}
    for p in sorted(package.rglob("*.py")):
        parts = list(p.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            out.update(id(s) for b in n.body for s in ast.walk(b))
    return out


def _in_functions(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            out.update(id(s) for s in ast.walk(n) if s is not n)
    return out


def imports(package: Path = PACKAGE) -> list[Import]:
    """Every import statement of the package (TYPE_CHECKING blocks left out), resolved to modules."""
    mods = module_names(package)
    out = []
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        skip, inner = _type_checking_only(tree), _in_functions(tree)
        for n in ast.walk(tree):
            if id(n) in skip or not isinstance(n, ast.Import | ast.ImportFrom):
                continue
            targets: list[str] = []
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            else:
                if n.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - (n.level - 1)]
                    mod = ".".join(base + ([n.module] if n.module else []))
                else:
                    mod = n.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in n.names]
            for t in dict.fromkeys(targets):
                out.append(Import(name, t, n.lineno, id(n) in inner))
    return out


def own(target: str, mods: dict[str, Path]) -> str | None:
    """The package module an import loads (a dotted name's longest known prefix), None outside it."""
    while target and target not in mods:
        target = target.rpartition(".")[0]
    return target or None


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    mods = module_names(package)
    g: dict[str, set[str]] = {m: set() for m in mods}
    for imp in imports(package):
        t = own(imp.imported, mods)
        if t is not None and t != imp.importer:
            g[imp.importer].add(t)
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The graph's circles: one shortest cycle through each strongly connected component (Tarjan)
    of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[set[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the package's ~120 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            comps.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:
        if len(comp) > 1:
            start = min(comp)
            out.append(_shortest_cycle(g, comp, start))
    return sorted(out)


def _shortest_cycle(g: dict[str, set[str]], comp: set[str], start: str) -> list[str]:
    """A shortest path start -> ... -> start inside comp (breadth first)."""
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(g[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is on no cycle")  # pragma: no cover


def function_level(package: Path = PACKAGE) -> list[Import]:
    return [i for i in imports(package) if i.in_function]


def test_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_function_level_imports_are_listed() -> None:
    mods = module_names()
    unlisted = []
    for i in function_level():
        t = own(i.imported, mods)
        if t is None:
            listed = (i.importer, i.imported) in LAZY_IMPORTS
        else:
            listed = t in LAZY_OWN.get(i.importer, (frozenset(), ""))[0]
        if not listed:
            unlisted.append(f"{i.importer}:{i.line} imports {i.imported}")
    assert not unlisted, "function-level imports not on the lazy list:\n" + "\n".join(unlisted)


def test_lazy_lists_are_current() -> None:
    """Every listed lazy import still happens inside a function (a list that only grows hides nothing)."""
    mods = module_names()
    seen = {(i.importer, own(i.imported, mods) or i.imported) for i in function_level()}
    stale = sorted(k for k in LAZY_IMPORTS if k not in seen)
    stale += sorted((m, t) for m, (ts, _) in LAZY_OWN.items() for t in ts if (m, t) not in seen)
    assert not stale, f"listed but not imported inside a function: {stale}"
    assert all(own(t, mods) is None for _, t in LAZY_IMPORTS), "LAZY_IMPORTS is for third-party modules"


# What comm/ may import of ours: the round types, the errors it raises, and the signal check of its wait.
COMM_BELOW = frozenset({"relief_mpi.rounds", "relief_mpi.errors", "relief_mpi.signals", "relief_mpi.stops"})


def test_comm_imports_nothing_above_it() -> None:
    """The transports are handed what they need (a callable for the start-up config, the hosted
    clients through comm.transport.HostedClients): no job type, no client, no stop module above them."""
    g = graph()
    above = {m: sorted(t for t in ts if not t.startswith("relief_mpi.comm") and t not in COMM_BELOW)
             for m, ts in g.items() if m == "relief_mpi.comm" or m.startswith("relief_mpi.comm.")}
    assert {m: ts for m, ts in above.items() if ts} == {}
    assert {t for t in g["relief_mpi.signals"] | g["relief_mpi.stops"] | g["relief_mpi.errors"]} <= COMM_BELOW
    assert not any(t.startswith("relief_mpi.comm") for t in g["relief_mpi.client"]), "client.py imports comm/"


def test_graph_sees_a_cycle(tmp_path: Path) -> None:
    """The reader finds a circle hidden in a function, through `from . import` and a submodule name."""
    pkg = tmp_path / "relief_mpi"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from relief_mpi.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "sub" / "c.py").write_text("import relief_mpi.a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from relief_mpi import a\n")
    assert cycles(graph(pkg)) == [["relief_mpi.a", "relief_mpi.sub.b", "relief_mpi.sub.c", "relief_mpi.a"]]
    assert [(i.importer, i.imported) for i in function_level(pkg)] == [("relief_mpi.sub.b", "relief_mpi.sub.c")]


if __name__ == "__main__":
    root = Path(sys.argv[1]) / "relief_mpi" if len(sys.argv) > 1 else PACKAGE
    for c in cycles(graph(root)):
        print("cycle:", " -> ".join(c))
    for i in function_level(root):
        print(f"function-level: {i.importer}:{i.line} -> {i.imported}")
