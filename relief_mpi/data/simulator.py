"""A seeded simulator of multi-sensor activity recordings, rendered as the built-in synthetic
dataset or written as files in the exact MHEALTH and PAMAP2 layouts (`relief-mpi data synth`).

Why it looks the way it does:
- 12 classes = 6 motion prototypes x 2 variants. The variants of prototypes 0-2 move alike and
  differ only in heading, seen by the magnetometer alone; the variants of prototypes 3-5 differ
  only in heart rate, seen by ECG (MHEALTH) or the heart-rate strap (PAMAP2) alone. A device with
  acc (+ gyro) can tell at most the 6 prototypes apart: the rare modalities carry information
  the common ones lack.
- Nothing is trivially separable: prototypes 2 and 3 (walk, climb) overlap in frequency and
  amplitude across subjects; the heading and heart-rate gaps are about two standard deviations
  of their subject and bout noise; and most bouts contain an "intrusion", a few seconds in which
  the subject behaves like another class while the label stays (label noise at window level).
- Subjects differ (sensor misalignment, gains, cadence, heart-rate baseline), so per-subject
  clients are non-IID in their features, not only in labels.

The class prototypes come from the seed (a "world"); each subject from the seed and its index, so
writing 9 subjects instead of 8 leaves the first 8 unchanged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CLASS_NAMES", "G", "GAP_S", "HEADING_GAP_DEG", "HR_GAP_BPM", "HR_PROTOS", "HR_RATE_HZ", "MAG_PROTOS",
           "MAG_UT", "MHEALTH_RATE_HZ", "N_CLASSES", "N_PROTOS", "PAMAP2_IDS", "PAMAP2_ORDER", "PAMAP2_RATE_HZ",
           "POSITIONS", "Session", "World", "bout_seconds", "builtin_sessions", "mhealth_signals", "pamap2_table",
           "schedule", "simulate", "write_mhealth", "write_pamap2"]

N_PROTOS = 6
N_CLASSES = 2 * N_PROTOS
MAG_PROTOS = (0, 1, 2)  # variants differ in heading only
HR_PROTOS = (3, 4, 5)  # variants differ in heart rate only
CLASS_NAMES = ("stand-north", "stand-east", "lie-north", "lie-east", "walk-north", "walk-east",
               "climb", "climb-strained", "cycle", "cycle-strained", "run", "run-strained")
POSITIONS = ("chest", "ankle", "arm")  # PAMAP2's hand IMU is the simulator's arm
G = 9.81

# Per prototype: cadence (Hz), acc and gyro amplitude per position (chest, ankle, arm), posture
# tilt per position (degrees), resting heart rate (bpm).
_FREQ = (0.25, 0.25, 1.80, 1.62, 1.20, 2.60)
_ACC_AMP = ((0.08, 0.08, 0.2), (0.06, 0.06, 0.15), (1.5, 4.0, 2.5), (1.8, 4.4, 2.2), (0.6, 3.0, 0.6),
            (4.0, 9.0, 5.0))
_GYRO_AMP = ((0.05, 0.05, 0.1), (0.04, 0.04, 0.08), (0.6, 2.0, 1.2), (0.7, 2.2, 1.0), (0.3, 2.5, 0.3),
             (1.2, 3.5, 2.0))
_TILT = ((0, 0, 10), (75, 80, 70), (5, 0, 15), (15, 10, 20), (25, 30, 40), (10, 5, 20))
_HR = (68.0, 62.0, 95.0, 108.0, 114.0, 148.0)
HEADING_GAP_DEG = 40.0  # between the two variants of a MAG_PROTOS prototype
HR_GAP_BPM = 22.0  # between the two variants of an HR_PROTOS prototype
MAG_UT = 40.0  # Earth's field, microtesla; the MHEALTH layout writes it in units of 100 uT


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass(frozen=True)
class World:
    """Class prototypes shared by every subject (from the seed)."""

    acc_axis: np.ndarray  # (protos, positions, 3) direction of the main motion
    acc_axis2: np.ndarray  # second-harmonic direction
    gyro_axis: np.ndarray
    harmonic: np.ndarray  # (protos, positions) weight of the second harmonic
    posture: np.ndarray  # (protos, positions, 3, 3) sensor-to-world rotation

    @staticmethod
    def make(seed: int) -> World:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 0]))
        shape = (N_PROTOS, len(POSITIONS))
        posture = np.empty((*shape, 3, 3))
        for p in range(N_PROTOS):
            for j in range(len(POSITIONS)):
                posture[p, j] = _rot(0.0, np.radians(_TILT[p][j]), np.radians(rng.uniform(-10, 10)))
        axes = [_unit(rng, N_PROTOS * len(POSITIONS)).reshape(*shape, 3) for _ in range(3)]
        # walk and climb share their motion directions: only cadence, amplitude and posture differ
        for a in axes:
            a[3] = 0.8 * a[2] + 0.2 * a[3]
            a[3] /= np.linalg.norm(a[3], axis=-1, keepdims=True)
        return World(axes[0], axes[1], axes[2], rng.uniform(0.2, 0.5, size=shape), posture)


@dataclass
class Session:
    """One subject's simulated signals at `rate_hz`; labels are class indices, -1 between bouts."""

    labels: np.ndarray  # (T,)
    acc: np.ndarray  # (positions, T, 3) m/s^2
    gyro: np.ndarray  # (positions, T, 3) rad/s
    mag: np.ndarray  # (positions, T, 3) uT
    ecg: np.ndarray  # (T, 2) mV
    hr: np.ndarray  # (T,) bpm
    temp: np.ndarray  # (positions, T) degrees C
    rate_hz: float


