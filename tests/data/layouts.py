"""Writers of small files in the exact MHEALTH and PAMAP2 layouts (real column order, real
separators, NaN gaps, null / transient labels), with the values they wrote, for the tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

# MHEALTH: 24 columns, tab-separated as in the UCI files. Label 0 = null class.
MH_LABELS = [0] * 100 + [1] * 400 + [0] * 50 + [4] * 400 + [12] * 300 + [0] * 30  # 1280 rows


def mhealth_table(subject: int, labels: list[int] = MH_LABELS) -> np.ndarray:
    rng = np.random.default_rng(subject)
    n = len(labels)
    x = np.round(rng.normal(0, 2, size=(n, 23)), 5)
    x[:, 3:5] = np.round(rng.normal(0, 0.3, size=(n, 2)), 5)  # ECG
    return np.column_stack([x, np.asarray(labels, float)])


def write_mhealth(root: Path, subjects: tuple[int, ...] = (1, 2, 3),
                  labels: list[int] = MH_LABELS) -> dict[int, np.ndarray]:
    d = root / "MHEALTHDATASET"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in subjects:
        t = mhealth_table(s, labels)
        lines = ["\t".join(str(float(v)) for v in row[:23]) + f"\t{int(row[23])}" for row in t]
        (d / f"mHealth_subject{s}.log").write_text("\n".join(lines) + "\n")
        out[s] = t
    return out


# PAMAP2: 54 columns, space-separated, NaN for missing. activityID 0 = transient.
PA_ACTIVITIES = [0] * 200 + [1] * 700 + [0] * 100 + [4] * 700 + [24] * 500 + [0] * 60  # 2260 rows
SHORT_GAP = (300, 305)  # hand acc x..z NaN (5 samples): interpolated
LONG_GAP = (1200, 1350)  # whole ankle IMU NaN (150 samples = 1.5 s): interpolated and dropped


def pamap2_table(subject: int, activities: list[int] = PA_ACTIVITIES) -> np.ndarray:
    rng = np.random.default_rng(subject)
    n = len(activities)
    t = np.zeros((n, 54))
    t[:, 0] = np.round(np.arange(n) * 0.01 + 5.0, 2)
    t[:, 1] = activities
    hr = np.full(n, np.nan)
    hr[3::11] = np.round(rng.uniform(70, 140, size=len(hr[3::11])))
    t[:, 2] = hr
    for base in (3, 20, 37):
        t[:, base] = np.round(rng.uniform(30, 34, size=n), 4)  # temperature
        t[:, base + 1:base + 4] = np.round(rng.normal(0, 9, size=(n, 3)), 5)  # acc16g
        t[:, base + 4:base + 7] = 999.0  # acc6g: must be dropped
        t[:, base + 7:base + 10] = np.round(rng.normal(0, 1, size=(n, 3)), 5)  # gyro
        t[:, base + 10:base + 13] = np.round(rng.normal(20, 10, size=(n, 3)), 5)  # mag
        t[:, base + 13:base + 17] = -777.0  # orientation: invalid, must be dropped
    t[SHORT_GAP[0]:SHORT_GAP[1], 4:7] = np.nan
    t[LONG_GAP[0]:LONG_GAP[1], 37:54] = np.nan
    return t


def pamap2_text(t: np.ndarray) -> str:
    def fmt(v: float) -> str:
        return "NaN" if np.isnan(v) else str(float(v))
    return "\n".join(" ".join(fmt(v) for v in row) for row in t) + "\n"


def write_pamap2(root: Path, subjects: tuple[int, ...] = (101, 102)) -> dict[int, np.ndarray]:
    d = root / "PAMAP2_Dataset" / "Protocol"
    d.mkdir(parents=True, exist_ok=True)
    opt = root / "PAMAP2_Dataset" / "Optional"
    opt.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in subjects:
        t = pamap2_table(s)
        (d / f"subject{s}.dat").write_text(pamap2_text(t))
        out[s] = t
    # The Optional folder holds the same names with other activities: must be ignored.
    (opt / f"subject{subjects[0]}.dat").write_text(pamap2_text(pamap2_table(9, [10] * 300)))
    return out


def zip_folder(folder: Path, zpath: Path, nested: str | None = None) -> Path:
    """Zip `folder`'s content (as the UCI zip holds it); with `nested`, wrap that zip in another."""
    inner = zpath if nested is None else zpath.with_name(nested)
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(folder).as_posix())
    if nested is not None:
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as z:
            z.write(inner, inner.name)
        inner.unlink()
    return zpath
