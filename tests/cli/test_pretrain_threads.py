"""Issue 13, item 10: `relief-mpi pretrain` trains alone in its process, so it uses one torch thread
unless OMP_NUM_THREADS says otherwise (torch's default on a loaded 2-core host was 5-6x slower)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="torch's default is already 1 thread on a 1-core host")
def test_pretrain_uses_one_thread_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from relief_mpi.cli import cli

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)  # what torch picks by itself on a 2-core host
    try:
        cli.main(["pretrain", "--out", str(tmp_path / "b.pt"), "--pretrain-epochs", "1", "--encoder-channels",
                  "8,16"], standalone_mode=False)
        assert torch.get_num_threads() == 1
        assert (tmp_path / "b.pt").stat().st_size > 0
    finally:
        torch.set_num_threads(before)
