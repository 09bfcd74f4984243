"""`relief-mpi data info|fetch`: what a dataset looks like to a run, and getting the UCI files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from relief_mpi.cli.options import DATA_OPTIONS, data_config, given_options, with_protocol_defaults
from relief_mpi.config import DataConfig
from relief_mpi.data import simulator as sim
from relief_mpi.data.base import DatasetSpec, FederatedData, RawDataset
from relief_mpi.data.files import check_sha256
from relief_mpi.data.partition import label_skew
from relief_mpi.data.protocol import PAPER_RARE
from relief_mpi.data.registry import build_federated, load_raw, loader_module, modality_set_for, source_files
from relief_mpi.data.subjects import client_count_error, subject_index
from relief_mpi.data.windows import MemoryStore, window_geometry
from relief_mpi.device.fleet import PAPER_FLEET, load_fleet, paper_fleet, resolve_fleet
from relief_mpi.device.profiles import load_profiles
from relief_mpi.errors import ReliefError

__all__ = ["LAYOUTS", "URLS", "command", "fetch", "info", "synth"]


@click.group(name="data")
def command() -> None:
    """Inspect datasets (classes, modalities, subjects, windows, client shards) and fetch the UCI
    originals of MHEALTH and PAMAP2.

    File datasets are parsed once into a prepared HDF5 cache (default ~/.cache/relief-mpi; set
    RELIEF_MPI_CACHE_DIR to another folder, or to `off` to read the files every time)."""


@command.command()
@click.option("--clients", type=click.IntRange(min=1), default=4, show_default=True,
              help="Number of clients to partition for (a run under `mpirun -n N` has N-1); with --partition "
                   "subject it is the number of training subjects, whatever this says.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the partition and the splits (as in train).")
@click.option("--fleet", type=click.Path(dir_okay=False), default=None,
              help="Fleet file giving each client's tier and sensors, or `paper` (the authors' device types in "
                   "client order, the default under --protocol paper); default: the three-tier fleet.")
@click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False), default=None,
              help="Extra device profile folder (*.toml) on top of the shipped ones.")
def info(**kw: Any) -> None:
    """Describe a dataset as a run would see it: classes, modalities with their channels (and the
    original file's columns), subjects, windows, and for each client its device, modality set,
    window counts and train label histogram. With --partition subject (--protocol paper) one row
    per subject: its client, device type and train/test windows. Reads the prepared cache
    (building it on first use)."""
    given = given_options(kw)
    kw = with_protocol_defaults(kw, given)
    if kw["dataset"] != "synthetic" and kw["data_dir"] is None:
        raise ReliefError(f"--dataset {kw['dataset']} needs --data-dir (the folder or zip with its original files)")
    cfg = data_config(kw, given)
    seed = kw["seed"]
    raw = load_raw(cfg, seed)
    n_clients, held = _client_count(cfg, seed, raw, kw["clients"], "clients" in given)
    devices, sets = _devices(raw.spec, n_clients, kw["fleet"], kw["profiles_dir"], cfg.dataset)
    fd = build_federated(cfg, seed, sets, raw)
    _overview(cfg, raw, fd, held, kw["data_dir"])
    _modalities(cfg, raw.spec)
    _subjects(raw)
    _window_counts(fd)
    if cfg.partition == "subject":
        _subject_table(fd, devices, held)
    else:
        _client_table(fd, devices, cfg.alpha, seed)
    _cohorts(fd)


info = DATA_OPTIONS(info)


def fleet_modality_sets(spec: DatasetSpec, n_clients: int, fleet: str | None = None,
                        profiles_dir: str | None = None) -> tuple[list, list[tuple[str, ...]]]:
    """The fleet's devices for n_clients and each one's modality set on this dataset."""
    devices = resolve_fleet(load_fleet(fleet), n_clients, load_profiles(profiles_dir))
    return devices, [modality_set_for(d.sensors, spec.modality_names()) for d in devices]


def _devices(spec: DatasetSpec, n_clients: int, fleet: str | None, profiles_dir: str | None,
             dataset: str) -> tuple[list, list[tuple[str, ...]]]:
    """The devices a run would give its clients (`--fleet paper` included) and their modality sets."""
    if fleet != PAPER_FLEET:
        return fleet_modality_sets(spec, n_clients, fleet, profiles_dir)
    devices = paper_fleet(dataset, n_clients, load_profiles(profiles_dir))
    return devices, [modality_set_for(d.sensors, spec.modality_names()) for d in devices]


def _client_count(cfg: DataConfig, seed: int, raw: RawDataset, clients: int,
                  clients_given: bool) -> tuple[int, tuple[int, ...]]:
    """The clients to partition for and the held-out subjects: --partition subject has one client
    per training subject, and an explicit --clients that disagrees is refused as `train` would."""
    if cfg.partition != "subject":
        return clients, ()

    si = subject_index(cfg, seed, raw)
    if clients_given and clients != len(si.clients):
        raise client_count_error(raw.spec.name, len(si.clients) + len(si.held), len(si.held), clients)
    return len(si.clients), si.held


def _overview(cfg: DataConfig, raw: RawDataset, fd: FederatedData, held: tuple[int, ...],
              data_dir: str | None) -> None:
    """Where the data comes from, its classes, and how it is windowed, split and normalised."""
    spec = raw.spec
    click.echo(f"dataset: {spec.name}   source: {data_dir or 'built in (seeded)'}   protocol: {cfg.protocol}")
    if raw.store is not None:
        click.echo(f"cache: {raw.store.path}")
    click.echo(f"classes ({len(spec.classes)}): " + ", ".join(f"{i} {c}" for i, c in enumerate(spec.classes)))
    click.echo(_window_line(cfg, spec.sample_rate_hz, fd.window_len))
    click.echo(f"test: {_split_text(cfg, held)}")
    click.echo("normalisation: " + ("per-subject z-score over each subject's whole recording (the authors')"
                                    if cfg.protocol == "paper" else "z-score with the training windows' statistics"))


def _window_counts(fd: FederatedData) -> None:
    """Training windows (server share and clients') and test windows (pooled when there is a pooled test set)."""
    n_tr = sum(len(c) for c in fd.clients_train)
    n_te = len(fd.pooled_test) if fd.pooled_test is not None else sum(len(c) for c in fd.clients_test)
    click.echo(f"windows: {n_tr + len(fd.server_train)} train ({len(fd.server_train)} kept on the server for LoRA "
               f"pretraining, {n_tr} to clients), {n_te} test")


def _cohorts(fd: FederatedData) -> None:
    """Label skew, cohort sizes, and a warning when some client would train on no modality at all."""
    click.echo(f"label skew (mean TV distance to the pooled histogram): "
               f"{label_skew([c.y for c in fd.clients_train], len(fd.spec.classes)):.3f}")
    names = fd.spec.modality_names()
    cohort = {m: sum(m in s for s in fd.modality_sets) for m in names}
    click.echo("cohorts: " + ", ".join(f"{m} {n}" for m, n in cohort.items()))
    if any(not s for s in fd.modality_sets):
        click.echo(f"note: some tiers' sensors name no modality of this grouping ({', '.join(names)}); "
                   "`train` refuses such a fleet: use a fleet whose tiers list these names")
    for note in fd.notes:
        click.echo(f"note: {note}")


def _window_line(cfg: DataConfig, rate_hz: float, length: int) -> str:
    _, hop = window_geometry(rate_hz, cfg.window_s, cfg.overlap, cfg.window, cfg.stride)
    kind = "majority label, windows whose majority is not a class dropped" if cfg.protocol == "paper" else \
        "each inside one label run"
    return (f"sample rate: {rate_hz:g} Hz   window: {length} samples ({length / rate_hz:g} s), hop {hop} "
            f"({1 - hop / length:.0%} overlap), {kind}")


def _split_text(cfg: DataConfig, held: tuple[int, ...]) -> str:
    if cfg.split in ("paper", "paper-streams"):
        how = "drawn as the authors' code draws it" if cfg.split == "paper" else "one stream per subject"
        return (f"split {cfg.split}: a random {cfg.test_fraction:.0%} of each subject's windows, pooled ({how}; it "
                f"leaks: overlapping windows put neighbours of training windows in the test set)")
    if cfg.split == "file":
        return f"split file: each subject's test windows from {cfg.split_file}, pooled"
    if cfg.split == "subject":
        return f"split subject: held-out subjects {', '.join(map(str, held))} (not clients; all their windows)"
    return f"split time: the last {cfg.test_fraction:.0%} of every label run (leak-free)"


def _ranges(cols: list[int]) -> str:
    """0, 1, 2, 5, 6 -> '0-2, 5-6'."""
    out: list[str] = []
    for c in cols:
        if out and int(out[-1].split("-")[-1]) == c - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{c}"
        else:
            out.append(str(c))
    return ", ".join(out)


def _modalities(cfg: DataConfig, spec: DatasetSpec) -> None:
    """The channel-to-modality map, with the original file's (0-based) columns where there is a file layout."""
    # the built-in synthetic data is MHEALTH's layout column for column; SPAR's channels are its npz columns
    where = {"synthetic": "MHEALTH column", "spar": "npz column"}.get(cfg.dataset, "file column")
    columns = list(range(spec.n_channels))
    if cfg.dataset in ("mhealth", "pamap2"):
        columns = list(loader_module(cfg.dataset).source_columns(cfg.protocol))
    rare = f"; rare (only full devices): {', '.join(PAPER_RARE[cfg.dataset])}" if cfg.protocol == "paper" else ""
    click.echo(f"modalities (by {cfg.modality_by}), {spec.n_channels} channels ({where}s 0-based{rare}):")
    w = max(len(m.name) for m in spec.modalities)
    for m in spec.modalities:
        cols = _ranges([columns[c] for c in m.channels])
        plural = "s" if len(m.channels) > 1 else ""
        click.echo(f"  {m.name:<{w}}  {len(m.channels):>2} ch, {where}{plural} {cols}: {', '.join(m.channel_names)}")


def _subjects(raw: RawDataset) -> None:
    st = raw.store if raw.store is not None else MemoryStore(raw)
    per_subject: dict[int, list[int]] = {}
    for r in range(st.n_recordings):
        lab = st.labels(r)
        e = per_subject.setdefault(st.subject(r), [0, 0, 0])
        e[0] += 1
        e[1] += len(lab)
        e[2] += int((lab >= 0).sum())
    click.echo(f"subjects ({len(per_subject)}), recordings {st.n_recordings}, samples "
               f"{sum(v[1] for v in per_subject.values())} ({sum(v[2] for v in per_subject.values())} labelled):")
    items = [f"{s}: {v[2]}" + (f" ({v[0]} rec)" if v[0] > 1 else "") for s, v in sorted(per_subject.items())]
    for i in range(0, len(items), 5):
        click.echo("  " + "   ".join(items[i:i + 5]))


def _hist(y: np.ndarray, nc: int, cw: int) -> str:
    return " ".join(f"{h:>{cw}}" for h in np.bincount(y, minlength=nc))


def _client_table(fd: FederatedData, devices: list, alpha: float, seed: int) -> None:
    nc = len(fd.spec.classes)
    cw = max(4, len(str(max(int(np.bincount(c.y, minlength=nc).max()) for c in fd.clients_train))))
    mw = max(10, *(len(",".join(s) or "(none)") for s in fd.modality_sets))
    tw = max(6, *(len(d.tier) for d in devices))
    click.echo(f"clients ({fd.n_clients}, alpha {alpha:g}, seed {seed}):")
    click.echo(f"  {'client':>6} {'rank':>4} {'tier':<{tw}} {'profile':<17} {'modalities':<{mw}} {'train':>6} "
               f"{'test':>5} | train windows per class: " + " ".join(f"{i:>{cw}}" for i in range(nc)))
    pad = " " * len(" | train windows per class:")
    for k, d in enumerate(devices):
        mods = ",".join(fd.modality_sets[k]) or "(none)"
        click.echo(f"  {k:>6} {d.rank:>4} {d.tier:<{tw}} {d.profile.name:<17} {mods:<{mw}} "
                   f"{len(fd.clients_train[k]):>6} {len(fd.clients_test[k]):>5}{pad} "
                   + _hist(fd.clients_train[k].y, nc, cw))


def _subject_table(fd: FederatedData, devices: list, held: tuple[int, ...]) -> None:
    """One row per subject in sorted order: its client and device (the paper gives device types to
    sorted subjects), its windows; held-out subjects (split=subject) have only test windows."""
    nc = len(fd.spec.classes)
    assert fd.pooled_test is not None
    test_of = {int(s): int(n) for s, n in zip(*np.unique(fd.pooled_test.subject, return_counts=True), strict=True)}
    cw = max(4, len(str(max(int(np.bincount(c.y, minlength=nc).max()) for c in fd.clients_train))))
    mw = max(10, *(len(",".join(s) or "(none)") for s in fd.modality_sets))
    tw = max(8, *(len(d.tier) for d in devices))
    click.echo(f"subjects -> clients ({fd.n_clients} clients, one per subject, sorted; devices by client order):")
    click.echo(f"  {'subject':>7} {'client':>6} {'rank':>4} {'device':<{tw}} {'profile':<17} {'modalities':<{mw}} "
               f"{'train':>6} {'test':>5} | train windows per class: " + " ".join(f"{i:>{cw}}" for i in range(nc)))
    pad = " " * len(" | train windows per class:")
    client_of = {s: k for k, s in enumerate(fd.client_subjects)}
    for s in sorted([*fd.client_subjects, *held]):
        if s in client_of:
            k = client_of[s]
            d = devices[k]
            mods = ",".join(fd.modality_sets[k]) or "(none)"
            click.echo(f"  {s:>7} {k:>6} {d.rank:>4} {d.tier:<{tw}} {d.profile.name:<17} {mods:<{mw}} "
                       f"{len(fd.clients_train[k]):>6} {test_of.get(s, 0):>5}{pad} "
                       + _hist(fd.clients_train[k].y, nc, cw))
        else:
            click.echo(f"  {s:>7} {'-':>6} {'-':>4} {'held out':<{tw}} {'-':<17} {'(test only)':<{mw}} "
                       f"{0:>6} {test_of.get(s, 0):>5}")
    types: dict[str, int] = {}
    for d in devices:
        types[d.tier] = types.get(d.tier, 0) + 1
    click.echo("devices: " + ", ".join(f"{t} {n}" for t, n in types.items())
               + f"   pooled test set: {len(fd.pooled_test)} windows, every modality kept")


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

    files = source_files(dataset, target)
    bad = 0
    for f in files:
        _, digest = f.read()
        bad += check_sha256(dataset, f, digest) is not None
    click.echo(f"saved {target} ({len(files)} data files, {len(files) - bad} match the genuine checksums)")
    click.echo(f"use it with: --dataset {dataset} --data-dir {target}")


LAYOUTS = {"mhealth": ("MHEALTHDATASET", "mHealth_subject*.log", 10, 10),
           "pamap2": ("PAMAP2_Dataset/Protocol", "subject1*.dat", 8, 9)}  # folder, files, default and max subjects


@command.command()
@click.option("--layout", type=click.Choice(sorted(LAYOUTS)), required=True,
              help="mhealth: MHEALTHDATASET/mHealth_subject<k>.log, 23 sensor columns + label, tab-separated, "
                   "50 Hz; pamap2: PAMAP2_Dataset/Protocol/subject10<k>.dat, 54 columns, space-separated, 100 Hz, "
                   "heart rate at ~9 Hz and dropped packets as NaN.")
@click.option("--to", "dest", type=click.Path(file_okay=False), required=True,
              help="Folder to write the layout into (created if missing; must be empty unless --overwrite). "
                   "Pass it as --data-dir afterwards.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the simulated world and subjects (same seed, same files).")
@click.option("--subjects", type=click.IntRange(min=1), default=None,
              help="How many subjects: mhealth 1-10 (default 10), pamap2 1-9 (default 8, subjects 101-108; 9 adds "
                   "subject 109, which --protocol paper leaves out).")
@click.option("--minutes", type=click.FloatRange(0, 120, min_open=True), default=6.0, show_default=True,
              help="Length of each subject's recording in minutes (at most 120): the 12 activities in the "
                   "dataset's protocol order with short null/transient gaps between them.")
@click.option("--overwrite", is_flag=True,
              help="Write into a folder that is not empty: the layout's own data files there are replaced (stale "
                   "subject files removed); nothing else in the folder is touched.")
def synth(layout: str, dest: str, seed: int, subjects: int | None, minutes: float, overwrite: bool) -> None:
    """Write simulated recordings in the exact UCI layout of MHEALTH or PAMAP2, so the real loaders
    (and --protocol paper) run on them end to end.

    \b
    relief-mpi data synth --layout mhealth --to data/synth-mhealth
    relief-mpi data info --dataset mhealth --data-dir data/synth-mhealth --protocol paper

    12 classes: 6 motion prototypes x 2 variants; the variants of three prototypes differ only in
    heading (seen by the magnetometer alone), those of the other three only in heart rate (ECG, or
    PAMAP2's heart-rate strap). The files are not the genuine ones (the loaders say so in one
    checksum warning line), and numbers measured on them say the code works, not that the paper's
    results hold."""
    folder, pattern, default_n, max_n = LAYOUTS[layout]
    n = default_n if subjects is None else subjects
    if not 1 <= n <= max_n:
        raise ReliefError(f"--subjects {n}: the {layout} layout has 1 to {max_n} subjects")
    out = Path(dest).expanduser()
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ReliefError(f"--to {out} is not empty; pass --overwrite to replace its {layout} files (or pick an "
                          "empty folder)")
    try:
        for old in sorted((out / folder).glob(pattern)) if overwrite else []:
            old.unlink()
        write = sim.write_mhealth if layout == "mhealth" else sim.write_pamap2
        paths = write(out, seed=seed, subjects=n, minutes=minutes)
    except ValueError as e:  # too few minutes for the 12 activities
        raise ReliefError(f"--minutes {minutes:g}: {e}") from None
    except OSError as e:
        raise ReliefError(f"--to {out}: cannot write there ({e.strerror or e})") from None
    size = sum(p.stat().st_size for p in paths) / 1e6
    click.echo(f"wrote {len(paths)} {layout} files ({size:.1f} MB, {minutes:g} min per subject, seed {seed}) "
               f"to {out / folder}")
    click.echo(f"use it with: --dataset {layout} --data-dir {out}")
    bout = sim.bout_seconds(layout, minutes)
    if bout < 2 * 5.12:
        click.echo(f"note: each activity lasts {bout:.1f} s, under two 5.12 s windows of --protocol paper: some "
                   "classes may get few or no windows; give more --minutes")
