"""Server checkpoints: everything needed to continue a run exactly, written atomically.

Clients keep no state between rounds (a client's batch order derives from seed, round and
client index, and its optimizer restarts every round), so the server's state is the whole state:
global blocks, the frozen base (LoRA), strategy statistics (UCB means, counts, RNG), elapsed
times and the round. The file holds tensors, numbers and strings only and is read with
torch.load(weights_only=True): loading a checkpoint cannot run code.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relief_mpi.config import flatten
from relief_mpi.errors import ReliefError
from relief_mpi.stops import CheckpointWriteError

FORMAT = 1


@dataclass
class Checkpoint:
    round: int
    config_json: str
    version: str
    fingerprint: str
    blocks: list[np.ndarray]
    base: np.ndarray
    strategy: dict[str, np.ndarray]
    wall_elapsed: float
    virtual_elapsed: float


def checkpoint_path(log: Path) -> Path:
    return log.with_name(log.stem + ".ckpt.pt")


def save_checkpoint(ck: Checkpoint, path: Path) -> None:
    """Write atomically: a temp file beside `path`, renamed over it once complete, removed on failure
    (CheckpointWriteError names the file and the OS's cause, e.g. "No space left on device")."""
    payload: dict[str, Any] = {
        "format": FORMAT, "round": ck.round, "config": ck.config_json, "version": ck.version,
        "fingerprint": ck.fingerprint, "blocks": [torch.from_numpy(np.ascontiguousarray(b)) for b in ck.blocks],
        "base": torch.from_numpy(np.ascontiguousarray(ck.base)),
        "strategy": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ck.strategy.items()},
        "wall_elapsed": ck.wall_elapsed, "virtual_elapsed": ck.virtual_elapsed,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)  # in memory first: torch's own file writer loses the OS error ("iostream error")
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        prev = "the previous checkpoint is kept" if path.exists() else "there is no earlier checkpoint"
        raise CheckpointWriteError(f"writing checkpoint {path} failed: {e.strerror or e}; {prev}") from None


def load_checkpoint(path: Path) -> Checkpoint:
    if not path.exists():
        raise ReliefError(f"no checkpoint at {path}: the run was started without --checkpoint-every, or crashed "
                          "before its first checkpoint")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("unknown checkpoint format")
        return Checkpoint(
            round=int(d["round"]), config_json=str(d["config"]), version=str(d["version"]),
            fingerprint=str(d["fingerprint"]), blocks=[t.numpy() for t in d["blocks"]], base=d["base"].numpy(),
            strategy={k: v.numpy() for k, v in d["strategy"].items()}, wall_elapsed=float(d["wall_elapsed"]),
            virtual_elapsed=float(d["virtual_elapsed"]))
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is one clear line for the user
        first = (str(e).splitlines() or [""])[0][:160]
        raise ReliefError(f"checkpoint {path} is unreadable ({type(e).__name__}: {first})") from None


def config_differences(saved: dict[str, Any], given: dict[str, Any],
                       ignore: tuple[str, ...] = ("rounds",)) -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    a, b = flatten(saved), flatten(given)
    return sorted(k for k in set(a) | set(b) if k not in ignore and a.get(k) != b.get(k))


def describe_differences(saved_json: str, given: dict[str, Any], keys: list[str]) -> str:
    a, b = flatten(json.loads(saved_json)), flatten(given)
    return ", ".join(f"{k} (checkpoint {a.get(k)!r}, given {b.get(k)!r})" for k in keys)
