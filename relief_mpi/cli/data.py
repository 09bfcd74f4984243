"""`relief-mpi data info|fetch`: what a dataset looks like to a run, and getting the UCI files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from relief_mpi.config import DATASETS, DataConfig
from relief_mpi.errors import ReliefError


@click.group(name="data")
def command() -> None:
    """Inspect datasets (classes, modalities, subjects, windows, client shards) and fetch the UCI
    originals of MHEALTH and PAMAP2.

    File datasets are parsed once into a prepared HDF5 cache (default ~/.cache/relief-mpi; set
    RELIEF_MPI_CACHE_DIR to another folder, or to `off` to read the files every time)."""


@command.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="synthetic", show_default=True,
              help="synthetic (built in), spar (real smartwatch data), mhealth or pamap2 (UCI files).")
@click.option("--data-dir", type=click.Path(), default=None,
              help="The dataset's files: its folder (original layout, or a parent of it), the UCI zip, "
                   "or for spar the npz file. Not needed for synthetic.")
@click.option("--clients", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of clients to partition for (a run under `mpirun -n N` has N-1).")
@click.option("--alpha", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Dirichlet label-skew concentration across clients (smaller = more skew).")
@click.option("--modality-by", type=click.Choice(["type", "position"]), default="type", show_default=True,
              help="Group channels into modalities by sensor type (acc, gyro, ...) or by body position.")
@click.option("--window-s", type=click.FloatRange(min=0, min_open=True), default=2.56, show_default=True,
              help="Window length in seconds (50% overlap).")
@click.option("--downsample", type=click.IntRange(min=1), default=1, show_default=True,
              help="Keep one sample in K (block mean), e.g. 2 turns PAMAP2's 100 Hz into 50 Hz.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the partition (as in train).")
@click.option("--fleet", type=click.Path(dir_okay=False), default=None,
              help="Fleet file giving each client's tier and sensors; default: the three-tier fleet.")
@click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False), default=None,
              help="Extra device profile folder (*.toml) on top of the shipped ones.")
def info(**kw: Any) -> None:
    """Describe a dataset as a run would see it: classes, modalities with their channels,
    subjects, windows, and for each client its tier, modality set, window counts and train
    label histogram. Reads the prepared cache (building it on first use)."""
    from relief_mpi.data.registry import build_federated, fleet_modality_sets, load_raw

    if kw["dataset"] != "synthetic" and kw["data_dir"] is None:
        raise ReliefError(f"--dataset {kw['dataset']} needs --data-dir (the folder or zip with its original files)")
    cfg = DataConfig(dataset=kw["dataset"], data_dir=kw["data_dir"], modality_by=kw["modality_by"],
                     alpha=kw["alpha"], window_s=kw["window_s"], downsample=kw["downsample"])
    raw = load_raw(cfg, kw["seed"])
    spec = raw.spec
    devices, sets = fleet_modality_sets(spec, kw["clients"], kw["fleet"], kw["profiles_dir"])
    fd = build_federated(cfg, kw["seed"], sets, raw)
    echo = click.echo
    src = kw["data_dir"] or "built in (seeded)"
    echo(f"dataset: {spec.name}   source: {src}")
    store = raw.store
    if store is not None:
        echo(f"cache: {store.path}")
    echo(f"classes ({len(spec.classes)}): " + ", ".join(f"{i} {c}" for i, c in enumerate(spec.classes)))
    hop = int(round(fd.window_len * (1 - cfg.overlap)))
    echo(f"sample rate: {spec.sample_rate_hz:g} Hz   window: {fd.window_len} samples ({cfg.window_s:g} s), "
         f"hop {hop} ({cfg.overlap:.0%} overlap)   test: last {cfg.test_fraction:.0%} of every label run")
    echo(f"modalities (by {cfg.modality_by}), {spec.n_channels} channels:")
    w = max(len(m.name) for m in spec.modalities)
    for m in spec.modalities:
        echo(f"  {m.name:<{w}}  {len(m.channels):>2} ch: {', '.join(m.channel_names)}")
    per_subject: dict[int, list[int]] = {}
    from relief_mpi.data.windows import MemoryStore

    st = store if store is not None else MemoryStore(raw)
    for r in range(st.n_recordings):
        lab = st.labels(r)
        e = per_subject.setdefault(st.subject(r), [0, 0, 0])
        e[0] += 1
        e[1] += len(lab)
        e[2] += int((lab >= 0).sum())
    echo(f"subjects ({len(per_subject)}), recordings {st.n_recordings}, samples "
         f"{sum(v[1] for v in per_subject.values())} ({sum(v[2] for v in per_subject.values())} labelled):")
    items = [f"{s}: {v[2]}" + (f" ({v[0]} rec)" if v[0] > 1 else "") for s, v in sorted(per_subject.items())]
    for i in range(0, len(items), 5):
        echo("  " + "   ".join(items[i:i + 5]))
    n_tr = sum(len(c) for c in fd.clients_train)
    n_te = sum(len(c) for c in fd.clients_test)
    echo(f"windows: {n_tr + len(fd.server_train)} train ({len(fd.server_train)} kept on the server for LoRA "
         f"pretraining, {n_tr} to clients), {n_te} test")
    echo(f"clients ({fd.n_clients}, alpha {cfg.alpha:g}, seed {kw['seed']}):")
    nc = len(spec.classes)
    cw = max(4, len(str(max(int(np.bincount(c.y, minlength=nc).max()) for c in fd.clients_train))))
    mw = max(10, *(len(",".join(s) or "(none)") for s in fd.modality_sets))
    echo(f"  {'client':>6} {'rank':>4} {'tier':<6} {'profile':<17} {'modalities':<{mw}} {'train':>6} {'test':>5}"
         f" | train windows per class: " + " ".join(f"{i:>{cw}}" for i in range(nc)))
    pad = " " * len(" | train windows per class:")
    for k, d in enumerate(devices):
        hist = np.bincount(fd.clients_train[k].y, minlength=nc)
        mods = ",".join(fd.modality_sets[k]) or "(none)"
        echo(f"  {k:>6} {d.rank:>4} {d.tier:<6} {d.profile.name:<17} {mods:<{mw}} "
             f"{len(fd.clients_train[k]):>6} {len(fd.clients_test[k]):>5}{pad} " + " ".join(f"{h:>{cw}}" for h in hist))
    from relief_mpi.data.partition import label_skew

    echo(f"label skew (mean TV distance to the pooled histogram): "
         f"{label_skew([c.y for c in fd.clients_train], nc):.3f}")
    names = spec.modality_names()
    cohort = {m: sum(m in s for s in fd.modality_sets) for m in names}
    echo("cohorts: " + ", ".join(f"{m} {n}" for m, n in cohort.items()))
    if any(not s for s in fd.modality_sets):
        echo(f"note: some tiers' sensors name no modality of this grouping ({', '.join(names)}); "
             "`train` refuses such a fleet: use a fleet whose tiers list these names")
    for note in fd.notes:
        echo(f"note: {note}")


URLS = {
    "mhealth": ("https://archive.ics.uci.edu/static/public/319/mhealth+dataset.zip",
                "https://archive.ics.uci.edu/dataset/319/mhealth+dataset", "mhealth+dataset.zip"),
    "pamap2": ("https://archive.ics.uci.edu/static/public/231/pamap2+physical+activity+monitoring.zip",
               "https://archive.ics.uci.edu/dataset/231/pamap2+physical+activity+monitoring",
               "pamap2+physical+activity+monitoring.zip"),
}


@command.command()
@click.argument("dataset", type=click.Choice(sorted(URLS)))
@click.option("--to", "dest", type=click.Path(file_okay=False), required=True,
              help="Folder to save the UCI zip into (created if missing). Pass the saved zip (or this "
                   "folder) to --data-dir afterwards; relief-mpi reads the zip without unpacking it.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Seconds to wait for the UCI server before giving up.")
@click.option("--url", hidden=True, default=None, help="Test only: download from this URL instead.")
def fetch(dataset: str, dest: str, timeout: float, url: str | None) -> None:
    """Download DATASET (mhealth or pamap2) from the UCI repository as its original zip.

    Without network access it says how to download the zip by hand and exits with status 1."""
    import shutil
    import urllib.error
    import urllib.request
    import zipfile

    uci_url, page, fname = URLS[dataset]
    url = url or uci_url
    out_dir = Path(dest).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReliefError(f"--to {out_dir}: cannot create the folder ({e.strerror or e})") from None
    target = out_dir / fname
    part = target.with_name(target.name + ".part")
    click.echo(f"downloading {url} ...")
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "relief-mpi"})
        with urllib.request.urlopen(req, timeout=timeout) as resp, open(part, "wb") as fh:
            shutil.copyfileobj(resp, fh, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        click.echo(
            f"error: could not download {dataset} from UCI ({reason}); this machine may have no network.\n"
            f"Download it by hand instead:\n"
            f"  1. on a machine with a browser, open {page}\n"
            f"     and click Download (or fetch {uci_url})\n"
            f"  2. copy the zip here, e.g. to {target}\n"
            f"  3. pass it to relief-mpi as it is (no need to unzip):\n"
            f"       relief-mpi data info --dataset {dataset} --data-dir {target}\n"
            f"       mpirun -n 5 relief-mpi train --dataset {dataset} --data-dir {target}\n"
            f"     an unpacked folder works too (--data-dir the folder that holds "
            f"{'MHEALTHDATASET/' if dataset == 'mhealth' else 'PAMAP2_Dataset/Protocol/'}).", err=True)
        sys.exit(1)
    if not zipfile.is_zipfile(part):
        part.unlink(missing_ok=True)
        raise ReliefError(f"{url}: the download is not a zip file (UCI may have moved it); download it by hand "
                          f"from {page}")
    part.replace(target)
    from relief_mpi.data.files import check_sha256
    from relief_mpi.data.registry import source_files

    files = source_files(dataset, target)
    bad = 0
    for f in files:
        _, digest = f.read()
        bad += check_sha256(dataset, f, digest) is not None
    click.echo(f"saved {target} ({len(files)} data files, {len(files) - bad} match the genuine checksums)")
    click.echo(f"use it with: --dataset {dataset} --data-dir {target}")
