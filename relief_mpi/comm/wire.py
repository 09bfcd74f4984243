"""Fixed buffer layouts shared by every transport, so in-process and MPI runs pass the same bytes.

- plan:        one float64 message [HEADER_LEN + (K + 1)(2G + 2)]: the header [round, stop, K, G],
               then the body [K + 1, 2G + 2]: per client alloc bits, upload coefficients, local
               steps, deadline (-1 = none); the body's last row holds the per-group `plain` flags.
               The stop message has the same length (stop = 1, body zeros).
- group:       float32 [size_g]
- update:      float64 (rounds.update_len; charged as float32 by the link model): w*delta, [delta], w,
               count, w*|delta_p|^2, |delta_p|^2
- report:      float64 [len(REPORT_FIELDS)] per client (under MPI point to point, see comm/mpi.py)
"""

from __future__ import annotations

import math

import numpy as np

from relief_mpi.rounds import HEADER_LEN, REPORT_FIELDS, RoundPlan

__all__ = ["HEADER_LEN", "REPORT_FIELDS", "body_bytes", "decode_plan", "fixed_utf8", "is_stop", "plan_len",
           "plan_message", "utf8_text"]


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


def plan_len(k: int, g: int) -> int:
    """Float64 values in a plan message (header + body)."""
    return HEADER_LEN + (k + 1) * (2 * g + 2)


def plan_message(plan: RoundPlan | None, k: int, g: int, out: np.ndarray | None = None) -> np.ndarray:
    """The header and the body in one buffer: one message per client rank per round (None: stop).
    `out`, a buffer this function returned for a plan before, is rewritten in place (a plan writes
    every field a plan sets; the rest stays zero)."""
    msg = np.zeros(plan_len(k, g), np.float64) if out is None or plan is None else out
    msg[:HEADER_LEN] = (0, 1, k, g) if plan is None else (plan.round, 0, k, g)
    if plan is None:
        return msg
    body = msg[HEADER_LEN:].reshape(k + 1, 2 * g + 2)
    body[:k, :g] = plan.alloc
    body[:k, g:2 * g] = plan.coef
    body[:k, 2 * g] = plan.steps
    body[:k, 2 * g + 1] = -1.0 if math.isinf(plan.deadline_s) else plan.deadline_s
    body[k, :g] = plan.plain
    return msg


def is_stop(msg: np.ndarray) -> bool:
    return bool(msg[1])


def decode_plan(msg: np.ndarray) -> RoundPlan:
    """The plan in a message, in arrays of its own (read-only: a receiver may reuse a decoded plan
    for a later round with the same body, comm/mpi.py)."""
    k, g = int(msg[2]), int(msg[3])
    body = msg[HEADER_LEN:].reshape(k + 1, 2 * g + 2)
    dl = float(body[0, 2 * g + 1])
    arrays = (body[:k, :g].astype(np.uint8), body[:k, g:2 * g].copy(), body[:k, 2 * g].astype(np.int64),
              body[k, :g].astype(np.uint8))
    for a in arrays:
        a.flags.writeable = False
    alloc, coef, steps, plain = arrays
    return RoundPlan(int(msg[0]), alloc, coef, steps, math.inf if dl < 0 else dl, plain)


def body_bytes(msg: np.ndarray) -> bytes:
    """A plan message without its header: two rounds with equal bodies have the same plan but
    for the round number."""
    return msg[HEADER_LEN:].tobytes()
