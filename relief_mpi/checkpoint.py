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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from relief_mpi.config import flatten
from relief_mpi.errors import ReliefError
from relief_mpi.stops import CheckpointWriteError

__all__ = ["Checkpoint", "FORMAT", "check_against_log", "check_against_run", "check_fits_setup", "checkpoint_path",
           "config_differences", "describe_differences", "load_checkpoint", "save_checkpoint"]

if TYPE_CHECKING:
    from relief_mpi.run_setup import RunSetup

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


def check_against_log(ck: Checkpoint, rounds: np.ndarray, path: Path) -> None:
    """A checkpoint resumes only the log it was written beside: its round must be one of the log's
    complete rounds (a resume rewrites the log up to it, so a round outside would wipe or skip
    rounds), and the elapsed times it saved must be the ones the log recorded for that round."""
    n = len(rounds)
    where = f"--resume {path}: the checkpoint {checkpoint_path(path).name}"
    if ck.round < 1:
        raise ReliefError(f"{where} is at round {ck.round}, which is no round; it is damaged (the log keeps rounds "
                          f"1..{n})")
    if ck.round > n:
        raise ReliefError(f"{where} is at round {ck.round} but the log keeps rounds 1..{n}: they disagree (was the "
                          "log replaced or truncated?); refusing to skip rounds")
    row = rounds[ck.round - 1]
    for name, saved in (("wall_elapsed_s", ck.wall_elapsed), ("virtual_elapsed_s", ck.virtual_elapsed)):
        logged = float(row[name])
        if not (np.isfinite(saved) and np.isclose(saved, logged, rtol=1e-9, atol=0.0)):
            raise ReliefError(f"{where} and the log disagree on round {ck.round}: {name} {saved!r} in the checkpoint, "
                              f"{logged!r} in the log; they are from different runs")


def check_against_run(ck: Checkpoint, blocks: list[np.ndarray], base_size: int, state: dict[str, np.ndarray],
                      load_state: Any, path: Path) -> None:
    """Every field of the checkpoint fits the run it resumes (the model's groups, the frozen base,
    the strategy's statistics), checked before the run starts, so a hand-edited or damaged file is
    one line, not a traceback after `start: ready`. load_state loads the strategy's statistics
    (the check includes loading them: an RNG state that does not parse fails here)."""
    where = f"cannot resume {path}: the checkpoint {checkpoint_path(path).name}"
    if len(ck.blocks) != len(blocks):
        raise ReliefError(f"{where} has {len(ck.blocks)} parameter groups, the model has {len(blocks)}")
    for j, (got, want) in enumerate(zip(ck.blocks, blocks, strict=True)):
        if got.shape != want.shape or got.dtype.kind != "f":
            raise ReliefError(f"{where}: parameter group {j} has shape {got.shape} ({got.dtype}), the model's has "
                              f"{want.shape}")
        if not np.isfinite(got).all():
            raise ReliefError(f"{where}: parameter group {j} holds non-finite values")
    if ck.base.ndim != 1 or ck.base.size != base_size:
        raise ReliefError(f"{where} has a frozen base of {ck.base.size} values, the model needs {base_size}")
    missing, extra = sorted(set(state) - set(ck.strategy)), sorted(set(ck.strategy) - set(state))
    if missing or extra:
        raise ReliefError(f"{where}: the strategy state {'lacks ' + ', '.join(missing) if missing else ''}"
                          f"{'; ' if missing and extra else ''}{'has unknown ' + ', '.join(extra) if extra else ''}")
    for k, want_v in state.items():
        got_v = ck.strategy[k]
        if k != "rng" and (got_v.shape != want_v.shape or got_v.dtype.kind not in "iuf"):
            raise ReliefError(f"{where}: strategy state {k} has shape {got_v.shape} ({got_v.dtype}), the strategy's "
                              f"has {want_v.shape}")
    try:
        load_state(ck.strategy)
    except Exception as e:  # noqa: BLE001 - a garbled RNG string or value raises whatever the parser raises
        raise ReliefError(f"{where}: the strategy state does not load ({type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0][:160]})") from None
    for name, v in (("wall_elapsed", ck.wall_elapsed), ("virtual_elapsed", ck.virtual_elapsed)):
        if not (np.isfinite(v) and v >= 0):
            raise ReliefError(f"{where}: {name} is {v!r}")


def check_fits_setup(ck: Checkpoint, setup: RunSetup, path: Path) -> None:
    """check_against_run for the run `setup` builds (a fresh model gives the groups' and base's shapes)."""
    model: Any = setup.make_model()  # the registry kind fits the model kind (run_setup.make_registry)
    reg = setup.registry
    check_against_run(ck, [reg.get(model, b) for b in range(len(reg))], reg.get_base(model).size,
                      setup.strategy.state(), setup.strategy.load_state, path)
