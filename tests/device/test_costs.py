"""What a client is charged: costs measured on a small probe (no allocation in proportion to an
option), charged on the batch a client really runs; a process that trains alone uses one thread."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from relief_mpi.config import RunConfig, StrategyConfig
from relief_mpi.model.flops import measure_costs
from relief_mpi.model.paper import PaperNet
from relief_mpi.rounds import REPORT_INDEX as R
from tests.helpers import REPO


def test_costs_of_a_huge_batch_are_scaled_from_a_probe() -> None:
    # A zero batch of 10^12 windows would be petabytes: measuring must not allocate it.
    torch.manual_seed(0)
    model = PaperNet([3, 3], 5)
    small = measure_costs(model, [3, 3], 64, 4)
    huge = measure_costs(model, [3, 3], 64, 10**12)
    assert huge.batch_size == 10**12
    np.testing.assert_allclose(huge.top_fwd, small.top_fwd * 10**12 / 4, rtol=1e-12)
    np.testing.assert_allclose(huge.enc_bwd, np.array(small.enc_bwd) * 10**12 / 4, rtol=1e-12)


def test_a_client_is_charged_for_the_batch_it_runs() -> None:
    from relief_mpi.run_setup import build_setup

    setup = build_setup(RunConfig(rounds=1, seed=0, strategy=StrategyConfig(name="fedavg-sgd", local_steps=2,
                                                                             batch_size=4096)), 3)
    model = setup.make_model()
    reg = setup.registry
    blocks = [reg.get(model, b) for b in range(len(reg))]
    trainer = setup.trainer(0)
    trainer.set_base(reg.get_base(model))
    plan = setup.strategy.configure_round(1)
    owned = {b: blocks[b].copy() for b in range(len(blocks)) if setup.strategy.ownership()[0, b]}
    report = trainer.train(plan, owned)[1]
    n = len(setup.data.clients_train[0])
    assert n < 4096
    steps, samples, flops = report[R["steps"]], report[R["samples"]], report[R["flops"]]
    assert steps == 2 and samples == 2 * n, "each step runs the client's whole (smaller) set"
    every = range(len(setup.data.spec.modalities))
    per_sample = setup.costs.step(every, every) / setup.costs.batch_size  # FedAvg: every encoder trains
    np.testing.assert_allclose(flops, per_sample * samples, rtol=1e-9)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="torch's default is already 1 thread on a 1-core host")
def test_in_process_run_uses_one_thread_unless_told(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              "import torch\n"
              "from pathlib import Path\n"
              "from relief_mpi.config import RunConfig, StrategyConfig\n"
              "from relief_mpi.run import run_inprocess\n"
              "before = torch.get_num_threads()\n"
              "run_inprocess(RunConfig(rounds=1, eval_every=5, strategy=StrategyConfig(name='fedavg-sgd', "
              f"local_steps=1)), 1, Path({str(tmp_path / 'r.h5')!r}))\n"
              "print(before, torch.get_num_threads())\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr
    before, after = map(int, res.stdout.split()[-2:])
    assert before > 1 and after == 1, (before, after)
