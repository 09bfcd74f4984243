"""The built-in synthetic dataset holds the clients it is asked for (issue 22, case 16).

The README's `mpirun -n 9 relief-mpi train --clients 1000` failed on the default data: `1620
training windows cannot give 1000 clients 8 windows each`. The dataset now simulates more subjects
when its 10 are too few (the first 10 are the same subjects whatever the count, so runs of up to
about 190 clients see the data they always did).
"""

from __future__ import annotations

import numpy as np

from relief_mpi.config import DataConfig
from relief_mpi.data.registry import build_federated, load_raw
from relief_mpi.data.synthetic import SUBJECTS, subjects_for

ALL = ("acc", "gyro", "mag", "ecg")


def test_few_clients_keep_the_ten_subjects() -> None:
    cfg = DataConfig()
    assert [subjects_for(n, cfg) for n in (1, 4, 100, 190)] == [SUBJECTS] * 4
    small, grown = load_raw(cfg, 0), load_raw(cfg, 0, n_clients=400)
    assert len(small.recordings) == SUBJECTS < len(grown.recordings)
    for a, b in zip(small.recordings, grown.recordings[:SUBJECTS], strict=True):  # the same first 10 subjects
        np.testing.assert_array_equal(a.signals, b.signals)


def test_250_clients_get_their_windows_on_the_default_data() -> None:
    # 10 subjects give 1620 training windows: fewer than 250 clients x 8
    n = 250
    data = build_federated(DataConfig(), 0, [ALL] * n)
    sizes = [len(w) for w in data.clients_train]
    assert len(sizes) == n and min(sizes) >= 8
