"""Shared test helpers: where ../shared is, how to launch mpiexec (always with a timeout)."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from relief_mpi.config import ModelConfig, RunConfig, StrategyConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
SPAR_DIR = SHARED_DATA / "spar-watch-10subj"


def need_shared() -> Path:
    """The ../shared/data folder, or skip: a user's clone has no ../shared beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data test: {SHARED_DATA} not found (it sits beside the repo only in the lab/CI checkout)")
    return SHARED_DATA


@functools.cache
def mpiexec() -> str | None:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


@functools.cache
def is_open_mpi() -> bool:
    exe = mpiexec()
    if exe is None:
        return False
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Open MPI" in out or "OpenRTE" in out


def mpi_command(n: int, args: list[str]) -> list[str]:
    exe = mpiexec()
    if exe is None:
        pytest.skip("no mpiexec on PATH (pip install mpich, or a system MPI)")
    extra = ["--oversubscribe", "--bind-to", "none"] if is_open_mpi() else []
    return [exe, *extra, "-n", str(n), sys.executable, "-m", "relief_mpi", *args]


def mpi_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def run_mpi(n: int, args: list[str], timeout: float = 240, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """mpiexec -n N python -m relief_mpi ARGS, killed (test fails) after `timeout` seconds."""
    cmd = mpi_command(n, args)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=mpi_env(env))
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec did not finish within {timeout} s (a hang): {' '.join(cmd)}\n"
                    f"stdout: {e.stdout}\nstderr: {e.stderr}")


def run_cli(args: list[str], timeout: float = 240, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """python -m relief_mpi ARGS in a subprocess (no launcher), with a timeout."""
    return subprocess.run([sys.executable, "-m", "relief_mpi", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=mpi_env())


# Logic tests train the paper model on narrow encoders for one local epoch: the same code paths
# and parameter groups as the production model (64,128 channels, 5 epochs) at a fraction of the
# compute. A few end-to-end tests keep the production model.
FAST = ["--local-epochs", "1", "--encoder-channels", "8,16"]


def fast_config(rounds: int = 2, strategy: str = "fedavg", seed: int = 0, **kw: object) -> RunConfig:
    """The RunConfig of a CLI run with FAST (strategy fields in kw go to StrategyConfig)."""
    fields = {f.name for f in dataclasses.fields(StrategyConfig)}
    strat = {k: v for k, v in kw.items() if k in fields}
    run = {k: v for k, v in kw.items() if k not in fields}
    return RunConfig(rounds=rounds, seed=seed, model=ModelConfig(encoder_channels=(8, 16)),
                     strategy=StrategyConfig(name=strategy, local_epochs=1, **strat), **run)  # type: ignore[arg-type]


def run_here(args: list[str], cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """`relief-mpi ARGS` through the real entry point (relief_mpi.cli.main) in this process: what
    run_cli checks, without the 3-4 s of CPU an interpreter spends importing torch.

    Only for commands that end by returning or raising SystemExit: a `--fault kill|logfull` run, a
    signal and the exit status of a real process stay with run_cli / run_mpi. Everything a
    subprocess would show is captured: sys.stdout and sys.stderr, and file descriptors 1 and 2 (what
    C code such as HDF5 prints); warnings print to stderr as in a fresh interpreter. Afterwards the
    signal handlers the command installs, torch's thread count, the working directory and sys.argv
    are put back, so later tests see this process as it was. A command still running after
    `timeout` seconds fails the test (SIGALRM), as run_cli's timeout does."""
    import contextlib
    import io
    import signal
    import tempfile
    import warnings

    import torch

    from relief_mpi.cli import main

    def overdue(signum: int, frame: object) -> None:
        pytest.fail(f"relief-mpi {' '.join(args)} did not finish within {timeout} s (a hang)")

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    threads, here, argv = torch.get_num_threads(), Path.cwd(), sys.argv
    out, err = io.StringIO(), io.StringIO()
    code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    raw = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    try:
        for fd in (1, 2):
            os.dup2(raw[fd].fileno(), fd)
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = ["relief-mpi", *args]
        signal.signal(signal.SIGALRM, overdue)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.resetwarnings()  # the filters of a fresh interpreter
            for action, category in (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                                     ("ignore", ImportWarning), ("ignore", ResourceWarning)):
                warnings.simplefilter(action, category)  # type: ignore[arg-type]
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: \
                sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if e.code is not None and not isinstance(e.code, int):
                    print(e.code, file=sys.stderr)
            except Exception:  # what the interpreter does with an uncaught exception: traceback, exit 1
                import traceback

                traceback.print_exc()
                code = 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        sys.argv = argv
        os.chdir(here)
        torch.set_num_threads(threads)
        for s, h in handlers.items():
            signal.signal(s, h)
    texts = []
    for fd in (1, 2):
        raw[fd].seek(0)
        texts.append(raw[fd].read().decode("utf-8", "replace"))
        raw[fd].close()
    return subprocess.CompletedProcess(["relief-mpi", *args], code, out.getvalue() + texts[0],
                                       err.getvalue() + texts[1])


@contextmanager
def small_tmpfs(where: Path, size: str, covered_by: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "1m") mounted at where/disk for the test, unmounted after; skip,
    naming the test that covers the same path without a mount, where mounting is not allowed."""
    mnt = where / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.strip() or 'mount failed'}); {covered_by}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
