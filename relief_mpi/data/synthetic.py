"""Built-in seeded synthetic dataset with MHEALTH's modality structure (no download needed).

Channels mirror MHEALTH: acc at chest/ankle/arm, ECG at the chest, gyro and mag at ankle/arm.
The signals come from the simulator in simulator.py: 12 classes, 6 of which can only be told from
their twin by the magnetometer and 6 only by ECG, with overlapping classes, intrusions of other
behaviour inside bouts and subject differences, so that no model reaches 100% macro-F1 and a
model that ignores the rare cohorts caps its macro-F1 near one half.
"""

from __future__ import annotations

from relief_mpi.data import cache
from relief_mpi.data.base import DatasetSpec, RawDataset, Recording, group_modalities
from relief_mpi.data.simulator import CLASS_NAMES, builtin_sessions

__all__ = ["CHANNELS", "CLASSES", "POSITION_ORDER", "RATE_HZ", "TYPE_ORDER", "generate", "spec"]

CLASSES = CLASS_NAMES
RATE_HZ = 50.0

# (name, sensor type, body position)
CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("chest_acc_x", "acc", "chest"), ("chest_acc_y", "acc", "chest"), ("chest_acc_z", "acc", "chest"),
    ("ecg_1", "ecg", "chest"), ("ecg_2", "ecg", "chest"),
    ("ankle_acc_x", "acc", "ankle"), ("ankle_acc_y", "acc", "ankle"), ("ankle_acc_z", "acc", "ankle"),
    ("ankle_gyro_x", "gyro", "ankle"), ("ankle_gyro_y", "gyro", "ankle"), ("ankle_gyro_z", "gyro", "ankle"),
    ("ankle_mag_x", "mag", "ankle"), ("ankle_mag_y", "mag", "ankle"), ("ankle_mag_z", "mag", "ankle"),
    ("arm_acc_x", "acc", "arm"), ("arm_acc_y", "acc", "arm"), ("arm_acc_z", "acc", "arm"),
    ("arm_gyro_x", "gyro", "arm"), ("arm_gyro_y", "gyro", "arm"), ("arm_gyro_z", "gyro", "arm"),
    ("arm_mag_x", "mag", "arm"), ("arm_mag_y", "mag", "arm"), ("arm_mag_z", "mag", "arm"),
)
TYPE_ORDER = ("acc", "gyro", "mag", "ecg")
POSITION_ORDER = ("chest", "ankle", "arm")


def spec(modality_by: str = "type") -> DatasetSpec:
    return DatasetSpec(
        name="synthetic",
        classes=CLASSES,
        modalities=group_modalities(CHANNELS, modality_by, TYPE_ORDER, POSITION_ORDER),
        sample_rate_hz=RATE_HZ,
        channel_names=tuple(c[0] for c in CHANNELS),
    )


def generate(seed: int = 0, modality_by: str = "type", n_subjects: int = 10) -> RawDataset:
    """One recording per subject (about 5.6 minutes at 50 Hz, every class once in a random order,
    2 s rests between, label -1): deterministic for a seed."""
    sessions = cache.builtin_sessions(seed, n_subjects, lambda: builtin_sessions(seed, n_subjects))
    recs = [Recording(subject=k + 1, signals=x, labels=y, source=f"synthetic(seed={seed})")
            for k, (x, y) in enumerate(sessions)]
    return RawDataset(spec(modality_by), recs)
