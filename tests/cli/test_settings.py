"""The CLI's option -> config key map is derived from the option and field names (it was a hand-kept
map of 40 entries, copied below as the oracle), and the CLI's modules, config.py and bench/ import
one another without a circle (function-level imports included; r25a's test covers the package)."""

from __future__ import annotations

import ast
from pathlib import Path

from relief_mpi.cli.options import PARAM_KEYS
from relief_mpi.cli.settings import option_settings, setting_key

ROOT = Path(__file__).resolve().parents[2] / "relief_mpi"

HAND_KEPT = {
    "rounds": "rounds", "seed": "seed", "eval_every": "eval_every", "checkpoint_every": "checkpoint_every",
    "dataset": "data.dataset", "data_dir": "data.data_dir", "modality_by": "data.modality_by", "alpha": "data.alpha",
    "window_s": "data.window_s", "downsample": "data.downsample", "mode": "model.mode", "base": "model.base",
    "groups_per_modality": "model.groups_per_modality", "strategy": "strategy.name",
    "model_name": "model.model", "rho": "model.rho", "encoder_channels": "model.encoder_channels",
    "b_mode": "model.b_mode", "local_epochs": "strategy.local_epochs",
    "lam": "strategy.lam", "gamma": "strategy.gamma", "t_star_bracket": "strategy.t_star_bracket",
    "cost_model": "strategy.cost_model", "pretrain_epochs": "model.pretrain_epochs",
    "pretrain_lr": "model.pretrain_lr", "pretrain_optimizer": "model.pretrain_optimizer",
    "local_steps": "strategy.local_steps", "batch_size": "strategy.batch_size", "lr": "strategy.lr",
    "momentum": "strategy.momentum", "mu": "strategy.mu", "deadline": "strategy.deadline", "beta": "strategy.beta",
    "fleet": "device.fleet", "profiles_dir": "device.profiles_dir", "clock": "device.clock",
    "protocol": "data.protocol", "partition": "data.partition", "split": "data.split",
    "test_subjects": "data.test_subjects",
}


def test_param_keys_derived_from_names_equal_the_hand_kept_map() -> None:
    """Every entry of the old map is derived (options added since then simply add entries)."""
    assert {k: PARAM_KEYS.get(k) for k in HAND_KEPT} == HAND_KEPT
    assert set(PARAM_KEYS.values()) <= option_settings()  # train's and bench's options, through the registry
    assert set(HAND_KEPT.values()) <= option_settings()
    assert setting_key("out") is None and setting_key("validation") == "data.validation"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (functions too), but not under `if TYPE_CHECKING`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _graph(files: list[Path]) -> dict[str, set[str]]:
    mods = {_module(f): f for f in files}
    return {m: {i for i in _imports(f) if i in mods and i != m} for m, f in mods.items()}


def test_no_import_circle_among_cli_config_and_bench() -> None:
    files = [*sorted((ROOT / "cli").glob("*.py")), ROOT / "config.py", *sorted((ROOT / "bench").glob("*.py")),
             ROOT / "strategy" / "catalogue.py"]
    graph = _graph(files)
    assert graph["relief_mpi.cli.bench"] >= {"relief_mpi.cli.options", "relief_mpi.cli.errors"}  # the scan sees imports
    assert find_cycle(graph) is None, find_cycle(graph)


def test_the_scan_finds_a_circle_through_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "relief_mpi").mkdir()
    a, b = tmp_path / "relief_mpi" / "a.py", tmp_path / "relief_mpi" / "b.py"
    a.write_text("import relief_mpi.b\n")
    b.write_text("def f():\n    from relief_mpi.a import x\n")
    global ROOT
    old, ROOT = ROOT, tmp_path / "relief_mpi"
    try:
        assert find_cycle(_graph([a, b])) == ["relief_mpi.a", "relief_mpi.b", "relief_mpi.a"]
    finally:
        ROOT = old
