"""Built-in seeded synthetic dataset with MHEALTH's modality structure (no download needed).

Channels mirror MHEALTH: acc at chest/ankle/arm, ECG at the chest, gyro and mag at ankle/arm.
The signals come from the simulator in simulator.py: 12 classes, 6 of which can only be told from
their twin by the magnetometer and 6 only by ECG, with overlapping classes, intrusions of other
behaviour inside bouts and subject differences, so that no model reaches 100% macro-F1 and a
model that ignores the rare cohorts caps its macro-F1 near one half.
"""

from __future__ import annotations

import math

from relief_mpi.config import DataConfig
from relief_mpi.data import cache
from relief_mpi.data.base import DatasetSpec, RawDataset, Recording, group_modalities
from relief_mpi.data.simulator import CLASS_NAMES, builtin_sessions

__all__ = ["CHANNELS", "CLASSES", "POSITION_ORDER", "RATE_HZ", "SUBJECTS", "SUBJECT_BYTES", "TYPE_ORDER", "generate",
           "spec", "subjects_for"]

CLASSES = CLASS_NAMES
RATE_HZ = 50.0
SUBJECTS = 10  # the dataset's size, unless more clients need more (subjects_for)
SUBJECT_SAMPLES = 16800  # one subject's recording: 12 bouts of 26 s and 2 s rests, at 50 Hz
SUBJECT_BYTES = 3 * SUBJECT_SAMPLES * 23 * 4  # its float32 signals, and the windows and copies made of them

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


def generate(seed: int = 0, modality_by: str = "type", n_subjects: int = SUBJECTS) -> RawDataset:
    """One recording per subject (about 5.6 minutes at 50 Hz, every class once in a random order,
    2 s rests between, label -1): deterministic for a seed."""
    sessions = cache.builtin_sessions(seed, n_subjects, lambda: builtin_sessions(seed, n_subjects))
    recs = [Recording(subject=k + 1, signals=x, labels=y, source=f"synthetic(seed={seed})")
            for k, (x, y) in enumerate(sessions)]
    return RawDataset(spec(modality_by), recs)


def subjects_for(n_clients: int, cfg: DataConfig) -> int:
    """How many subjects the built-in dataset simulates for `n_clients` clients: SUBJECTS, or, when
    those would not give every client its 8 training windows with room to spare for the label
    skew, enough for twice that (subject k is the same whatever the count, so 10 subjects are the
    first 10 of any larger set; runs of up to about 190 clients keep the 10)."""
    rate = RATE_HZ / max(1, cfg.downsample)
    window = cfg.window or max(1, round(cfg.window_s * rate))
    stride = cfg.stride or max(1, round(window * (1 - cfg.overlap)))
    active = SUBJECT_SAMPLES / max(1, cfg.downsample) * 26 / 28  # the rests carry no label
    per_subject = max(1.0, (1 - cfg.test_fraction) * active / stride)  # training windows, an upper estimate
    need = 8 * n_clients
    if need <= 0.8 * SUBJECTS * per_subject:
        return SUBJECTS
    return math.ceil(2 * need / per_subject)
