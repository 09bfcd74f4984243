"""device.energy.modeled_energy, the log's `energy_j`: busy power while training, idle power for the
rest of the round, and the link's energy per bit, per client (numbers worked by hand)."""

from __future__ import annotations

import numpy as np

from relief_mpi.device.energy import modeled_energy


def test_modeled_energy_by_hand() -> None:
    p_busy, p_idle, nj = np.array([2.0, 10.0]), np.array([0.5, 1.0]), np.array([1.0, 0.0])
    busy, nbytes = np.array([3.0, 5.0]), np.array([1e6, 1e6])
    # client 0: 2 W x 3 s + 0.5 W x (5 - 3) s + 1 nJ/bit x 8e6 bit = 6 + 1 + 0.008 J; client 1 is busy all round
    assert np.allclose(modeled_energy(p_busy, p_idle, nj, busy, 5.0, nbytes), [7.008, 50.0], rtol=0, atol=1e-12)
    # a client busy longer than the round (it finished last) has no idle time, never a negative one
    assert modeled_energy(p_busy[:1], p_idle[:1], nj[:1], np.array([6.0]), 5.0, np.array([0.0]))[0] == 12.0
