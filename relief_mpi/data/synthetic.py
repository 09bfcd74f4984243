"""Built-in seeded synthetic dataset with MHEALTH's modality structure (no download needed).

Channels mirror MHEALTH: acc at chest/ankle/arm, ECG at the chest, gyro and mag at ankle/arm.
Classes 4 and 5 move identically (same acc/gyro/mag statistics) and differ only in heart
rate, so only the rare ECG modality can tell them apart: a model that ignores the rare cohort
caps its macro-F1 there, which is what the rare-modality F1 metric is meant to expose.
"""

from __future__ import annotations

import numpy as np

from relief_mpi.data.base import DatasetSpec, Modality, RawDataset, Recording

CLASSES = ("rest", "walk", "run", "cycle", "climb", "climb-strained")
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

# Motion frequency (Hz) and amplitude per class; 4 and 5 share them on purpose.
_MOTION_F = (0.2, 1.0, 2.4, 1.4, 0.7, 0.7)
_MOTION_A = (0.3, 1.0, 1.8, 1.2, 0.9, 0.9)
_HEART_HZ = (1.1, 1.5, 2.6, 2.0, 1.5, 2.5)


def group_modalities(channels: tuple[tuple[str, str, str], ...], by: str,
                     type_order: tuple[str, ...], position_order: tuple[str, ...]) -> tuple[Modality, ...]:
    """Group channel columns into modalities by sensor type or by body position."""
    if by not in ("type", "position"):
        raise ValueError(f"modality grouping must be 'type' or 'position', got {by!r}")
    key = 1 if by == "type" else 2
    order = type_order if by == "type" else position_order
    mods = []
    for name in order:
        idx = tuple(i for i, ch in enumerate(channels) if ch[key] == name)
        if idx:
            mods.append(Modality(name, idx, tuple(channels[i][0] for i in idx)))
    return tuple(mods)


def spec(modality_by: str = "type") -> DatasetSpec:
    return DatasetSpec(
        name="synthetic",
        classes=CLASSES,
        modalities=group_modalities(CHANNELS, modality_by, TYPE_ORDER, POSITION_ORDER),
        sample_rate_hz=RATE_HZ,
        channel_names=tuple(c[0] for c in CHANNELS),
    )


def generate(seed: int = 0, modality_by: str = "type", n_subjects: int = 10,
             segments_per_class: int = 2, segment_s: float = 24.0) -> RawDataset:
    """One recording per subject: shuffled activity segments, subject-specific gains and noise."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1F]))
    n_ch = len(CHANNELS)
    seg_len = int(segment_s * RATE_HZ)
    t = np.arange(seg_len) / RATE_HZ
    phase = rng.uniform(0, 2 * np.pi, size=n_ch)
    axis_gain = rng.uniform(0.5, 1.5, size=(len(CLASSES), n_ch))
    offsets = rng.normal(0, 0.5, size=(len(CLASSES), n_ch))
    offsets[5] = offsets[4]
    axis_gain[5] = axis_gain[4]
    recs = []
    for s in range(n_subjects):
        gain = rng.uniform(0.8, 1.2, size=n_ch)
        jitter = rng.uniform(0.9, 1.1)
        order = rng.permutation(np.repeat(np.arange(len(CLASSES)), segments_per_class))
        sig_parts, lab_parts = [], []
        for c in order:
            x = np.empty((seg_len, n_ch), np.float64)
            for j, (_, kind, _) in enumerate(CHANNELS):
                if kind == "ecg":
                    hr = _HEART_HZ[c] * jitter
                    beat_phase = (t * hr + rng.uniform()) % 1.0
                    x[:, j] = 1.5 * np.exp(-((beat_phase - 0.5) ** 2) / 0.002) + rng.normal(0, 0.35, seg_len)
                else:
                    f = _MOTION_F[c] * jitter
                    a = _MOTION_A[c] * axis_gain[c, j] * gain[j]
                    x[:, j] = (a * np.sin(2 * np.pi * f * t + phase[j] + rng.uniform(0, 0.5))
                               + offsets[c, j] + rng.normal(0, 0.9, seg_len))
            sig_parts.append(x.astype(np.float32))
            lab_parts.append(np.full(seg_len, c, np.int64))
        recs.append(Recording(subject=s + 1, signals=np.concatenate(sig_parts), labels=np.concatenate(lab_parts),
                              source=f"synthetic(seed={seed})"))
    return RawDataset(spec(modality_by), recs)
