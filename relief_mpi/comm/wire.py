"""Fixed buffer layouts shared by every transport, so in-process and MPI runs pass the same bytes.

- plan header: int64 [round, stop, K, B]
- plan body:   float64 [K, B + 2] = alloc bits, local steps, deadline (-1 = none)
- block:       float32 [size_b]
- update:      float32 [size_b + 2] = n*delta, n, n*||delta||^2
- report:      float64 [len(REPORT_FIELDS)] per client
"""

from __future__ import annotations

import math

import numpy as np

from relief_mpi.strategy.base import BlockSums, RoundPlan

REPORT_FIELDS = (
    "samples", "steps", "busy_s", "compute_wall_s", "lag_s", "download_s", "upload_s",
    "bytes_up", "bytes_down", "energy_measured_j", "rejected", "loss", "flops",
)
R = {name: i for i, name in enumerate(REPORT_FIELDS)}
HEADER_LEN = 4


def fixed_utf8(text: str, n: int) -> np.ndarray:
    """`text` as UTF-8 in a zero-padded uint8 buffer of n bytes (cut at n): strings on the wire
    without pickle."""
    out = np.zeros(n, np.uint8)
    raw = text.encode("utf-8")[:n]
    out[:len(raw)] = np.frombuffer(raw, np.uint8)
    return out


def utf8_text(buf: np.ndarray) -> str:
    """The string in a buffer written by fixed_utf8."""
    return bytes(buf).rstrip(b"\0").decode("utf-8", "replace")


def plan_header(plan: RoundPlan | None, k: int, b: int) -> np.ndarray:
    if plan is None:
        return np.array([0, 1, k, b], np.int64)
    return np.array([plan.round, 0, k, b], np.int64)


def plan_body(plan: RoundPlan) -> np.ndarray:
    k, b = plan.alloc.shape
    body = np.empty((k, b + 2), np.float64)
    body[:, :b] = plan.alloc
    body[:, b] = plan.steps
    body[:, b + 1] = -1.0 if math.isinf(plan.deadline_s) else plan.deadline_s
    return body


def decode_plan(header: np.ndarray, body: np.ndarray) -> RoundPlan:
    b = int(header[3])
    dl = float(body[0, b + 1])
    return RoundPlan(int(header[0]), body[:, :b].astype(np.uint8), body[:, b].astype(np.int64),
                     math.inf if dl < 0 else dl)


def plan_nbytes(k: int, b: int) -> int:
    return HEADER_LEN * 8 + k * (b + 2) * 8


def pack_update(delta: np.ndarray, n: float) -> np.ndarray:
    buf = np.empty(delta.size + 2, np.float32)
    d64 = delta.astype(np.float64)
    buf[:-2] = n * d64
    buf[-2] = n
    buf[-1] = n * float(d64 @ d64)
    return buf


def zero_update(size: int) -> np.ndarray:
    return np.zeros(size + 2, np.float32)


def unpack_sums(buf: np.ndarray) -> BlockSums:
    return BlockSums(buf[:-2], float(buf[-2]), float(buf[-1]))


def report_nbytes() -> int:
    return len(REPORT_FIELDS) * 8
