"""The paper's data protocol (docs/design.md section 0) as configuration: what it sets, which
device type each subject's client gets, and which modalities are rare.

`paper_data_config(base)` is the DataConfig the published protocol implies: the authors'
preprocessing, one client per subject, 256-sample windows with stride 50 and a random 20% of
each client's windows pooled into one test set, drawn as the authors' code draws it (split
"paper"; "paper-streams" draws the same share from one stream per subject). That split leaks (see docs/data.md, "Three
test splits"); `replace(paper_data_config(cfg), split="time")` or `split="subject"` keeps the rest
of the protocol and removes the leak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from relief_mpi.config import DataConfig
from relief_mpi.errors import ReliefError

__all__ = ["DEVICE_TYPES", "PAPER_DEVICE_COUNTS", "PAPER_RARE", "PAPER_STRIDE", "PAPER_TEST_FRACTION", "PAPER_WINDOW",
           "PARTITIONS", "PROTOCOLS", "SPLITS", "check_data_config", "device_modalities", "n_test_subjects",
           "paper_data_config", "paper_device_types", "paper_modality_sets"]

PROTOCOLS = ("ours", "paper")
PARTITIONS = ("dirichlet", "subject")
SPLITS = ("time", "paper", "paper-streams", "subject", "file")
# A random share of each subject's windows to test: the authors' draw, ours per subject, a file's.
RANDOM_SPLITS = ("paper", "paper-streams", "file")

PAPER_WINDOW = 256  # samples (5.12 s at 50 Hz)
PAPER_STRIDE = 50
PAPER_TEST_FRACTION = 0.2

DEVICE_TYPES = ("full", "acc_gyro", "acc_only")
# Clients per device type (full, acc_gyro, acc_only), given to subjects in sorted order.
PAPER_DEVICE_COUNTS: dict[str, tuple[int, int, int]] = {
    "mhealth": (3, 3, 4),
    "pamap2": (3, 3, 2),
    "spar": (5, 0, 5),
    "synthetic": (3, 3, 4),
}
# The modalities only full devices carry. The synthetic data mirror MHEALTH's sensors, and
# their mag and ecg channels are the ones that separate otherwise identical classes.
PAPER_RARE: dict[str, tuple[str, ...]] = {
    "mhealth": ("mag", "ecg"),
    "pamap2": ("mag", "hr"),
    "spar": ("gyro",),
    "synthetic": ("mag", "ecg"),
}
_TYPE_SENSORS = {"acc_gyro": ("acc", "gyro"), "acc_only": ("acc",)}


def paper_data_config(base: DataConfig) -> DataConfig:
    """`base` with everything the paper's protocol fixes (dataset, data_dir, alpha and the rest
    kept). No server split: the authors pretrain nothing on held-back client data."""
    return replace(base, protocol="paper", partition="subject", split="paper", window=PAPER_WINDOW,
                   stride=PAPER_STRIDE, test_fraction=PAPER_TEST_FRACTION, modality_by="type",
                   downsample=2 if base.dataset == "pamap2" else 1, server_fraction=0.0)


def check_data_config(cfg: DataConfig) -> None:
    """ReliefError (one line) for values or combinations the pipeline does not support."""
    for name, value, allowed in (("protocol", cfg.protocol, PROTOCOLS), ("partition", cfg.partition, PARTITIONS),
                                 ("split", cfg.split, SPLITS)):
        if value not in allowed:
            raise ReliefError(f"data {name} must be one of {', '.join(allowed)}, got {value!r}")
    if cfg.partition == "dirichlet" and cfg.split != "time":
        raise ReliefError(f"split={cfg.split} needs partition=subject (the Dirichlet partition splits on time)")
    for key, number in (("window", cfg.window), ("stride", cfg.stride), ("test_subjects", cfg.test_subjects)):
        if number < 0:
            raise ReliefError(f"data {key} must be >= 0, got {number}")
    if (cfg.split == "file") != bool(cfg.split_file):
        raise ReliefError("split=file and a split file (--split-file) go together"
                          + ("" if cfg.split_file else "; none was given"))
    if cfg.test_subjects and cfg.split != "subject":
        raise ReliefError(f"test_subjects={cfg.test_subjects} only applies to split=subject (split is {cfg.split})")


def paper_device_types(dataset: str, n_clients: int) -> list[str]:
    """The device type (full, acc_gyro or acc_only) of each client in sorted-subject order, as the
    paper's table gives them; for another client count the table's proportions are scaled
    (largest remainder, ties to the richer type)."""
    if dataset not in PAPER_DEVICE_COUNTS:
        raise ReliefError(f"no paper device table for dataset {dataset!r} (known: {', '.join(PAPER_DEVICE_COUNTS)})")
    if n_clients < 0:
        raise ReliefError(f"n_clients must be >= 0, got {n_clients}")
    counts = PAPER_DEVICE_COUNTS[dataset]
    total = sum(counts)
    if n_clients != total:
        exact = [c * n_clients / total for c in counts]
        scaled = [int(e) for e in exact]
        by_remainder = sorted(range(len(counts)), key=lambda i: (-(exact[i] - scaled[i]), i))
        for i in by_remainder[:n_clients - sum(scaled)]:
            scaled[i] += 1
        counts = tuple(scaled)  # type: ignore[assignment]
    return [t for t, c in zip(DEVICE_TYPES, counts, strict=True) for _ in range(c)]


def device_modalities(device_type: str, modalities: Sequence[str]) -> tuple[str, ...]:
    """The dataset's modalities a device of this type carries (full = all of them)."""
    if device_type == "full":
        return tuple(modalities)
    if device_type not in _TYPE_SENSORS:
        raise ReliefError(f"unknown device type {device_type!r} (known: {', '.join(DEVICE_TYPES)})")
    return tuple(m for m in modalities if m in _TYPE_SENSORS[device_type])


def paper_modality_sets(dataset: str, modalities: Sequence[str], n_clients: int) -> list[tuple[str, ...]]:
    """Each client's modality set under the paper's device table (the `modality_sets` argument of
    build_federated for partition=subject)."""
    return [device_modalities(t, modalities) for t in paper_device_types(dataset, n_clients)]


def n_test_subjects(n_subjects: int, test_subjects: int = 0) -> int:
    """How many subjects split=subject holds out: `test_subjects`, or ~20% (at least 1)."""
    n = test_subjects if test_subjects > 0 else max(1, int(round(PAPER_TEST_FRACTION * n_subjects)))
    if n >= n_subjects:
        raise ReliefError(f"split=subject holds out {n} of {n_subjects} subjects, leaving none to train on; "
                          f"set test_subjects below {n_subjects}")
    return n