def _slow(rng: np.random.Generator, t: np.ndarray, scale: float) -> np.ndarray:
    """A smooth random wobble (two slow sinusoids) of the given amplitude."""
    f = rng.uniform(0.02, 0.15, size=2)
    ph = rng.uniform(0, 2 * np.pi, size=2)
    return scale * 0.5 * (np.sin(2 * np.pi * f[0] * t + ph[0]) + np.sin(2 * np.pi * f[1] * t + ph[1]))


def _pieces(rng: np.random.Generator, labels: list[int], seconds: list[float],
            rate_hz: float) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Per-sample labels and the (start, stop, behaviour) pieces: a bout's behaviour is its class
    except for an intrusion of 2-6 s of another class in 70% of bouts; -1 = between bouts."""
    lab_parts, pieces, t0 = [], [], 0
    for lab, sec in zip(labels, seconds, strict=True):
        n = int(round(sec * rate_hz))
        lab_parts.append(np.full(n, lab, np.int64))
        cuts = [(t0, t0 + n, lab)]
        if lab >= 0 and rng.random() < 0.7:
            m = int(round(rng.uniform(2.0, 6.0) * rate_hz))
            if n > 3 * m:
                a = t0 + int(rng.integers(m, n - 2 * m))
                other = int(rng.choice([c for c in range(N_CLASSES) if c != lab]))
                cuts = [(t0, a, lab), (a, a + m, other), (a + m, t0 + n, lab)]
        pieces += cuts
        t0 += n
    return np.concatenate(lab_parts), pieces


def simulate(world: World, seed: int, subject: int, labels: list[int], seconds: list[float],
             rate_hz: float) -> Session:
    """A subject's session: bouts of `labels` (-1 = rest between activities) lasting `seconds`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 1, subject]))
    npos = len(POSITIONS)
    misalign = [_rot(*np.radians(rng.normal(0, 8, size=3))) for _ in range(npos)]
    cadence = rng.normal(1.0, 0.08, size=N_PROTOS).clip(0.8, 1.2)
    amp_gain = np.exp(rng.normal(0, 0.15, size=(N_PROTOS, npos)))
    heading0 = np.radians(rng.normal(0, 15))
    hr0 = rng.normal(0, 7)
    ecg_gain = rng.uniform(0.7, 1.3)
    y, pieces = _pieces(rng, labels, seconds, rate_hz)
    T = len(y)
    acc = np.empty((npos, T, 3))
    gyro = np.empty((npos, T, 3))
    mag = np.empty((npos, T, 3))
    hr = np.empty(T)
    motion = np.empty(T)  # chest acc motion, for ECG artefacts
    for a, b, c in pieces:
        n = b - a
        t = np.arange(n) / rate_hz
        p = 0 if c < 0 else c // 2
        variant = 0 if c < 0 else c % 2
        busy = 3.0 if c < 0 else 1.0  # between bouts: fidgeting while standing
        f = _FREQ[p] * cadence[p] * (1.0 + _slow(rng, t, 0.05))
        phase = 2 * np.pi * np.cumsum(f) / rate_hz + rng.uniform(0, 2 * np.pi)
        heading = heading0 + np.radians(rng.normal(0, 12)) + _slow(rng, t, np.radians(4))
        if p in MAG_PROTOS and c >= 0:
            heading = heading + np.radians(HEADING_GAP_DEG) * variant
        else:
            heading = heading + rng.uniform(-np.pi, np.pi)  # elsewhere the heading says nothing
        hr[a:b] = _HR[p] + hr0 + rng.normal(0, 5) + _slow(rng, t, 3.0)
        if p in HR_PROTOS and c >= 0:
            hr[a:b] += HR_GAP_BPM * variant
        dip = np.radians(60)
        field = np.stack([np.cos(heading) * np.cos(dip), np.sin(heading) * np.cos(dip),
                          np.full(n, -np.sin(dip))], axis=1) * MAG_UT
        for j in range(npos):
            rot = world.posture[p, j] @ misalign[j]
            amp = _ACC_AMP[p][j] * amp_gain[p, j] * busy
            s1 = np.sin(phase + j)[:, None]
            s2 = np.sin(2 * phase + 1.3 * j)[:, None]
            mot = amp * (s1 * world.acc_axis[p, j] + world.harmonic[p, j] * s2 * world.acc_axis2[p, j])
            acc[j, a:b] = np.array([0.0, 0.0, G]) @ rot + mot + rng.normal(0, 0.3, size=(n, 3))
            gamp = _GYRO_AMP[p][j] * amp_gain[p, j] * busy
            gyro[j, a:b] = (gamp * np.cos(phase + j)[:, None] * world.gyro_axis[p, j]
                            + rng.normal(0, 0.05, size=(n, 3)))
            wobble = 0.1 * gamp * np.sin(phase + j)[:, None] * world.gyro_axis[p, j] * MAG_UT
            mag[j, a:b] = field @ rot + wobble + rng.normal(0, 0.04 * MAG_UT, size=(n, 3))
            if j == 0:
                motion[a:b] = mot[:, 0]
    t_all = np.arange(T) / rate_hz
    beat = np.cumsum(hr / 60.0) / rate_hz + rng.uniform()
    frac = beat % 1.0
    width = hr / 60.0  # seconds -> beat phase

    def bump(centre: float, sigma_s: float, height: float) -> np.ndarray:
        d = (frac - centre + 0.5) % 1.0 - 0.5
        return height * np.exp(-0.5 * (d / (sigma_s * width)) ** 2)

    beat_wave = bump(0.1, 0.02, 0.12) + bump(0.3, 0.018, 1.3) - bump(0.27, 0.012, 0.25) + bump(0.55, 0.05, 0.3)
    wander = 0.15 * np.sin(2 * np.pi * 0.25 * t_all + rng.uniform(0, 2 * np.pi))
    lead1 = ecg_gain * beat_wave + wander + 0.03 * motion + rng.normal(0, 0.06, T)
    lead2 = 0.7 * ecg_gain * beat_wave - 0.5 * wander + 0.04 * motion + rng.normal(0, 0.06, T)
    temp = np.stack([33.0 - 1.5 * j + _slow(rng, t_all, 0.6) + rng.normal(0, 0.02, T) for j in range(npos)])
    return Session(y, acc, gyro, mag, np.stack([lead1, lead2], axis=1), hr, temp, rate_hz)


