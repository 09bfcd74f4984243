"""The plots `report` and `bench` draw, checked on the matplotlib objects they save (not on pixels):
round axes carry whole-number ticks only (issue 13, item 11: "fractional round ticks"), and the
per-client axes stay readable at 31 clients and beyond ("unreadable x labels at 31 clients")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from relief_mpi.log.hdf5 import RoundLogWriter, RunLog, read_log  # noqa: E402
from relief_mpi.log.report import write_plots  # noqa: E402
from tests.bench.logs import write_log, write_paper_log  # noqa: E402
from tests.log.test_hdf5 import record  # noqa: E402


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """Every figure written with savefig, in order (the real savefig still writes the PNG)."""
    figs: list[Figure] = []
    orig = Figure.savefig

    def grab(self: Figure, *args: object, **kw: object) -> None:
        figs.append(self)
        orig(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "savefig", grab)
    yield figs


def visible_ticks(ax: Axes) -> list[float]:
    """The major x ticks inside the axis's view (the locator also returns some just outside)."""
    lo, hi = sorted(ax.get_xlim())
    return [float(t) for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]


def assert_whole_rounds(ax: Axes, rounds: int) -> None:
    ticks = visible_ticks(ax)
    assert ticks, f"{ax.get_title()!r}: no tick on the round axis"
    assert all(float(t).is_integer() for t in ticks), f"{ax.get_title()!r}: fractional round ticks {ticks}"
    assert all(1 <= t <= rounds for t in ticks), f"{ax.get_title()!r}: ticks {ticks} outside rounds 1..{rounds}"


def round_axes(figs: list[Figure]) -> list[Axes]:
    return [ax for f in figs for ax in f.axes if ax.get_xlabel() == "round"]


@pytest.mark.parametrize("rounds", [1, 2, 3, 7])
def test_report_round_axis_has_whole_number_ticks(tmp_path: Path, saved: list[Figure], rounds: int) -> None:
    log = read_log(write_log(tmp_path / "r.h5", "fedavg", 0, [0.1 * (i + 1) for i in range(rounds)]))
    write_plots(log, tmp_path, "r")
    axes = round_axes(saved)
    assert len(axes) == 1, "the F1 figure has one round axis"
    assert_whole_rounds(axes[0], rounds)


def test_report_round_axis_with_rounds_not_evaluated(tmp_path: Path, saved: list[Figure]) -> None:
    # --eval-every 3 over 7 rounds: only rounds 3 and 6 have a macro-F1 (NaN elsewhere)
    f1 = [np.nan, np.nan, 0.3, np.nan, np.nan, 0.6, np.nan]
    write_plots(read_log(write_log(tmp_path / "e.h5", "fedavg", 0, f1)), tmp_path, "e")
    assert_whole_rounds(round_axes(saved)[0], 7)


def client_log(path: Path, k: int) -> RunLog:
    tiers = ("high", "mid", "low-power")
    profiles = [{"client": i, "rank": i + 1, "tier": tiers[i % 3], "profile": "p", "modalities": ["acc"]}
                for i in range(k)]
    w = RoundLogWriter(path, {"config": json.dumps({"rounds": 2}), "profiles": json.dumps(profiles), "hosts": "[]",
                              "strategy": "fedavg"}, k, ["acc", "shared"], ["high"])
    for r in (1, 2):
        w.append(record(r, k))
    w.close()
    return read_log(path)


def label_boxes(fig: Figure, ax: Axes) -> list:  # noqa: ANN401 - matplotlib Bbox
    FigureCanvasAgg(fig)  # savefig closed the figure: draw it again on its own canvas to measure text
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    return [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("k", [3, 12, 31, 64, 300])
def test_report_client_axes_are_readable(tmp_path: Path, saved: list[Figure], k: int) -> None:
    log = client_log(tmp_path / f"c{k}.h5", k)
    write_plots(log, tmp_path, f"c{k}")
    fig = saved[1]
    assert [ax.get_title() for ax in fig.axes] == ["bytes per client", "energy per client"]
    width, height = fig.get_size_inches() * fig.dpi
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        texts = [t.get_text() for t in labels]
        ticks = [float(x) for x in ax.get_xticks()]
        assert all(float(x).is_integer() and 0 <= x < k for x in ticks), "a tick sits on a client's bar"
        assert texts == [f"{int(x)} {('high', 'mid', 'low-power')[int(x) % 3]}" for x in ticks], \
            "each label names the client under its bar and its tier"
        step = int(ticks[1] - ticks[0]) if len(ticks) > 1 else 1
        assert ticks == list(range(0, k, step)), "labels spread evenly over every client"
        if k <= 64:
            assert step == 1, "every client is labelled"
        boxes = label_boxes(fig, ax)
        for a, b in zip(boxes, boxes[1:], strict=False):
            if labels[0].get_rotation() == 90:  # upright: neighbours must not touch
                assert not a.overlaps(b), f"{k} clients: tick labels overlap"
            else:  # slanted parallel labels: the distance between their lines exceeds one line of text
                xa, xb = (ax.transData.transform((t, 0))[0] for t in ticks[:2])
                pitch = (xb - xa) * np.sin(np.radians(labels[0].get_rotation()))
                assert pitch > labels[0].get_fontsize() * fig.dpi / 72, f"{k} clients: slanted labels overlap"
        assert all(b.x0 >= -1 and b.x1 <= width + 1 and b.y0 >= -1 and b.y1 <= height + 1 for b in boxes), \
            "a tick label is cut off at the figure's edge"
        assert labels[0].get_fontsize() >= 6, "labels too small to read"


def bench_round_axes(tmp_path: Path, saved: list[Figure], rounds: int) -> list[Axes]:
    from relief_mpi.bench import paper
    from relief_mpi.bench.plots import write_figures, write_paper_figures
    from relief_mpi.bench.summary import summarize

    f1 = [0.1 * (i + 1) for i in range(rounds)]
    ours = [(read_log(p), str(p)) for p in (write_log(tmp_path / f"{s}-seed0.h5", s, 0, f1)
                                            for s in ("fedavg", "relief"))]
    (tmp_path / "ours").mkdir()
    write_figures(ours, summarize(ours), tmp_path / "ours")
    d = tmp_path / "paper"
    d.mkdir()
    pap = [(read_log(p), str(p)) for p in (write_paper_log(d / f"{s}-seed0.h5", s, 0, f1, [0.5, 0.5, 0.5])
                                           for s in ("fedavg", "relief"))]
    write_paper_figures(pap, paper.summarize(pap), d)
    return round_axes(saved)


@pytest.mark.parametrize("rounds", [2, 3])
def test_bench_round_axes_have_whole_number_ticks(tmp_path: Path, saved: list[Figure], rounds: int) -> None:
    axes = bench_round_axes(tmp_path, saved, rounds)
    assert len(axes) == 5, [ax.get_title() for ax in axes]  # bytes/round, paper F1 round, 2x energy, allocation
    for ax in axes:
        assert_whole_rounds(ax, rounds)
