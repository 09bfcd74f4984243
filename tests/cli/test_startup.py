"""Start-up says what it is doing before the heavy phase (issue 22, case 18).

At -n 33 on a 2-core host every rank spent 27 s importing torch before rank 0 printed its first
line. What is checked is the order of the output, not wall time: the first line comes before torch
is imported at all (an import hook prints a marker when it is).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relief_mpi.cli.startup import launcher_size, loading_line
from tests.helpers import mpi_env

HOOK = """
import sys
marked, entry = sys.argv[1], sys.argv[2]
class Marker:
    def find_spec(self, name, path=None, target=None):
        if name == marked:
            print("IMPORT " + marked, flush=True)
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, Marker())
sys.argv = ["relief-mpi"] + sys.argv[3:]
if entry == "program":  # what `relief-mpi` and `python -m relief_mpi` run
    from relief_mpi.program import entry as run
else:  # the commands themselves (a config file, or a caller of cli.main)
    from relief_mpi.cli import main as run
run()
"""


def _first_lines(tmp_path: Path, marked: str, entry: str, extra: list[str]) -> list[str]:
    # --dataset spar with a --data-dir that does not exist is refused when the data are loaded, after
    # the heavy imports: the job's whole start-up up to there, in one short process (an option refused
    # while the run is resolved comes before torch is imported: cli.train resolves first)
    env = {k: v for k, v in mpi_env().items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    res = subprocess.run([sys.executable, "-c", HOOK, marked, entry, "train", "--transport", "inprocess",
                          "--dataset", "spar", "--data-dir", str(tmp_path / "absent"), *extra], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, env=env)
    assert res.returncode == 2, res.stderr
    assert "absent: no such file or folder" in res.stderr, res.stderr
    return res.stdout.splitlines()


def test_first_line_comes_before_torch_is_imported(tmp_path: Path) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("rounds = 1\n")  # a config file may set quiet: the command prints the line, still before torch
    out = _first_lines(tmp_path, "torch", "cli", ["--config", str(cfg)])
    assert out[0] == "start: loading torch and the run's code (one process)", out
    assert "IMPORT torch" in out[1:], out


def test_program_says_it_before_the_command_line_loads(tmp_path: Path) -> None:
    # the program prints it before click and numpy (0.3 s of CPU, seconds when 33 ranks share 2 cores)
    out = _first_lines(tmp_path, "numpy", "program", [])
    assert out[0] == "start: loading torch and the run's code (one process)", out
    assert "IMPORT numpy" in out[1:], out
    assert out.count("start: loading torch and the run's code (one process)") == 1, "said once"


def test_loading_line_names_the_ranks_the_launcher_started(monkeypatch) -> None:
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID",
                "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    assert launcher_size() is None
    monkeypatch.setenv("PMI_SIZE", "33")
    monkeypatch.setenv("PMI_RANK", "0")
    assert launcher_size() == 33
    assert loading_line("mpi") == "start: loading torch, MPI and the run's code on 33 ranks (then the data and model)"
    monkeypatch.setenv("PMI_RANK", "5")
    assert loading_line("mpi") is None, "only rank 0 speaks"
