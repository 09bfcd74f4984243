"""The MPICH default comm/__init__.py sets before MPI starts: the cohort reduce's algorithm, with the
pip MPICH wheel (4 or newer) only, unless the user chose one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from relief_mpi.comm import REDUCE_ALGORITHM_VAR, pip_mpich_major
from tests.helpers import REPO

SHOW = f"import os, relief_mpi.comm; print(os.environ.get({REDUCE_ALGORITHM_VAR!r}))"


@pytest.mark.skipif((pip_mpich_major() or 0) < 4, reason="the default is set for the pip MPICH wheel (4+) only")
@pytest.mark.parametrize("given, seen", [(None, "sched_binomial"), ("tsp_tree", "tsp_tree")])
def test_reduce_algorithm_default_and_a_users_choice(given: str | None, seen: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != REDUCE_ALGORITHM_VAR}
    if given is not None:
        env[REDUCE_ALGORITHM_VAR] = given
    res = subprocess.run([sys.executable, "-c", SHOW], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == seen


def test_no_default_once_mpi_has_started() -> None:
    """Set after MPI_Init it would do nothing but mislead whoever reads the environment."""
    env = {k: v for k, v in os.environ.items() if k != REDUCE_ALGORITHM_VAR}
    code = "import mpi4py.MPI; " + SHOW
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "None"
