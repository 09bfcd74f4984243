"""`relief-mpi pretrain`: the frozen base for --mode lora, trained on the server's own split."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import click

from relief_mpi.cli.options import DATA_OPTIONS, MODEL_OPTIONS, PRETRAIN_OPTIONS, build_config
from relief_mpi.cli.train import check_writable
from relief_mpi.config import DEVICES
from relief_mpi.data.registry import load_raw
from relief_mpi.data.subjects import subject_index
from relief_mpi.errors import ReliefError
from relief_mpi.metrics import macro_f1

__all__ = ["command"]


@click.command(name="pretrain")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Where to write the base checkpoint (.pt).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Batch size.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed; use the run's seed so the server split is the one the run holds out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where to train: auto = CUDA where torch sees a GPU, else the CPU; cuda = exit 2 without one.")
def command(**kw: Any) -> None:
    """Train encoders, fusion and head centrally on the server split (a --server-fraction share of
    the training windows, all sensors) and save them as a LoRA base: then
    `relief-mpi train --mode lora --base OUT` freezes it and federates only LoRA and the head.
    The checkpoint holds tensors and names only and is loaded with weights_only=True. The
    --pretrain-* options (and defaults) are the ones `train --mode lora` uses when it pretrains at
    start. Exits 2 when the base is not finite or its loss on the server split did not drop."""
    import numpy as np
    import torch

    from relief_mpi.device.throttle import process_device
    from relief_mpi.model.pretrain import pretrain, save_base
    from relief_mpi.run_setup import build_setup

    out = Path(kw["out"])
    if out.exists() and not kw["overwrite"]:
        raise ReliefError(f"--out {out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise ReliefError(f"--out {out} is a directory")
    check_writable(out, "--out")  # a read-only or impossible path is one line now, not after the training
    from relief_mpi.run import set_process_threads

    set_process_threads()
    cfg = build_config({**_defaults(), **kw, "mode": "lora", "base": None})
    n_clients = 1
    if cfg.data.partition == "subject":  # as many clients as the run has, so the server split is the run's
        n_clients = len(subject_index(cfg.data, cfg.seed, load_raw(cfg.data, cfg.seed)).clients)
    rdev = process_device(cfg.device.device, None, [socket.gethostname()], 0)  # no GPU for cuda: exit 2 here
    setup = build_setup(cfg, n_clients)
    setup.rank_device = rdev
    model = setup.make_model()
    mc = cfg.model
    res = pretrain(model, setup.data.spec, setup.data.server_train, mc.pretrain_epochs, kw["batch_size"],
                   mc.pretrain_lr, cfg.seed, mc.pretrain_optimizer)
    model.eval()
    test = setup.data.pooled_test if setup.data.pooled_test is not None else setup.data.clients_test[0]
    chans = [list(m.channels) for m in setup.data.spec.modalities]
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(test.x)).to(rdev.torch_device)
        pred = model([x[:, c, :] for c in chans]).argmax(1).cpu().numpy()
    f1 = macro_f1(test.y, pred, len(setup.data.spec.classes))
    save_base(model, setup.data.spec, out)  # atomic; a failed write is one line (errors.WriteFailed, exit 1)
    click.echo(f"pretrained on {len(setup.data.server_train)} server windows ({mc.pretrain_optimizer}, lr "
               f"{mc.pretrain_lr:g}, {mc.pretrain_epochs} epochs): loss {res.loss_before:.3f} -> {res.loss_after:.3f}, "
               f"test macro-F1 {f1:.3f} (all sensors)")
    click.echo(f"base: {out}")


def _defaults() -> dict[str, Any]:
    """Values of the train options pretrain does not expose (only the data ones matter)."""
    return {"rounds": 1, "eval_every": 1, "strategy": "fedavg", "groups_per_modality": 1, "local_steps": 1,
            "momentum": 0.0, "mu": 0.0, "deadline": "none", "beta": 0.5, "fleet": None, "profiles_dir": None,
            "clock": "virtual"}


command = PRETRAIN_OPTIONS(MODEL_OPTIONS(DATA_OPTIONS(command)))