def schedule(order: list[int], minutes: float, gap_s: float) -> tuple[list[int], list[float]]:
    """Bouts in `order`, each after a gap (label -1), splitting `minutes` among them."""
    bout_s = (minutes * 60.0 - gap_s * len(order)) / len(order)
    if bout_s < 2.0:
        raise ValueError(f"{minutes} minutes are too short for {len(order)} activities")
    labels, seconds = [], []
    for c in order:
        labels += [-1, c]
        seconds += [gap_s, bout_s]
    return labels, seconds


# --- the built-in dataset: MHEALTH's 23 channels, held in memory -------------------------------

def mhealth_signals(s: Session) -> np.ndarray:
    """(T, 23) in MHEALTH's column order: chest acc, ECG x2, ankle acc/gyro/mag, arm acc/gyro/mag
    (mag in units of 100 uT, about MHEALTH's range)."""
    chest, ankle, arm = 0, 1, 2
    cols = [s.acc[chest], s.ecg, s.acc[ankle], s.gyro[ankle], s.mag[ankle] / 100.0, s.acc[arm], s.gyro[arm],
            s.mag[arm] / 100.0]
    return np.concatenate(cols, axis=1)


def builtin_sessions(seed: int, n_subjects: int, bout_s: float = 26.0,
                     gap_s: float = 2.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(signals (T, 23) float32, labels) per subject of the built-in dataset at 50 Hz; each subject
    does every class once, in its own random order."""
    world = World.make(seed)
    out = []
    for k in range(n_subjects):
        order = list(np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 2, k])).permutation(N_CLASSES))
        labels, seconds = schedule([int(c) for c in order], N_CLASSES * (bout_s + gap_s) / 60.0, gap_s)
        s = simulate(world, seed, k, labels, seconds, 50.0)
        out.append((mhealth_signals(s).astype(np.float32), s.labels))
    return out


# --- files in the original layouts ---------------------------------------------------------------

MHEALTH_RATE_HZ = 50.0
PAMAP2_RATE_HZ = 100.0
PAMAP2_IDS = (1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24)  # class k <-> activity id PAMAP2_IDS[k]
PAMAP2_ORDER = (1, 2, 3, 17, 16, 12, 13, 4, 7, 6, 5, 24)  # the protocol's order of activities
HR_RATE_HZ = 9.0
GAP_S = {"mhealth": 3.0, "pamap2": 4.0}  # null / transient seconds before every activity


def bout_seconds(layout: str, minutes: float) -> float:
    """How long each of the 12 activities lasts in a written recording of `minutes`."""
    return (minutes * 60.0 - GAP_S[layout] * N_CLASSES) / N_CLASSES


def _table_text(table: np.ndarray, fmts: list[str], sep: str) -> bytes:
    buf = io.StringIO()
    np.savetxt(buf, table, fmt=fmts, delimiter=sep)
    return buf.getvalue().replace("nan", "NaN").encode()


def write_mhealth(folder: Path, seed: int = 0, subjects: int = 10, minutes: float = 6.0) -> list[Path]:
    """mHealth_subject{1..n}.log in folder/MHEALTHDATASET: 23 sensor columns and the label (0 =
    null, 1..12 = class + 1), tab-separated, 50 Hz, activities in the protocol's order."""
    labels, seconds = schedule(list(range(N_CLASSES)), minutes, GAP_S["mhealth"])  # before anything is written
    world = World.make(seed)
    out_dir = Path(folder) / "MHEALTHDATASET"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(subjects):
        s = simulate(world, seed, k, labels, seconds, MHEALTH_RATE_HZ)
        table = np.column_stack([mhealth_signals(s), s.labels + 1])
        p = out_dir / f"mHealth_subject{k + 1}.log"
        p.write_bytes(_table_text(table, ["%.5g"] * 23 + ["%d"], "\t"))
        paths.append(p)
    return paths


def pamap2_table(s: Session, rng: np.random.Generator, t0: float) -> np.ndarray:
    """(T, 54) in PAMAP2's layout: timestamp, activityID, heart rate (~9 Hz, NaN in between),
    then hand, chest and ankle IMUs (temperature, acc 16 g, acc 6 g, gyro, mag, orientation),
    with the dropped packets (NaN rows of one IMU) the real recordings have."""
    T = len(s.labels)
    table = np.full((T, 54), np.nan)
    table[:, 0] = t0 + np.arange(T) / s.rate_hz
    ids = np.asarray(PAMAP2_IDS)
    table[:, 1] = np.where(s.labels >= 0, ids[s.labels.clip(0)], 0)
    tick = np.floor(np.arange(T) * HR_RATE_HZ / s.rate_hz)
    beat_rows = np.flatnonzero(np.diff(tick, prepend=-1) > 0)[1:]  # the first reading comes late
    table[beat_rows, 2] = np.round(s.hr[beat_rows])
    for base, j in ((3, 2), (20, 0), (37, 1)):  # hand = arm, chest, ankle
        table[:, base] = np.round(s.temp[j], 4)
        table[:, base + 1:base + 4] = s.acc[j]
        table[:, base + 4:base + 7] = np.clip(s.acc[j] + rng.normal(0, 0.05, size=(T, 3)), -6 * G, 6 * G)
        table[:, base + 7:base + 10] = s.gyro[j]
        table[:, base + 10:base + 13] = s.mag[j]
        table[:, base + 13:base + 17] = [1.0, 0.0, 0.0, 0.0]  # orientation: "invalid" in the real data too
        drops = np.flatnonzero(rng.random(T) < 0.004)
        for d in drops:
            table[d:d + int(rng.integers(1, 5)), base:base + 17] = np.nan
    if rng.random() < 0.5:  # sometimes an IMU drops out for a few seconds
        base = int(rng.choice([3, 20, 37]))
        a = int(rng.integers(0, max(1, T - 400)))
        table[a:a + int(rng.integers(150, 400)), base:base + 17] = np.nan
    return table


def write_pamap2(folder: Path, seed: int = 0, subjects: int = 8, minutes: float = 6.0) -> list[Path]:
    """subject{101..} .dat in folder/PAMAP2_Dataset/Protocol: 54 space-separated columns, 100 Hz,
    activities in the protocol's order with transients (activityID 0) between; `subjects` 9 adds
    subject 109 (which the paper protocol leaves out)."""
    if not 1 <= subjects <= 9:
        raise ValueError(f"PAMAP2 has subjects 101-109: 1 to 9 subjects, got {subjects}")
    labels, seconds = schedule([PAMAP2_IDS.index(a) for a in PAMAP2_ORDER], minutes, GAP_S["pamap2"])
    world = World.make(seed)
    out_dir = Path(folder) / "PAMAP2_Dataset" / "Protocol"
    out_dir.mkdir(parents=True, exist_ok=True)
    fmts = ["%.2f", "%d", "%.0f"] + ["%.4g", *["%.5g"] * 9, *["%.4g"] * 3, *["%g"] * 4] * 3
    paths = []
    for k in range(subjects):
        s = simulate(world, seed, k, labels, seconds, PAMAP2_RATE_HZ)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 3, k]))
        p = out_dir / f"subject{101 + k}.dat"
        p.write_bytes(_table_text(pamap2_table(s, rng, 5.0 + k), fmts, " "))
        paths.append(p)
    return paths
