"""--rng authors: the authors' order of draws from torch's global generator, checked against an
independent re-implementation of their loop (torch's own DataLoader and torch.optim.Adam, as their
RELIEF/fl/client.py uses them), and refused under MPI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from relief_mpi.cli.train import check_rng
from relief_mpi.config import ModelConfig, RngStream, RunConfig, StrategyConfig
from relief_mpi.debug import DebugHooks
from relief_mpi.errors import ReliefError
from relief_mpi.model.groups import GroupRegistry
from relief_mpi.model.paper import PaperNet
from relief_mpi.run import run_inprocess
from relief_mpi.run_setup import build_setup
from tests.helpers import run_mpi

SEED, EPOCHS, BATCH, CLIENTS = 5, 2, 64, 2  # 931 and 689 windows: epochs end on a dropped short batch


def _config(rng: RngStream) -> RunConfig:
    return RunConfig(rounds=2, seed=SEED, rng=rng, model=ModelConfig(encoder_channels=(4, 8)),
                     strategy=StrategyConfig(name="fedavg", local_epochs=EPOCHS, batch_size=BATCH))


def _run(tmp_path: Path, rng: RngStream) -> Path:
    dump = tmp_path / rng
    dump.mkdir()
    run_inprocess(_config(rng), CLIENTS, tmp_path / f"{rng}.h5", debug=DebugHooks(dump_dir=str(dump)))
    return dump


def _their_round(model: PaperNet, windows: list[tuple[torch.Tensor, torch.Tensor]], channels: list[list[int]],
                 theta: dict[str, torch.Tensor], reg: GroupRegistry) -> list[list[np.ndarray]]:
    """One round of their loop: each client in turn loads theta, trains every parameter with a fresh
    torch.optim.Adam for EPOCHS epochs of a shuffled DataLoader (drop_last when it has more windows
    than a batch) on the global generator, and reports the change of every group."""
    out = []
    for x, y in windows:
        model.load_state_dict(theta)
        before = [reg.get(model, b).copy() for b in range(len(reg))]
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=len(y) > BATCH)
        for _ in range(EPOCHS):
            for xb, yb in loader:
                loss = F.cross_entropy(model([xb[:, c] for c in channels]), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        out.append([reg.get(model, b) - before[b] for b in range(len(reg))])
    return out


def _their_deltas(dump: Path) -> dict[tuple[int, int], list[np.ndarray]]:
    """(round, client) -> per-group deltas of the re-implemented authors' run, rounds 1 and 2 (round 2
    starts from the global model our server logged, after their one evaluation draw)."""
    setup = build_setup(_config("authors"), CLIENTS)
    spec, data, reg = setup.data.spec, setup.data, setup.registry
    assert isinstance(reg, GroupRegistry)  # the paper model's parameter groups
    windows = []
    for ws in data.clients_train:
        x = ws.x if ws.materialised else ws.take(np.arange(len(ws))).x
        windows.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(ws.y).long()))
    channels = [list(m.channels) for m in spec.modalities]
    torch.manual_seed(SEED)  # their set_seed, then build_model
    model = PaperNet([len(c) for c in channels], len(spec.classes), encoder_channels=(4, 8))
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    deltas = {(1, k): d for k, d in enumerate(_their_round(model, windows, channels, theta0, reg))}
    for _ in DataLoader(TensorDataset(torch.zeros(3, 1)), batch_size=256, shuffle=False):
        pass  # their evaluation of the global model: one DataLoader iterator over the test set
    for b in range(len(reg)):
        reg.set(model, b, np.load(dump / f"r2-before-b{b}.npy"))
    theta1 = {k: v.clone() for k, v in model.state_dict().items()}
    deltas.update({(2, k): d for k, d in enumerate(_their_round(model, windows, channels, theta1, reg))})
    return deltas


def _dumped(dump: Path, rnd: int, k: int, n_groups: int) -> list[np.ndarray]:
    return [np.load(dump / f"r{rnd}-c{k}-b{b}.npy")[:-1] for b in range(n_groups)]  # the last entry: its weight


def test_authors_stream_repeats_their_loop_and_ours_does_not(tmp_path: Path) -> None:
    authors, ours = _run(tmp_path, "authors"), _run(tmp_path, "ours")
    theirs = _their_deltas(authors)
    n_groups = len(theirs[(1, 0)])
    for (rnd, k), expected in theirs.items():
        for b, (got, want) in enumerate(zip(_dumped(authors, rnd, k, n_groups), expected, strict=True)):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8, err_msg=f"round {rnd}, client {k}, group {b}")
    # the check can fail: our own per-(seed, round, client) streams draw other batches and masks
    gaps = [max(float(np.abs(g - w).max()) for g, w in zip(_dumped(ours, rnd, k, n_groups), exp, strict=True))
            for (rnd, k), exp in theirs.items() if rnd == 1]
    assert min(gaps) > 1e-4, gaps


def test_authors_stream_is_refused_under_mpi_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    r = run_mpi(2, ["train", "--rng", "authors", "--rounds", "1", "--encoder-channels", "4,8", "--out", str(out)],
                timeout=180)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --rng authors needs --transport inprocess"), r.stderr
    assert "each client rank owns its own stream" in lines[0]
    assert not out.exists()


def test_authors_stream_refuses_resume_and_ours_passes() -> None:
    with pytest.raises(ReliefError, match="cannot be resumed"):
        check_rng("authors", "inprocess", resuming=True)
    check_rng("authors", "inprocess", resuming=False)
    check_rng("ours", "mpi", resuming=True)
