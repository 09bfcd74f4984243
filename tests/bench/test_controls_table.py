"""Issue 17, "Done when": the bench table lists the three controls (fedavg-deadline, skip-absent,
fixed-order) beside RELIEF and FedAvg: by default under --protocol paper, in summary.md with a
"what RELIEF adds over each" line per control, and in docs/bench.md for SPAR and the synthetic
layouts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from relief_mpi.bench import paper as pp
from relief_mpi.log.hdf5 import read_log
from tests.bench.logs import write_paper_log
from tests.helpers import REPO

CONTROLS = ("fedavg-deadline", "skip-absent", "fixed-order")


def test_paper_bench_rows_include_the_controls_and_they_are_registered() -> None:
    from relief_mpi.cli.bench import PAPER_EXTRAS, PAPER_STRATEGIES
    from relief_mpi.strategy.registry import strategy_classes

    known = strategy_classes()
    default = PAPER_STRATEGIES + tuple(s for s in PAPER_EXTRAS if s in known)  # as `bench --protocol paper` picks
    assert {"relief", "fedavg", *CONTROLS} <= set(default)


def test_summary_lists_each_control_and_what_relief_adds_over_it(tmp_path: Path) -> None:
    f1 = {"fedavg": [0.3, 0.6, 0.86], "relief": [0.5, 0.87, 0.9], "fedavg-deadline": [0.2, 0.5, 0.8],
          "skip-absent": [0.4, 0.86, 0.9], "fixed-order": [0.5, 0.87, 0.9]}
    logs = [(read_log(p), str(p)) for p in (write_paper_log(tmp_path / f"{s}-seed0.h5", s, 0, v, [0.8, 0.6, 0.5])
                                            for s, v in f1.items())]
    md = pp.markdown(pp.summarize(logs))
    rows = {m.group(1) for m in re.finditer(r"^\| ([a-z-]+) \| 1 \|", md, re.M)}
    assert {"relief", "fedavg", *CONTROLS} <= rows, rows
    for c in CONTROLS:
        assert re.search(rf"^\| RELIEF vs {c} \(.*\) \| 1 \|", md, re.M), c


def section(text: str, title: str) -> str:
    start = text.index(title)
    nxt = text.find("\n### ", start + len(title))
    return text[start:nxt if nxt > 0 else len(text)]


@pytest.mark.parametrize("title", ["### 3.1 SPAR (real data)", "### 3.3 Synthetic MHEALTH layout",
                                   "### 3.4 Synthetic PAMAP2 layout"])
def test_docs_bench_tables_show_the_controls(title: str) -> None:
    text = section((REPO / "docs" / "bench.md").read_text(), title)
    for s in ("relief", "fedavg", *CONTROLS):
        assert re.search(rf"^\| {s} \| \d+ \|", text, re.M), f"{title}: no table row for {s}"
    for c in CONTROLS:
        assert f"| RELIEF vs {c} " in text, f"{title}: no paired line for {c}"
