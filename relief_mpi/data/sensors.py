"""Every sensor name a dataset of ours can have: a fleet's sensor outside these is a typo.

Its own module, below the loaders and above nothing of the device package, so that device
profiles can check a sensor name without importing the dataset registry (which imports the fleet).
"""

from __future__ import annotations

from relief_mpi.data import mhealth, pamap2, spar, synthetic

__all__ = ["sensor_names"]


def sensor_names() -> tuple[str, ...]:
    """Every modality name a dataset of ours can have (sensor types and body positions): a fleet's
    sensor outside these is a typo, not a sensor some other dataset lacks."""
    names: list[str] = []
    for orders in (synthetic.TYPE_ORDER, synthetic.POSITION_ORDER, mhealth.TYPE_ORDER, mhealth.POSITION_ORDER,
                   pamap2.TYPE_ORDER, pamap2.PAPER_TYPE_ORDER, pamap2.POSITION_ORDER, spar.TYPE_ORDER,
                   spar.POSITION_ORDER):
        names += [n for n in orders if n not in names]
    return tuple(names)
